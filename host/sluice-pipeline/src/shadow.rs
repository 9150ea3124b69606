//! Shadow deploys: a candidate plugin version (and config) runs on the live deployment's
//! input from the live position on, next to a second instance of the live version, and
//! the two verdicts of every input record are compared — same outputs, different outputs
//! (a readable diff), only one emitted, one or both dead-lettered — without writing
//! anything. One thread per input partition, at background priority, with instances of
//! its own: a candidate that traps or loops only slows the shadow. Promotion is the
//! deployment's ordinary version swap (at a batch boundary, nothing lost or doubled).
//!
//! Stateless deployments only: a stateful candidate would need a copy of the live state.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sluice_log::{LogError, Partition, batch};
use sluice_runtime::{BatchInput, BatchOutput, Early, Executor, RecordResult};

use crate::emit::input_from;

/// Examples kept per class.
const EXAMPLES: usize = 10;
/// Characters of a key or value shown in an example.
const PREVIEW: usize = 300;

/// How an input record's two verdicts compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DiffClass {
    /// The same outputs (or both dropped it).
    Same,
    /// Both emitted, something differs (key, value, headers, timestamp, output topic or
    /// count).
    Different,
    /// Only the live version emitted (the candidate dropped it).
    OnlyLive,
    /// Only the candidate emitted (the live version dropped it).
    OnlyCandidate,
    /// The candidate dead-lettered it, the live version did not.
    CandidateDeadLetter,
    /// The live version dead-lettered it, the candidate did not.
    LiveDeadLetter,
    /// Both dead-lettered it.
    BothDeadLetter,
}

const CLASSES: [DiffClass; 7] = [
    DiffClass::Same,
    DiffClass::Different,
    DiffClass::OnlyLive,
    DiffClass::OnlyCandidate,
    DiffClass::CandidateDeadLetter,
    DiffClass::LiveDeadLetter,
    DiffClass::BothDeadLetter,
];

/// One output record as an example shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShownRecord {
    pub output: String,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub timestamp: i64,
}

/// What one version did with an input record.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verdict {
    /// `emitted`, `dropped`, `rejected` or `failed`.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<ShownRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One difference between the two versions' outputs.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    /// Which output (0: the first emitted for the input).
    pub index: usize,
    /// `value` (or `value.PATH` inside JSON), `key`, `headers.NAME`, `output`,
    /// `timestamp` or `count`.
    pub field: String,
    pub live: Value,
    pub candidate: Value,
}

/// An input record whose verdicts were compared.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Example {
    pub partition: u32,
    pub offset: u64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub live: Verdict,
    pub candidate: Verdict,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

/// Calls of one version in the shadow.
#[derive(Debug, Default)]
struct Cost {
    records: AtomicU64,
    calls: AtomicU64,
    cpu_ns: AtomicU64,
    fuel: AtomicU64,
    traps: AtomicU64,
    memory: AtomicU64,
}

/// What one version costs, as `GET …/shadow` shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CostView {
    pub records: u64,
    pub calls: u64,
    /// Thread CPU time per record (µs).
    pub cpu_us_per_record: f64,
    pub fuel: u64,
    pub traps: u64,
    /// Linear memory of its instances (bytes, all partitions).
    pub memory_bytes: u64,
}

