//! The server's recent history, sampled once a second for the last five minutes: records in
//! and out and lag per transform. `GET /v1/history` serves it, so the console's charts
//! start filled instead of empty.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::{AppState, State};

/// Samples kept (one a second).
const KEEP: usize = 300;

/// One transform at one moment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransformSample {
    pub records_in: u64,
    pub records_out: u64,
    pub lag: u64,
}

/// The server at one moment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Sample {
    /// ms since the epoch.
    pub at: i64,
    pub transforms: BTreeMap<String, TransformSample>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    pub interval_ms: u64,
    /// Oldest first.
    pub samples: Vec<Sample>,
}

/// The samples, newest last.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Samples every second until `stop`.
    pub fn start(state: Arc<AppState>, stop: CancellationToken) -> Arc<History> {
        let h = Arc::new(History::default());
        let h2 = h.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let (h3, s) = (h2.clone(), state.clone());
                let _ = tokio::task::spawn_blocking(move || h3.sample(&s)).await;
            }
        });
        h
    }

    fn sample(&self, state: &AppState) {
        let transforms = state
            .pipelines
            .statuses()
            .into_iter()
            .map(|st| {
                (
                    st.name.clone(),
                    TransformSample {
                        records_in: st.counters.records_in,
                        records_out: st.counters.records_out,
                        lag: st.partitions.iter().filter_map(|p| p.lag).sum(),
                    },
                )
            })
            .collect();
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back(Sample {
            at: sluice_log::now_ms(),
            transforms,
        });
        while s.len() > KEEP {
            s.pop_front();
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/history",
    tag = "server",
    responses((status = 200, description = "the last five minutes, one sample a second: records in/out and lag per transform", body = HistoryView))
)]
pub async fn get(state: State) -> Json<HistoryView> {
    let samples = state
        .history
        .get()
        .map(|h| {
            h.samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Json(HistoryView {
        interval_ms: 1000,
        samples,
    })
}
