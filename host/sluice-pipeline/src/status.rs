//! What `GET /v1/transforms/{name}` shows of a running deployment, and what `sluice serve`
//! has for the deployment contract's checks (`Catalog`).

use std::sync::atomic::Ordering;

use sluice_deploy::Catalog;

use crate::shared::StateShared;
use crate::{
    PartitionState, PartitionStatus, Pipelines, RunState, StateCheckpoint, Transform,
    TransformSpec, TransformStatus,
};

impl Pipelines {
    /// The status of every transform.
    pub fn statuses(&self) -> Vec<TransformStatus> {
        self.list().iter().map(|t| self.status(t)).collect()
    }

    /// The status of one transform.
    pub fn status(&self, t: &Transform) -> TransformStatus {
        let spec = t.spec();
        let input = self.log.topic(&spec.input).ok();
        let merger = t.merger.lock().unwrap_or_else(|p| p.into_inner());
        let partitions = t
            .task_states()
            .iter()
            .map(|s| {
                let position = s.position.load(Ordering::Acquire);
                let hw = input
                    .as_ref()
                    .and_then(|i| i.partitions.get(s.partition as usize))
                    .map_or(position, |p| p.high_watermark());
                PartitionStatus {
                    partition: s.partition,
                    position: Some(position),
                    // Over two inputs, what is not merged yet is lag too.
                    lag: Some(
                        hw.saturating_sub(position)
                            + merger.as_ref().map_or(0, |m| m.behind(s.partition)),
                    ),
                    version: s.version.load(Ordering::Acquire),
                    state: s.state.as_ref().map(|st| partition_state(st)),
                    worker: None,
                }
            })
            .collect();
        drop(merger);
        let stateful = t.is_stateful();
        let waiting_for = t.blocked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        TransformStatus {
            status: if t.paused.load(Ordering::Acquire) {
                RunState::Paused
            } else if waiting_for.is_some() {
                RunState::Waiting
            } else {
                RunState::Running
            },
            waiting_for,
            version: t.active_version(),
            history: t.history.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            partitions,
            counters: t.counters.values(),
            last_error: t
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            state_memory_bytes: stateful.then(|| t.state_memory()).flatten(),
            state_disk_bytes: stateful
                .then(|| t.state_db().map(|d| d.disk_space()))
                .flatten(),
            ..TransformStatus::of_spec(&t.name, &spec, stateful)
        }
    }
}

/// What `sluice serve` has: the log's topics, the plugin store's versions, the deployments
/// (with those being created).
impl Catalog for Pipelines {
    fn partitions(&self, topic: &str) -> Option<u32> {
        self.log
            .topic(topic)
            .ok()
            .map(|t| t.partitions.len() as u32)
    }

    fn plugin_versions(&self, plugin: &str) -> Option<Vec<u32>> {
        let versions = self.plugins.versions(plugin).ok()?;
        Some(versions.iter().map(|v| v.version).collect())
    }

    fn deployments(&self, except: &str) -> Vec<(String, TransformSpec)> {
        let mut all: Vec<(String, TransformSpec)> = self
            .list()
            .iter()
            .filter(|t| t.name != except)
            .map(|t| (t.name.clone(), t.spec()))
            .collect();
        all.extend(
            self.reserved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(n, _)| *n != except)
                .map(|(n, s)| (n.clone(), s.clone())),
        );
        all
    }
}

/// The status of one stateful partition.
pub fn partition_state(st: &StateShared) -> PartitionState {
    let some = |t: i64| (t != sluice_sdk::NO_WATERMARK).then_some(t);
    let (keys, bytes, timers, next_timer) = {
        let mut store = st.lock();
        (
            store.keys() as u64,
            store.bytes(),
            store.timer_count() as u64,
            store.next_timer(),
        )
    };
    let at = st.committed_at.load(Ordering::Relaxed);
    let snap = st.snapshot_offset.load(Ordering::Relaxed);
    PartitionState {
        watermark: some(st.watermark.load(Ordering::Relaxed)),
        max_event_time: some(st.max_event_time.load(Ordering::Relaxed)),
        late: st.late.load(Ordering::Relaxed),
        state_keys: keys,
        state_bytes: bytes,
        timers,
        next_timer,
        checkpoint: StateCheckpoint {
            position: st.committed_position.load(Ordering::Relaxed),
            at: (at > 0).then_some(at),
            changelog_offset: st.changelog_end.load(Ordering::Relaxed),
            snapshot_offset: (snap != u64::MAX).then_some(snap),
        },
        restore: st.restore.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    }
}