impl Cost {
    fn view(&self) -> CostView {
        let records = self.records.load(Ordering::Relaxed);
        CostView {
            records,
            calls: self.calls.load(Ordering::Relaxed),
            cpu_us_per_record: self.cpu_ns.load(Ordering::Relaxed) as f64
                / 1000.0
                / records.max(1) as f64,
            fuel: self.fuel.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            memory_bytes: self.memory.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
struct Book {
    counts: BTreeMap<DiffClass, u64>,
    examples: BTreeMap<DiffClass, VecDeque<Example>>,
    errors: VecDeque<String>,
}

/// A shadow of one deployment.
#[derive(Debug)]
pub struct Shadow {
    pub version: u32,
    pub config: BTreeMap<String, String>,
    pub live_version: u32,
    pub started_ms: i64,
    stop: Arc<AtomicBool>,
    interrupts: Vec<Arc<sluice_runtime::Interrupt>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    book: Mutex<Book>,
    live: Cost,
    candidate: Cost,
    positions: Vec<(u32, AtomicU64)>,
}

/// `GET /v1/transforms/{name}/shadow`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShadowView {
    /// The candidate's plugin version and config.
    pub version: u32,
    pub config: BTreeMap<String, String>,
    /// The live version it is compared with.
    pub live_version: u32,
    pub started_ms: i64,
    /// Input records compared.
    pub compared: u64,
    /// Records per class.
    pub counts: BTreeMap<DiffClass, u64>,
    /// The latest examples of each class but `same`.
    pub examples: BTreeMap<DiffClass, Vec<Example>>,
    pub live: CostView,
    pub candidate: CostView,
    /// The candidate's latest errors (traps, limits).
    pub errors: Vec<String>,
    /// Where the shadow is in each input partition, and how far behind its end.
    pub partitions: Vec<ShadowPartition>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShadowPartition {
    pub partition: u32,
    pub position: u64,
    pub lag: u64,
}

/// One partition's pair of instances and where it reads.
pub(crate) struct Lane {
    pub input: Arc<Partition>,
    pub position: u64,
    pub live: Executor,
    pub candidate: Executor,
}

impl Shadow {
    /// Starts a thread per lane; `outputs` names the deployment's output slots.
    pub(crate) fn start(
        name: &str,
        version: u32,
        config: BTreeMap<String, String>,
        live_version: u32,
        lanes: Vec<Lane>,
        outputs: Vec<String>,
    ) -> Arc<Shadow> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut interrupts = Vec::new();
        for l in &lanes {
            interrupts.push(l.live.interrupt().clone());
            interrupts.push(l.candidate.interrupt().clone());
        }
        let shadow = Arc::new(Shadow {
            version,
            config,
            live_version,
            started_ms: sluice_log::now_ms(),
            stop: stop.clone(),
            interrupts,
            threads: Mutex::new(Vec::new()),
            book: Mutex::new(Book::default()),
            live: Cost::default(),
            candidate: Cost::default(),
            positions: lanes
                .iter()
                .map(|l| (l.input.id, AtomicU64::new(l.position)))
                .collect(),
        });
        let outputs = Arc::new(outputs);
        let mut threads = Vec::new();
        for (i, lane) in lanes.into_iter().enumerate() {
            let (s, outputs) = (shadow.clone(), outputs.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("sluice-{name}-{}-shadow", lane.input.id))
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| s.run(i, lane, &outputs));
                    if std::panic::catch_unwind(run).is_err() {
                        s.error(
                            "a shadow thread failed; its partition is no longer compared".into(),
                        );
                    }
                });
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => shadow.error(format!("could not start a shadow thread: {e}")),
            }
        }
        *shadow.threads.lock().unwrap_or_else(|p| p.into_inner()) = threads;
        shadow
    }

    /// Stops every thread (a call in progress ends now) and waits for them.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        for i in &self.interrupts {
            i.raise();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    fn error(&self, e: String) {
        let mut b = self.book.lock().unwrap_or_else(|p| p.into_inner());
        b.errors.push_front(e);
        b.errors.truncate(EXAMPLES);
    }

    /// One partition: read from the position, run both versions, compare, repeat.
    fn run(&self, lane_index: usize, mut lane: Lane, outputs: &[String]) {
        sluice_common::sched::background_priority();
        while !self.stop.load(Ordering::Acquire) {
            let read = match lane.input.read_committed(lane.position, 1 << 20) {
                Ok(r) => r,
                Err(LogError::OffsetOutOfRange { start, .. }) if lane.position < start => {
                    lane.position = start;
                    continue;
                }
                Err(e) => {
                    self.error(format!("reading the input: {e}"));
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            if read.data.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let Ok(batches) = batch::split(read.data) else {
                self.error("an input batch does not decode".into());
                std::thread::sleep(Duration::from_millis(500));
                continue;
            };
            let mut next = read.next_offset;
            for (h, raw) in batches {
                if self.stop.load(Ordering::Acquire) {
                    return;
                }
                if h.is_control()
                    || (h.last_offset() as u64) < lane.position
                    || lane.input.is_aborted(&h)
                {
                    continue;
                }
                let Ok(input) = input_from(&raw, &h, lane.position) else {
                    continue;
                };
                let batch = BatchInput::records(
                    &lane.input.topic,
                    lane.input.id,
                    input.base_offset,
                    input.base_timestamp,
                    input.section.clone(),
                    input.offsets.len() as u32,
                );
                let live = self.call(&mut lane.live, &batch, &self.live);
                let candidate = self.call(&mut lane.candidate, &batch, &self.candidate);
                let (Some(live), Some(candidate)) = (live, candidate) else {
                    return; // interrupted: stopping
                };
                for r in candidate.trap_reasons.iter().take(2) {
                    self.error(r.clone());
                }
                let done = (live.done.min(candidate.done) as usize).min(input.offsets.len());
                self.compare(lane.input.id, &input, &live, &candidate, done, outputs);
                if done < input.offsets.len() {
                    next = input.offsets[done];
                    break;
                }
            }
            lane.position = next;
            if let Some((_, p)) = self.positions.get(lane_index) {
                p.store(next, Ordering::Relaxed);
            }
            self.live
                .memory
                .store(lane.live.memory_bytes() as u64, Ordering::Relaxed);
            self.candidate
                .memory
                .store(lane.candidate.memory_bytes() as u64, Ordering::Relaxed);
        }
    }

    /// One version's run over a batch, with its cost; none when interrupted.
    fn call(&self, ex: &mut Executor, batch: &BatchInput<'_>, cost: &Cost) -> Option<BatchOutput> {
        let cpu = thread_cpu_ns();
        let out = ex.run(batch);
        cost.cpu_ns
            .fetch_add(thread_cpu_ns().saturating_sub(cpu), Ordering::Relaxed);
        if out.early == Some(Early::Interrupted) {
            return None;
        }
        cost.records
            .fetch_add(u64::from(out.done), Ordering::Relaxed);
        cost.calls
            .fetch_add(u64::from(out.calls), Ordering::Relaxed);
        cost.fuel.fetch_add(out.fuel_used, Ordering::Relaxed);
        cost.traps
            .fetch_add(u64::from(out.traps), Ordering::Relaxed);
        Some(out)
    }

    fn compare(
        &self,
        partition: u32,
        input: &crate::emit::InputBatch,
        live: &BatchOutput,
        candidate: &BatchOutput,
        done: usize,
        outputs: &[String],
    ) {
        let (a, b) = (live.per_record(done), candidate.per_record(done));
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let mut inputs: Option<Vec<(Option<String>, Option<String>)>> = None;
        for (i, (l, c)) in a.iter().zip(&b).enumerate() {
            let (lv, cv) = (verdict(l, outputs), verdict(c, outputs));
            let (class, changes) = classify(&lv, &cv);
            *book.counts.entry(class).or_default() += 1;
            if class == DiffClass::Same {
                continue;
            }
            let shown = inputs.get_or_insert_with(|| input_previews(input));
            let (key, value) = shown.get(i).cloned().unwrap_or_default();
            let ex = book.examples.entry(class).or_default();
            ex.push_front(Example {
                partition,
                offset: input.offsets.get(i).copied().unwrap_or_default(),
                key,
                value,
                live: lv,
                candidate: cv,
                changes,
            });
            ex.truncate(EXAMPLES);
        }
    }

    /// What `GET …/shadow` shows; `ends` gives each input partition's end.
    pub fn view(&self, end_of: impl Fn(u32) -> u64) -> ShadowView {
        let book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let mut counts: BTreeMap<DiffClass, u64> = CLASSES.iter().map(|c| (*c, 0)).collect();
        counts.extend(book.counts.iter().map(|(k, v)| (*k, *v)));
        ShadowView {
            version: self.version,
            config: self.config.clone(),
            live_version: self.live_version,
            started_ms: self.started_ms,
            compared: counts.values().sum(),
            counts,
            examples: book
                .examples
                .iter()
                .map(|(k, v)| (*k, v.iter().cloned().collect()))
                .collect(),
            live: self.live.view(),
            candidate: self.candidate.view(),
            errors: book.errors.iter().cloned().collect(),
            partitions: self
                .positions
                .iter()
                .map(|(p, pos)| {
                    let position = pos.load(Ordering::Relaxed);
                    ShadowPartition {
                        partition: *p,
                        position,
                        lag: end_of(*p).saturating_sub(position),
                    }
                })
                .collect(),
        }
    }
}

/// Thread CPU time of the calling thread (ns).
#[allow(unsafe_code)]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes the timespec it is given, which lives across the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

fn preview(b: Option<&[u8]>) -> Option<String> {
    b.map(|v| String::from_utf8_lossy(v).chars().take(PREVIEW).collect())
}

fn input_previews(input: &crate::emit::InputBatch) -> Vec<(Option<String>, Option<String>)> {
    sluice_sdk::codec::Records::new(&input.section, input.offsets.len())
        .map(|r| match r {
            Ok(r) => (preview(r.key), preview(r.value)),
            Err(_) => (None, None),
        })
        .collect()
}

fn verdict(r: &RecordResult, outputs: &[String]) -> Verdict {
    match r {
        RecordResult::Dropped => Verdict {
            verdict: "dropped",
            outputs: Vec::new(),
            reason: None,
        },
        RecordResult::Rejected(why) => Verdict {
            verdict: "rejected",
            outputs: Vec::new(),
            reason: Some(why.clone()),
        },
        RecordResult::Failed(why) => Verdict {
            verdict: "failed",
            outputs: Vec::new(),
            reason: Some(why.clone()),
        },
        RecordResult::Emitted(list) => Verdict {
            verdict: "emitted",
            outputs: list
                .iter()
                .map(|e| {
                    let view = e.view().ok();
                    ShownRecord {
                        output: outputs
                            .get(e.output as usize)
                            .cloned()
                            .unwrap_or_else(|| format!("#{}", e.output)),
                        key: view.as_ref().and_then(|v| preview(v.key)),
                        value: view.as_ref().and_then(|v| preview(v.value)),
                        headers: view
                            .as_ref()
                            .map(|v| {
                                v.headers()
                                    .map(|h| {
                                        (
                                            h.key_str().to_string(),
                                            preview(h.value).unwrap_or_default(),
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        timestamp: e.timestamp(),
                    }
                })
                .collect(),
            reason: None,
        },
    }
}

fn dead(v: &Verdict) -> bool {
    matches!(v.verdict, "rejected" | "failed")
}

/// The class of a pair of verdicts and, for `different`, what differs.
fn classify(live: &Verdict, candidate: &Verdict) -> (DiffClass, Vec<Change>) {
    match (dead(live), dead(candidate)) {
        (true, true) => return (DiffClass::BothDeadLetter, Vec::new()),
        (false, true) => return (DiffClass::CandidateDeadLetter, Vec::new()),
        (true, false) => return (DiffClass::LiveDeadLetter, Vec::new()),
        (false, false) => {}
    }
    match (live.outputs.is_empty(), candidate.outputs.is_empty()) {
        (true, true) => return (DiffClass::Same, Vec::new()),
        (false, true) => return (DiffClass::OnlyLive, Vec::new()),
        (true, false) => return (DiffClass::OnlyCandidate, Vec::new()),
        (false, false) => {}
    }
    let mut changes = Vec::new();
    if live.outputs.len() != candidate.outputs.len() {
        changes.push(Change {
            index: 0,
            field: "count".into(),
            live: live.outputs.len().into(),
            candidate: candidate.outputs.len().into(),
        });
    }
    for (index, (l, c)) in live.outputs.iter().zip(&candidate.outputs).enumerate() {
        let mut field = |name: String, a: Value, b: Value| {
            if a != b {
                changes.push(Change {
                    index,
                    field: name,
                    live: a,
                    candidate: b,
                });
            }
        };
        field(
            "output".into(),
            l.output.clone().into(),
            c.output.clone().into(),
        );
        field("key".into(), l.key.clone().into(), c.key.clone().into());
        field("timestamp".into(), l.timestamp.into(), c.timestamp.into());
        let names: std::collections::BTreeSet<&String> =
            l.headers.keys().chain(c.headers.keys()).collect();
        for n in names {
            field(
                format!("headers.{n}"),
                l.headers.get(n).cloned().into(),
                c.headers.get(n).cloned().into(),
            );
        }
        // JSON values: the paths that differ; other values whole.
        let json = |v: &Option<String>| {
            v.as_deref()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
        };
        match (json(&l.value), json(&c.value)) {
            (Some(a), Some(b)) if a.is_object() && b.is_object() => {
                let mut diffs = Vec::new();
                json_diff("value", &a, &b, &mut diffs);
                for (path, a, b) in diffs {
                    field(path, a, b);
                }
            }
            _ => field(
                "value".into(),
                l.value.clone().into(),
                c.value.clone().into(),
            ),
        }
    }
    if changes.is_empty() {
        (DiffClass::Same, changes)
    } else {
        (DiffClass::Different, changes)
    }
}

/// The paths under which two JSON values differ (objects field by field).
fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, Value, Value)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).cloned().unwrap_or(Value::Null),
                    y.get(k).cloned().unwrap_or(Value::Null),
                );
                json_diff(&format!("{path}.{k}"), &va, &vb, out);
            }
        }
        _ if a != b => out.push((path.to_string(), a.clone(), b.clone())),
        _ => {}
    }
}

