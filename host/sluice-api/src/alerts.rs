//! Built-in alerts: what an operator must act on — a deployment failing or trapping, lag
//! growing, dead letters above a rate, tiered storage failing, the data disk in danger, a
//! sink that cannot deliver, a consumer group falling behind — checked every
//! `evaluation_interval_ms` and sent to webhook receivers in the Prometheus Alertmanager
//! webhook format (or to Alertmanager's own `POST /api/v2/alerts`), once when an alert fires
//! and once when it resolves. `GET /v1/alerts` shows what is pending, firing and recently
//! resolved, and how each receiver's deliveries went.
//!
//! Rules are evaluated from the same numbers `/metrics` exports (the shipped
//! `deploy/prometheus/alerts.yml` states them in PromQL for a Prometheus that scrapes us).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use serde::Serialize;
use serde_json::{Value, json};
use sluice_config::{AlertReceiver, AlertsConfig, ReceiverFormat};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::{ApiError, AppState, State};

/// Labels of an alert: `alertname`, `severity` and what it is about.
type Labels = BTreeMap<String, String>;

/// A condition that holds now.
#[derive(Debug, Clone)]
struct Condition {
    labels: Labels,
    annotations: BTreeMap<String, String>,
    /// How long it must hold before the alert fires.
    hold: Duration,
    /// Where the console shows it.
    link: String,
}

/// An alert pending or firing.
#[derive(Debug, Clone)]
struct Active {
    c: Condition,
    since: Instant,
    starts_at: SystemTime,
    firing: bool,
}

/// An alert as a notification carries it.
#[derive(Debug, Clone)]
struct Note {
    c: Condition,
    starts_at: SystemTime,
    /// Resolved at.
    ends_at: Option<SystemTime>,
}

/// What the rules remember between checks: every series' recent samples, the alerts
/// pending or firing, the last resolved ones.
#[derive(Debug, Default)]
struct Book {
    series: HashMap<String, VecDeque<(Instant, u64)>>,
    active: BTreeMap<String, Active>,
    resolved: VecDeque<Note>,
}

impl Book {
    /// Records `value` for `key` at `now` and keeps `keep` of history.
    fn sample(&mut self, key: String, now: Instant, value: u64, keep: Duration) {
        let s = self.series.entry(key).or_default();
        s.push_back((now, value));
        while s
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > keep)
            && s.len() > 1
        {
            s.pop_front();
        }
    }

    /// How much a counter rose within `window` (since the first sample inside it, or the
    /// first sample at all when the series is younger).
    fn increase(&self, key: &str, now: Instant, window: Duration) -> u64 {
        let Some(s) = self.series.get(key) else {
            return 0;
        };
        let last = s.back().map_or(0, |x| x.1);
        let first = s
            .iter()
            .find(|(t, _)| now.duration_since(*t) <= window)
            .map_or(last, |x| x.1);
        last.saturating_sub(first)
    }

    /// Whether a gauge has been above zero at every sample for `span` and is higher now
    /// than at the start of it (false while the series is younger than `span`).
    fn growing_for(&self, key: &str, now: Instant, span: Duration) -> bool {
        let Some(s) = self.series.get(key) else {
            return false;
        };
        let Some(&(oldest, _)) = s.front() else {
            return false;
        };
        if now.duration_since(oldest) < span {
            return false;
        }
        // The newest sample at or before the start of the span, then every one after.
        let start = s
            .iter()
            .rposition(|(t, _)| now.duration_since(*t) >= span)
            .unwrap_or(0);
        let window: Vec<u64> = s.iter().skip(start).map(|x| x.1).collect();
        let (Some(first), Some(last)) = (window.first(), window.last()) else {
            return false;
        };
        window.iter().all(|v| *v > 0) && last > first
    }
}