impl crate::Pipelines {
    /// Starts (or replaces) the shadow of deployment `name`: `version` of its plugin
    /// (default: the latest) with `config` (default: the deployment's), from the live
    /// position of every partition on. Blocking (instances are built first).
    pub fn shadow_start(
        &self,
        name: &str,
        version: Option<u32>,
        config: Option<BTreeMap<String, String>>,
    ) -> Result<(), crate::PipelineError> {
        use crate::PipelineError;
        let lock = self.name_lock(name);
        let _n = lock.lock().unwrap_or_else(|p| p.into_inner());
        let t = self.get(name)?;
        let spec = t.spec();
        if t.is_stateful() {
            return Err(PipelineError::Conflict(format!(
                "{name} keeps state: shadow deploys of stateful deployments are not supported yet"
            )));
        }
        if spec.decode.is_some() {
            return Err(PipelineError::Conflict(format!(
                "{name} decodes framed records for its plugin: shadow deploys of schema-aware deployments are not supported yet"
            )));
        }
        let version = match version {
            Some(v) => v,
            None => self
                .plugins
                .versions(&spec.plugin)?
                .iter()
                .map(|v| v.version)
                .max()
                .unwrap_or(0),
        };
        let candidate = self.plugins.compiled(&spec.plugin, version)?;
        if candidate.stateful() {
            return Err(PipelineError::Conflict(format!(
                "version {version} of {} keeps state: shadow deploys of stateful plugins are not supported yet",
                spec.plugin
            )));
        }
        let live_version = t.active_version();
        let live = self.plugins.compiled(&spec.plugin, live_version)?;
        let mut cand_spec = spec.clone();
        if let Some(c) = &config {
            cand_spec.config = c.clone();
        }
        // Instances of their own, whose plugin logs stay out of the deployment's.
        let cfg = |s: &sluice_deploy::TransformSpec, v: u32| {
            Arc::new(sluice_runtime::InstanceConfig {
                plugin: s.plugin.clone(),
                version: v,
                config: s.plugin_config(),
                outputs: s.outputs.clone(),
                limits: s.limits.clone(),
                tables: self.tables.clone(),
                tables_allowed: s.tables.clone(),
                logs: Arc::new(crate::logs::LogRing::default()),
                recycle_after: 100_000,
            })
        };
        let tasks = t.task_states();
        let partitions: Vec<u32> = tasks.iter().map(|s| s.partition).collect();
        let runtime_err = |e: sluice_runtime::RuntimeError| PipelineError::Runtime(e.to_string());
        let lives = self
            .build_executors(&live, &cfg(&spec, live_version), &partitions)
            .map_err(runtime_err)?;
        let candidates = self
            .build_executors(&candidate, &cfg(&cand_spec, version), &partitions)
            .map_err(|e| {
                PipelineError::Runtime(format!(
                    "the candidate (version {version}) cannot start: {e}"
                ))
            })?;
        let input = self.log.topic(&spec.input)?;
        // The executors were built under the server's setup interrupt (shutdown raises it):
        // the shadow's own interrupt stops them, and only them.
        let own = Arc::new(sluice_runtime::Interrupt::default());
        let mut lanes = Vec::new();
        for ((s, mut live), mut candidate) in tasks.iter().zip(lives).zip(candidates) {
            live.set_interrupt(own.clone());
            candidate.set_interrupt(own.clone());
            let Some(p) = input.partitions.get(s.partition as usize) else {
                continue;
            };
            lanes.push(Lane {
                input: p.clone(),
                position: s.position.load(Ordering::Acquire),
                live,
                candidate,
            });
        }
        let shadow = Shadow::start(
            name,
            version,
            cand_spec.config.clone(),
            live_version,
            lanes,
            spec.outputs.clone(),
        );
        let old = t
            .shadow
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(shadow);
        if let Some(old) = old {
            old.stop();
        }
        tracing::info!(transform = name, version, live_version, "shadow started");
        Ok(())
    }

    /// The shadow of `name`, as `GET …/shadow` shows it.
    pub fn shadow_view(&self, name: &str) -> Result<Option<ShadowView>, crate::PipelineError> {
        let t = self.get(name)?;
        let Some(shadow) = t.shadow.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Ok(None);
        };
        let input = self.log.topic(&t.spec().input).ok();
        Ok(Some(shadow.view(|p| {
            input
                .as_ref()
                .and_then(|i| i.partitions.get(p as usize))
                .map_or(0, |p| p.high_watermark())
        })))
    }

    /// Stops and forgets the shadow of `name`; whether there was one.
    pub fn shadow_stop(&self, name: &str) -> Result<bool, crate::PipelineError> {
        let t = self.get(name)?;
        let shadow = t.shadow.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(match shadow {
            Some(s) => {
                s.stop();
                true
            }
            None => false,
        })
    }

    /// Makes the shadow's candidate live — the deployment's ordinary swap, at a batch
    /// boundary with nothing lost or doubled — then drops the shadow. Errors leave both
    /// as they were.
    pub fn shadow_promote(&self, name: &str) -> Result<(), crate::PipelineError> {
        let t = self.get(name)?;
        let Some(shadow) = t.shadow.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Err(crate::PipelineError::Conflict(format!(
                "{name} has no shadow to promote"
            )));
        };
        let mut spec = t.spec();
        // A deployment that follows `latest` goes on following it when the candidate is
        // the latest version; else it is pinned to the candidate.
        let latest = self
            .plugins
            .versions(&spec.plugin)?
            .iter()
            .map(|v| v.version)
            .max();
        let follows = matches!(spec.version, sluice_deploy::VersionSel::Latest)
            && latest == Some(shadow.version);
        if !follows {
            spec.version = sluice_deploy::VersionSel::Exact(shadow.version);
        }
        spec.config = shadow.config.clone();
        self.deploy(name, spec)?;
        self.shadow_stop(name)?;
        tracing::info!(
            transform = name,
            version = shadow.version,
            "shadow promoted"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitted(value: &str) -> Verdict {
        Verdict {
            verdict: "emitted",
            outputs: vec![ShownRecord {
                output: "out".into(),
                key: Some("k".into()),
                value: Some(value.into()),
                headers: BTreeMap::new(),
                timestamp: 1,
            }],
            reason: None,
        }
    }

    fn none(verdict: &'static str) -> Verdict {
        Verdict {
            verdict,
            outputs: Vec::new(),
            reason: Some("why".into()),
        }
    }

    #[test]
    fn verdict_pairs_fall_in_their_class_with_json_paths() {
        let (c, ch) = classify(
            &emitted(r#"{"a":1,"b":{"c":"x"}}"#),
            &emitted(r#"{"a":1,"b":{"c":"y"}}"#),
        );
        assert_eq!(c, DiffClass::Different);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].field, "value.b.c");
        assert_eq!(classify(&emitted("x"), &emitted("x")).0, DiffClass::Same);
        assert_eq!(classify(&emitted("x"), &emitted("y")).1[0].field, "value");
        assert_eq!(
            classify(&emitted("x"), &none("dropped")).0,
            DiffClass::OnlyLive
        );
        assert_eq!(
            classify(&none("dropped"), &emitted("x")).0,
            DiffClass::OnlyCandidate
        );
        assert_eq!(
            classify(&none("dropped"), &none("dropped")).0,
            DiffClass::Same
        );
        assert_eq!(
            classify(&emitted("x"), &none("failed")).0,
            DiffClass::CandidateDeadLetter
        );
        assert_eq!(
            classify(&none("rejected"), &emitted("x")).0,
            DiffClass::LiveDeadLetter
        );
        assert_eq!(
            classify(&none("rejected"), &none("failed")).0,
            DiffClass::BothDeadLetter
        );
    }
}