/// How one receiver's deliveries went.
#[derive(Debug, Default)]
struct Delivery {
    sent: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Receiver {
    cfg: AlertReceiver,
    queue: tokio::sync::mpsc::Sender<Value>,
    delivery: Arc<Delivery>,
    last_resend: Mutex<Option<Instant>>,
}

/// The alerting of one server.
pub struct Alerts {
    cfg: AlertsConfig,
    external_url: String,
    book: Mutex<Book>,
    receivers: Vec<Receiver>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("receivers", &self.receivers.len())
            .finish()
    }
}

/// Refuses receivers that could never be reached, before the server starts.
pub fn check(cfg: &AlertsConfig) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for r in &cfg.receivers {
        if r.name.trim().is_empty() {
            return Err("[[alerts.receivers]]: `name` is empty".into());
        }
        if !names.insert(r.name.as_str()) {
            return Err(format!(
                "[[alerts.receivers]]: two receivers named `{}`",
                r.name
            ));
        }
        let url = reqwest::Url::parse(&r.url)
            .map_err(|e| format!("[[alerts.receivers]] `{}`: url `{}`: {e}", r.name, r.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "[[alerts.receivers]] `{}`: url `{}` is not http(s)",
                r.name, r.url
            ));
        }
    }
    if cfg.evaluation_interval_ms == 0 {
        return Err("[alerts] evaluation_interval_ms must be above 0".into());
    }
    Ok(())
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Alertmanager's fingerprint of a label set: FNV-1a (64-bit) over the sorted labels.
fn fingerprint(labels: &Labels) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn labels(name: &str, severity: &str, about: &[(&str, &str)]) -> Labels {
    let mut l = Labels::new();
    l.insert("alertname".into(), name.into());
    l.insert("severity".into(), severity.into());
    for (k, v) in about {
        l.insert((*k).into(), (*v).into());
    }
    l
}

fn annotations(summary: String, description: String) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("summary".to_string(), summary),
        ("description".to_string(), description),
    ])
}

impl Alerts {
    /// Starts the rules (and one delivery task per receiver) until `stop`.
    pub fn start(
        state: Arc<AppState>,
        cfg: AlertsConfig,
        external_url: String,
        stop: CancellationToken,
    ) -> Arc<Alerts> {
        let http = reqwest::Client::builder()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let receivers = cfg
            .receivers
            .iter()
            .map(|r| {
                let (tx, rx) = tokio::sync::mpsc::channel(1024);
                let delivery = Arc::new(Delivery::default());
                tokio::spawn(deliver(
                    http.clone(),
                    r.clone(),
                    rx,
                    delivery.clone(),
                    stop.clone(),
                ));
                Receiver {
                    cfg: r.clone(),
                    queue: tx,
                    delivery,
                    last_resend: Mutex::new(None),
                }
            })
            .collect();
        let alerts = Arc::new(Alerts {
            external_url: cfg
                .external_url
                .clone()
                .unwrap_or(external_url)
                .trim_end_matches('/')
                .to_string(),
            cfg,
            book: Mutex::new(Book::default()),
            receivers,
        });
        let a = alerts.clone();
        tokio::spawn(async move {
            let every = Duration::from_millis(a.cfg.evaluation_interval_ms.max(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let (a2, s2) = (a.clone(), state.clone());
                // Statuses take locks and read the disk: off the reactor.
                let _ = tokio::task::spawn_blocking(move || a2.evaluate(&s2, Instant::now())).await;
            }
        });
        alerts
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks every rule once and sends what changed.
    fn evaluate(&self, state: &AppState, now: Instant) {
        let conditions = self.conditions(state, now);
        let (fired, resolved) = self.advance(conditions, now);
        self.notify(&fired, &resolved, now);
    }

    /// How much history the rules need.
    fn keep(&self) -> Duration {
        let r = &self.cfg.rules;
        let ms = Duration::from_millis;
        [
            r.transform_failing.window_ms,
            r.lag_growing.for_ms,
            r.dead_letters.window_ms,
            r.tier_failing.window_ms,
        ]
        .into_iter()
        .max()
        .map_or(Duration::ZERO, ms)
            + ms(self.cfg.evaluation_interval_ms * 2)
    }

    /// A link into the console.
    fn ui(&self, what: &str) -> String {
        format!("{}/ui#/{what}", self.external_url)
    }

    /// The conditions that hold now (and the samples the rules need, recorded).
    fn conditions(&self, state: &AppState, now: Instant) -> Vec<Condition> {
        let keep = self.keep();
        let mut out = Vec::new();
        let transforms = state.pipelines.statuses();
        let sinks: Vec<Value> = state
            .connectors
            .list()
            .iter()
            .map(|c| serde_json::to_value(state.connectors.status(c)).unwrap_or_default())
            .collect();
        let disk = state.log.space().status();
        let tier_errors = sluice_log::tier::METRICS.errors.load(Ordering::Relaxed);
        let groups = crate::groups::kafka_lags(state);
        let mut book = self.book();
        for st in &transforms {
            self.transform_conditions(&mut book, st, now, keep, &mut out);
        }
        for st in &sinks {
            self.sink_conditions(&mut book, st, now, keep, &mut out);
        }
        self.tier_condition(&mut book, tier_errors, now, keep, &mut out);
        drop(book);
        self.disk_condition(&disk, &mut out);
        self.group_conditions(&groups, &mut out);
        out
    }

    /// A deployment failing or trapping, dead-lettering, falling behind.
    fn transform_conditions(
        &self,
        book: &mut Book,
        st: &sluice_pipeline::TransformStatus,
        now: Instant,
        keep: Duration,
        out: &mut Vec<Condition>,
    ) {
        let r = &self.cfg.rules;
        let ms = Duration::from_millis;
        let ui = |what: &str| self.ui(what);
        let name = st.name.as_str();
        let lag: u64 = st.partitions.iter().filter_map(|p| p.lag).sum();
        book.sample(format!("traps/{name}"), now, st.counters.traps, keep);
        book.sample(
            format!("dead/{name}"),
            now,
            st.counters.rejected + st.counters.failed,
            keep,
        );
        book.sample(format!("lag/transform/{name}"), now, lag, keep);
        let rule = &r.transform_failing;
        let traps = book.increase(&format!("traps/{name}"), now, ms(rule.window_ms));
        let failed = st.status == sluice_pipeline::RunState::Failed;
        if rule.enabled && (failed || (rule.traps > 0 && traps >= rule.traps)) {
            let why = st
                .last_error
                .clone()
                .unwrap_or_else(|| "no error recorded".into());
            out.push(Condition {
                labels: labels("SluiceTransformFailing", "critical", &[("transform", name)]),
                annotations: annotations(
                    if failed {
                        format!("transform {name} cannot run")
                    } else {
                        format!(
                            "transform {name}'s plugin trapped {traps} times in {} s",
                            rule.window_ms / 1000
                        )
                    },
                    why,
                ),
                hold: Duration::ZERO,
                link: ui(&format!("transform/{name}")),
            });
        }
        let rule = &r.dead_letters;
        let dead = book.increase(&format!("dead/{name}"), now, ms(rule.window_ms));
        let per_s = dead as f64 / (rule.window_ms.max(1) as f64 / 1000.0);
        if rule.enabled && per_s > rule.per_second {
            out.push(Condition {
                labels: labels("SluiceDeadLetters", "warning", &[("transform", name)]),
                annotations: annotations(
                    format!("transform {name} dead-letters {per_s:.2} records/s"),
                    format!(
                        "{dead} records went to {} in the last {} s (threshold {}/s)",
                        st.dead_letter,
                        rule.window_ms / 1000,
                        rule.per_second
                    ),
                ),
                hold: Duration::ZERO,
                link: ui(&format!("transform/{name}")),
            });
        }
        let rule = &r.lag_growing;
        if rule.enabled && book.growing_for(&format!("lag/transform/{name}"), now, ms(rule.for_ms))
        {
            out.push(Condition {
                labels: labels("SluiceLagGrowing", "warning", &[("transform", name)]),
                annotations: annotations(
                    format!("transform {name} falls behind: lag {lag}"),
                    format!(
                        "its lag has grown for {} s without a break{}",
                        rule.for_ms / 1000,
                        if st.status == sluice_pipeline::RunState::Paused {
                            " (it is paused)"
                        } else {
                            ""
                        }
                    ),
                ),
                hold: Duration::ZERO,
                link: ui(&format!("transform/{name}")),
            });
        }
    }

    /// A sink that cannot reach its store, or falls behind.
    fn sink_conditions(
        &self,
        book: &mut Book,
        st: &Value,
        now: Instant,
        keep: Duration,
        out: &mut Vec<Condition>,
    ) {
        let r = &self.cfg.rules;
        let ms = Duration::from_millis;
        let ui = |what: &str| self.ui(what);
        let name = st["name"].as_str().unwrap_or_default();
        if st["status"] == "failed" && r.transform_failing.enabled {
            let why = st["last_error"]["message"]
                .as_str()
                .unwrap_or("no error recorded")
                .to_string();
            out.push(Condition {
                labels: labels("SluiceConnectorFailing", "critical", &[("connector", name)]),
                annotations: annotations(format!("connector {name} cannot reach its store"), why),
                hold: Duration::ZERO,
                link: ui("connectors"),
            });
        }
        let lag: u64 = st["lag"].as_u64().unwrap_or_else(|| {
            st["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["lag"].as_u64())
                .sum()
        });
        book.sample(format!("lag/connector/{name}"), now, lag, keep);
        let rule = &r.lag_growing;
        if rule.enabled && book.growing_for(&format!("lag/connector/{name}"), now, ms(rule.for_ms))
        {
            out.push(Condition {
                labels: labels("SluiceLagGrowing", "warning", &[("connector", name)]),
                annotations: annotations(
                    format!("connector {name} falls behind: lag {lag}"),
                    format!(
                        "its lag has grown for {} s without a break",
                        rule.for_ms / 1000
                    ),
                ),
                hold: Duration::ZERO,
                link: ui("connectors"),
            });
        }
    }

    /// The data disk low or full.
    fn disk_condition(&self, disk: &sluice_log::space::DiskStatus, out: &mut Vec<Condition>) {
        let r = &self.cfg.rules;
        if r.disk.enabled {
            use sluice_log::space::DiskState;
            let (name, severity, summary) = match disk.state {
                DiskState::Ok => ("", "", ""),
                DiskState::Low => ("SluiceDiskLow", "warning", "the data disk is nearly full"),
                DiskState::Full => (
                    "SluiceDiskFull",
                    "critical",
                    "the data disk is full: produce is refused",
                ),
            };
            if !name.is_empty() {
                out.push(Condition {
                    labels: labels(name, severity, &[]),
                    annotations: annotations(
                        summary.into(),
                        format!(
                            "{} bytes free of {} (warning below {}, writes refused below {})",
                            disk.free_bytes,
                            disk.total_bytes,
                            disk.alert_free_bytes,
                            disk.min_free_bytes
                        ),
                    ),
                    hold: Duration::ZERO,
                    link: format!("{}/v1/disk", self.external_url),
                });
            }
        }
    }

    /// Tiered storage failing lately.
    fn tier_condition(
        &self,
        book: &mut Book,
        tier_errors: u64,
        now: Instant,
        keep: Duration,
        out: &mut Vec<Condition>,
    ) {
        let r = &self.cfg.rules;
        let ms = Duration::from_millis;
        book.sample("tier/errors".into(), now, tier_errors, keep);
        let rule = &r.tier_failing;
        let errors = book.increase("tier/errors", now, ms(rule.window_ms));
        if rule.enabled && errors > 0 {
            out.push(Condition {
                labels: labels("SluiceTierUploadsFailing", "critical", &[]),
                annotations: annotations(
                    "tiered storage is failing".into(),
                    format!(
                        "{errors} object-store operations failed in the last {} s; sealed segments stay on the local disk until they succeed",
                        rule.window_ms / 1000
                    ),
                ),
                hold: Duration::ZERO,
                link: format!("{}/metrics", self.external_url),
            });
        }
    }

    /// Kafka consumer groups behind by more than the threshold.
    fn group_conditions(&self, groups: &[crate::groups::GroupLag], out: &mut Vec<Condition>) {
        let r = &self.cfg.rules;
        let ms = Duration::from_millis;
        let ui = |what: &str| self.ui(what);
        let rule = &r.group_lag;
        if rule.enabled {
            for g in groups {
                let (group, lag) = (&g.group, g.total());
                if lag > rule.threshold {
                    out.push(Condition {
                        labels: labels("SluiceConsumerGroupLag", "warning", &[("group", group)]),
                        annotations: annotations(
                            format!("consumer group {group} is {lag} records behind"),
                            format!("above the threshold of {}", rule.threshold),
                        ),
                        hold: ms(rule.for_ms),
                        link: ui(&format!("group/{group}")),
                    });
                }
            }
        }
    }

    /// Moves alerts between pending, firing and resolved; returns the ones that fired and
    /// the ones that resolved now.
    fn advance(&self, conditions: Vec<Condition>, now: Instant) -> (Vec<Note>, Vec<Note>) {
        let mut book = self.book();
        let mut fired = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for c in conditions {
            let key = fingerprint(&c.labels);
            seen.insert(key.clone());
            let a = book.active.entry(key).or_insert_with(|| Active {
                c: c.clone(),
                since: now,
                starts_at: SystemTime::now(),
                firing: false,
            });
            // The latest numbers in its text.
            a.c.annotations = c.annotations;
            if !a.firing && now.duration_since(a.since) >= a.c.hold {
                a.firing = true;
                a.starts_at = SystemTime::now();
                tracing::warn!(alert = %a.c.labels["alertname"], labels = ?a.c.labels, summary = %a.c.annotations["summary"], "alert firing");
                fired.push(Note {
                    c: a.c.clone(),
                    starts_at: a.starts_at,
                    ends_at: None,
                });
            }
        }
        let gone: Vec<String> = book
            .active
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        let mut resolved = Vec::new();
        for k in gone {
            let Some(a) = book.active.remove(&k) else {
                continue;
            };
            if !a.firing {
                continue;
            }
            tracing::info!(alert = %a.c.labels["alertname"], labels = ?a.c.labels, "alert resolved");
            let note = Note {
                c: a.c,
                starts_at: a.starts_at,
                ends_at: Some(SystemTime::now()),
            };
            book.resolved.push_front(note.clone());
            book.resolved.truncate(100);
            resolved.push(note);
        }
        (fired, resolved)
    }

    /// Queues the notifications for every receiver.
    fn notify(&self, fired: &[Note], resolved: &[Note], now: Instant) {
        for r in &self.receivers {
            let payloads = match r.cfg.format {
                ReceiverFormat::Webhook => {
                    let mut changed: Vec<&Note> = fired.iter().collect();
                    if r.cfg.send_resolved {
                        changed.extend(resolved);
                    }
                    self.webhook_payloads(&r.cfg.name, &changed)
                }
                ReceiverFormat::Alertmanager => {
                    // Firing alerts are sent again every `resend_ms`: Alertmanager resolves
                    // those it stops hearing about.
                    let mut last = r.last_resend.lock().unwrap_or_else(|p| p.into_inner());
                    let due = last.is_none_or(|t| {
                        now.duration_since(t) >= Duration::from_millis(r.cfg.resend_ms)
                    });
                    let mut notes: Vec<Note> = if due {
                        *last = Some(now);
                        self.book()
                            .active
                            .values()
                            .filter(|a| a.firing)
                            .map(|a| Note {
                                c: a.c.clone(),
                                starts_at: a.starts_at,
                                ends_at: None,
                            })
                            .collect()
                    } else {
                        fired.to_vec()
                    };
                    notes.extend(resolved.iter().cloned());
                    if notes.is_empty() {
                        Vec::new()
                    } else {
                        vec![self.alertmanager_payload(&notes, r.cfg.resend_ms)]
                    }
                }
            };
            for p in payloads {
                if r.queue.try_send(p).is_err() {
                    r.delivery.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(receiver = %r.cfg.name, "alert notifications queue full; one dropped");
                }
            }
        }
    }

    fn alert_json(&self, n: &Note) -> Value {
        json!({
            "status": if n.ends_at.is_some() { "resolved" } else { "firing" },
            "labels": n.c.labels,
            "annotations": n.c.annotations,
            "startsAt": rfc3339(n.starts_at),
            "endsAt": n.ends_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
            "generatorURL": n.c.link,
            "fingerprint": fingerprint(&n.c.labels),
        })
    }

    /// Alertmanager's webhook payload (version 4), one per alert name (its default
    /// `group_by: [alertname]`).
    fn webhook_payloads(&self, receiver: &str, notes: &[&Note]) -> Vec<Value> {
        let mut by_name: BTreeMap<&str, Vec<&Note>> = BTreeMap::new();
        for n in notes {
            by_name
                .entry(n.c.labels["alertname"].as_str())
                .or_default()
                .push(n);
        }
        by_name
            .into_iter()
            .map(|(name, notes)| {
                let common = |pick: fn(&Note) -> &BTreeMap<String, String>| {
                    let mut c = pick(notes[0]).clone();
                    for n in &notes[1..] {
                        c.retain(|k, v| pick(n).get(k) == Some(v));
                    }
                    c
                };
                let firing = notes.iter().any(|n| n.ends_at.is_none());
                json!({
                    "version": "4",
                    "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"),
                    "truncatedAlerts": 0,
                    "status": if firing { "firing" } else { "resolved" },
                    "receiver": receiver,
                    "groupLabels": {"alertname": name},
                    "commonLabels": common(|n| &n.c.labels),
                    "commonAnnotations": common(|n| &n.c.annotations),
                    "externalURL": self.external_url,
                    "alerts": notes.iter().map(|n| self.alert_json(n)).collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    /// Alertmanager's `POST /api/v2/alerts` body: firing alerts end a few resends from now
    /// unless heard of again.
    fn alertmanager_payload(&self, notes: &[Note], resend_ms: u64) -> Value {
        let until = SystemTime::now() + Duration::from_millis(resend_ms.saturating_mul(4));
        Value::Array(
            notes
                .iter()
                .map(|n| {
                    json!({
                        "labels": n.c.labels,
                        "annotations": n.c.annotations,
                        "startsAt": rfc3339(n.starts_at),
                        "endsAt": rfc3339(n.ends_at.unwrap_or(until)),
                        "generatorURL": n.c.link,
                    })
                })
                .collect(),
        )
    }

    /// What `GET /v1/alerts` shows.
    fn view(&self) -> AlertsView {
        let book = self.book();
        let shown = |n: &Note, state: &'static str| AlertView {
            alertname: n.c.labels["alertname"].clone(),
            state,
            labels: n.c.labels.clone(),
            annotations: n.c.annotations.clone(),
            starts_at: rfc3339(n.starts_at),
            ends_at: n.ends_at.map(rfc3339),
            link: n.c.link.clone(),
        };
        AlertsView {
            alerts: book
                .active
                .values()
                .map(|a| {
                    shown(
                        &Note {
                            c: a.c.clone(),
                            starts_at: a.starts_at,
                            ends_at: None,
                        },
                        if a.firing { "firing" } else { "pending" },
                    )
                })
                .collect(),
            resolved: book.resolved.iter().map(|n| shown(n, "resolved")).collect(),
            receivers: self
                .receivers
                .iter()
                .map(|r| ReceiverView {
                    name: r.cfg.name.clone(),
                    format: match r.cfg.format {
                        ReceiverFormat::Webhook => "webhook",
                        ReceiverFormat::Alertmanager => "alertmanager",
                    },
                    sent: r.delivery.sent.load(Ordering::Relaxed),
                    failed: r.delivery.failed.load(Ordering::Relaxed),
                    last_error: r
                        .delivery
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                })
                .collect(),
        }
    }
}

/// Posts a receiver's notifications in order, each tried up to five times (1, 2, 4, 8 s
/// apart) before it is counted failed.
async fn deliver(
    http: reqwest::Client,
    cfg: AlertReceiver,
    mut rx: tokio::sync::mpsc::Receiver<Value>,
    delivery: Arc<Delivery>,
    stop: CancellationToken,
) {
    const TRIES: u32 = 5;
    loop {
        let body = tokio::select! {
            _ = stop.cancelled() => return,
            b = rx.recv() => match b { Some(b) => b, None => return },
        };
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=TRIES {
            let mut req = http
                .post(&cfg.url)
                .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
                .json(&body);
            if let Some(t) = &cfg.bearer_token {
                req = req.bearer_auth(t);
            }
            let outcome = match req.send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("answered {}", r.status())),
                Err(e) => Err(with_causes(&e)),
            };
            match outcome {
                Ok(()) => {
                    delivery.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    tracing::warn!(receiver = %cfg.name, attempt, error = %e, "alert notification not delivered");
                    *delivery
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(e);
                    if attempt == TRIES {
                        delivery.failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait *= 2;
                }
            }
        }
    }
}

/// An error with its causes ("error sending request: … : connection refused").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// An alert as `GET /v1/alerts` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    pub alertname: String,
    /// `pending` (its condition holds, not yet for long enough), `firing` or `resolved`.
    pub state: &'static str,
    pub labels: BTreeMap<String, String>,
    /// `summary` and `description`.
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// Where to look.
    pub link: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiverView {
    pub name: String,
    pub format: &'static str,
    /// Notifications delivered.
    pub sent: u64,
    /// Notifications given up on (after retries) or dropped.
    pub failed: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsView {
    /// Pending and firing.
    pub alerts: Vec<AlertView>,
    /// The last 100 resolved, newest first.
    pub resolved: Vec<AlertView>,
    pub receivers: Vec<ReceiverView>,
}

#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "server",
    responses((status = 200, description = "alerts pending, firing and recently resolved; receivers' deliveries", body = AlertsView))
)]
pub async fn list(state: State) -> Result<Json<AlertsView>, ApiError> {
    match state.alerts.get() {
        Some(a) => Ok(Json(a.view())),
        None => Ok(Json(AlertsView {
            alerts: Vec::new(),
            resolved: Vec::new(),
            receivers: Vec::new(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_rise_within_their_window_and_growth_needs_the_whole_span() {
        let mut b = Book::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        for (i, v) in [0u64, 1, 5, 5, 9].into_iter().enumerate() {
            b.sample("c".into(), t0 + s(i as u64 * 10), v, s(100));
        }
        let now = t0 + s(40);
        assert_eq!(
            b.increase("c", now, s(15)),
            4,
            "9 - 5 (samples at 30 and 40)"
        );
        assert_eq!(b.increase("c", now, s(100)), 9);
        assert_eq!(b.increase("none", now, s(100)), 0);

        for (i, v) in [3u64, 4, 4, 6].into_iter().enumerate() {
            b.sample("lag".into(), t0 + s(i as u64 * 10), v, s(100));
        }
        let now = t0 + s(30);
        assert!(b.growing_for("lag", now, s(30)));
        assert!(!b.growing_for("lag", now, s(31)), "younger than the span");
        b.sample("lag".into(), t0 + s(40), 0, s(100));
        assert!(!b.growing_for("lag", t0 + s(40), s(30)), "it reached 0");
    }

    #[test]
    fn fingerprints_depend_on_every_label() {
        let a = labels("A", "warning", &[("transform", "x")]);
        let b = labels("A", "warning", &[("transform", "y")]);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_eq!(fingerprint(&a).len(), 16);
    }
}
