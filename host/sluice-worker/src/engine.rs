//! One deployment on one worker: a consumer in the deployment's group and a transactional
//! producer. A transaction stays open for the commit interval and takes in chunk after
//! chunk of records as they arrive — transformed and sent at once, so consuming,
//! transforming and producing overlap — then commits its outputs, its dead letters and the
//! consumed offsets (`send_offsets_to_transaction` with the group metadata, KIP-447), so
//! outputs are exactly once for `read_committed` consumers across worker crashes and
//! rebalances. A rebalance that takes a partition the open transaction read from aborts
//! it; the partitions still held are read again from where it began. A new plugin version
//! takes over between two transactions.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sluice_pipeline::{HistoryEntry, LogRing, StateShared, TransformSpec};
use sluice_runtime::{
    BatchInput, Compiled, Executor, InstanceConfig, RecordResult, Runtime, Tables,
};

use crate::chunk::{Chunk, Part, take};
use crate::control::{PartitionReport, client_config};

/// How a worker runs its deployments.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub bootstrap_servers: String,
    /// The worker group: deployments' consumer groups and transactional ids start with it.
    pub group: String,
    /// This worker's id within the group (its transactional ids' suffix).
    pub id: String,
    /// How long a worker gathers records into one transaction (Kafka Streams'
    /// `commit.interval.ms` under exactly-once): longer is more throughput, more latency.
    pub commit_interval: Duration,
    /// Most records in one transaction.
    pub max_batch: usize,
    /// Seals deployment secrets in the control topic (none: deployments with secrets are
    /// refused, and those others deployed do not run here).
    pub secrets_key: Option<crate::SecretsKey>,
    /// Where deployments with `"state_store": "disk"` keep their state (a directory per
    /// deployment, emptied when a session starts: the changelog on the cluster is the
    /// state's home).
    pub state_dir: std::path::PathBuf,
}

/// Defaults of [`EngineSettings::commit_interval`] and [`EngineSettings::max_batch`].
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(200);
pub const DEFAULT_MAX_BATCH: usize = 250_000;

/// The plugin version a runner should run.
#[derive(Clone)]
pub struct Target {
    pub version: u32,
    pub compiled: Arc<Compiled>,
}

/// What a deployment's runner shares with the rest of the worker: counters, status and the
/// version to run. Outlives runner restarts (a spec change restarts the runner).
#[derive(Default)]
pub struct Shared {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub traps: AtomicU64,
    pub fuel: AtomicU64,
    pub transactions: AtomicU64,
    /// Sessions that ended on an error (their open transaction aborted).
    pub restarts: AtomicU64,
    /// Times the set of held input partitions changed.
    pub rebalances: AtomicU64,
    /// Records later than the watermark (stateful deployments).
    pub late: AtomicU64,
    /// Stateful deployments: the state of each held partition, once restored.
    pub states: Mutex<BTreeMap<i32, Arc<StateShared>>>,
    /// The version running now (0: none yet).
    pub active_version: AtomicU32,
    pub logs: Arc<LogRing>,
    pub(crate) target: Mutex<Option<Target>>,
    target_gen: AtomicU64,
    assigned: Mutex<Vec<PartitionReport>>,
    last_error: Mutex<Option<String>>,
    history: Mutex<Vec<HistoryEntry>>,
    /// The version that last processed each partition here.
    ran: Mutex<HashMap<i32, u32>>,
    /// Who holds which input partition, and the live workers (from the group's reports).
    peers: Mutex<Peers>,
    /// Stateful deployments with standby replicas: the partitions whose state this worker
    /// follows for another.
    standbys: Mutex<Vec<crate::control::StandbyReport>>,
}

/// The group as this worker sees it: each input partition's holder, the live workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    pub owners: BTreeMap<i32, String>,
    /// Sorted.
    pub live: Vec<String>,
}

impl Peers {
    /// The input partitions worker `me` keeps a standby copy of, with `replicas` per
    /// partition: a partition held by another worker is followed by the `replicas` live
    /// workers after its holder, in id order.
    pub fn standby_for(&self, me: &str, replicas: u32) -> Vec<i32> {
        let n = self.live.len();
        let replicas = (replicas as usize).min(n.saturating_sub(1));
        self.owners
            .iter()
            .filter(|(_, owner)| owner.as_str() != me)
            .filter(|(_, owner)| {
                self.live.iter().position(|w| w == *owner).is_some_and(|i| {
                    (1..=replicas).any(|k| self.live.get((i + k) % n).is_some_and(|w| w == me))
                })
            })
            .map(|(p, _)| *p)
            .collect()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Sets the version to run; a running session switches after its transaction.
    pub fn set_target(&self, t: Target) {
        *lock(&self.target) = Some(t);
        self.target_gen.fetch_add(1, Ordering::AcqRel);
    }

    pub fn target_version(&self) -> Option<u32> {
        lock(&self.target).as_ref().map(|t| t.version)
    }

    /// The partitions held, each with its state once restored (stateful deployments).
    pub fn set_peers(&self, peers: Peers) {
        *lock(&self.peers) = peers;
    }

    pub fn peers(&self) -> Peers {
        lock(&self.peers).clone()
    }

    pub(crate) fn set_standbys(&self, s: Vec<crate::control::StandbyReport>) {
        *lock(&self.standbys) = s;
    }

    pub fn standbys(&self) -> Vec<crate::control::StandbyReport> {
        lock(&self.standbys).clone()
    }

    pub fn partitions(&self) -> Vec<PartitionReport> {
        let states = lock(&self.states).clone();
        let mut held = lock(&self.assigned).clone();
        for p in &mut held {
            p.state = states
                .get(&p.partition)
                .map(|st| sluice_pipeline::partition_state(st));
        }
        held
    }

    /// Whether the version to run keeps state.
    pub fn stateful(&self) -> bool {
        lock(&self.target)
            .as_ref()
            .is_some_and(|t| t.compiled.stateful())
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    pub fn set_error(&self, e: impl Into<String>) {
        *lock(&self.last_error) = Some(e.into());
    }

    pub fn history(&self) -> Vec<HistoryEntry> {
        lock(&self.history).clone()
    }

    pub fn seed_history(&self, h: Vec<HistoryEntry>) {
        let mut mine = lock(&self.history);
        if mine.is_empty() {
            *mine = h;
        }
    }

    /// The version to run, when it changed since generation `seen` (which moves on).
    pub(crate) fn new_target(&self, seen: &mut u64) -> Option<Target> {
        let generation = self.target_gen.load(Ordering::Acquire);
        if generation == *seen {
            return None;
        }
        *seen = generation;
        lock(&self.target).clone()
    }

    /// Publishes the state of the partitions held now (stateful deployments).
    pub(crate) fn set_states(&self, states: BTreeMap<i32, Arc<StateShared>>) {
        *lock(&self.states) = states;
    }

    /// The state of each held partition (stateful deployments).
    pub fn states(&self) -> BTreeMap<i32, Arc<StateShared>> {
        lock(&self.states).clone()
    }

    /// Records the partitions held now; counts a change as a rebalance.
    pub(crate) fn hold(&self, now: Vec<PartitionReport>) {
        let mut held = lock(&self.assigned);
        let before: Vec<i32> = held.iter().map(|p| p.partition).collect();
        let after: Vec<i32> = now.iter().map(|p| p.partition).collect();
        if before != after {
            self.rebalances.fetch_add(1, Ordering::Relaxed);
        }
        *held = now;
    }

    /// Notes that `version` processed `partition` from `offset` on; a change of version is
    /// a history entry.
    pub(crate) fn ran(&self, partition: i32, version: u32, offset: i64) {
        let mut ran = lock(&self.ran);
        if ran.insert(partition, version) != Some(version) {
            lock(&self.history).push(HistoryEntry {
                version,
                partition: partition as u32,
                from_offset: offset.max(0) as u64,
            });
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("plugin: {0}")]
    Plugin(String),
    #[error("the consumer has no group metadata yet")]
    NoGroupMetadata,
    /// A rebalance took a partition the open transaction read from (handled inside the
    /// session: the transaction is aborted).
    #[error("a rebalance took a partition of the open transaction")]
    Rebalanced,
}

pub(crate) const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A consumed record, owned.
pub(crate) struct In {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A deployment as one runner runs it.
pub struct Job<'a> {
    pub name: &'a str,
    pub spec: &'a TransformSpec,
    pub runtime: &'a Arc<Runtime>,
    pub tables: Arc<dyn Tables>,
    pub shared: &'a Shared,
}

impl Job<'_> {
    /// How the plugin's instances are set up for `version`.
    pub(crate) fn instance_config(&self, version: u32) -> Arc<InstanceConfig> {
        let d = self.spec;
        Arc::new(InstanceConfig {
            plugin: d.plugin.clone(),
            version,
            config: d.plugin_config(),
            outputs: d.outputs.clone(),
            limits: d.limits.clone(),
            tables: self.tables.clone(),
            tables_allowed: d.tables.clone(),
            logs: self.shared.logs.clone(),
            recycle_after: 100_000,
        })
    }
}

/// The consumer group of a deployment's workers.
pub fn group_of(settings: &EngineSettings, deployment: &str) -> String {
    format!("{}.{deployment}", settings.group)
}

/// The deployment's consumer in its group: committed reads, offsets committed by the
/// producer's transactions only.
pub(crate) fn consumer(
    settings: &EngineSettings,
    job: &Job<'_>,
) -> Result<BaseConsumer<LagContext>, EngineError> {
    let d = job.spec;
    let consumer: BaseConsumer<LagContext> =
        client_config(&settings.bootstrap_servers, &settings.id)
            .set("group.id", group_of(settings, job.name))
            .set("enable.auto.commit", "false")
            .set(
                "auto.offset.reset",
                match d.start {
                    sluice_pipeline::Start::Latest => "latest",
                    _ => "earliest",
                },
            )
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            // A rebalance reaches the other members with their next heartbeat: 1 s, not
            // librdkafka's 3 s, keeps partitions from standing unowned for seconds.
            .set("heartbeat.interval.ms", "1000")
            // librdkafka's defaults stop fetching a partition for a whole second once 100k
            // messages wait in the local queue (`fetch.queue.backoff.ms`): at a million
            // records/s that is a stall every tenth of a second. Keep fetching.
            .set("queued.min.messages", "1000000")
            .set("queued.max.messages.kbytes", "262144")
            .set("fetch.queue.backoff.ms", "10")
            .set("max.partition.fetch.bytes", "8388608")
            .set("statistics.interval.ms", "1000")
            // Partitions added to the input (CreatePartitions) show in the metadata within
            // seconds, not librdkafka's default five minutes: the group rebalances onto them
            // without a redeploy.
            .set("topic.metadata.refresh.interval.ms", "3000")
            .create_with_context(LagContext {
                topic: d.input.clone(),
                highs: Mutex::default(),
                assigned: Mutex::default(),
                rebalances: AtomicU64::new(0),
            })?;
    consumer.subscribe(&[&d.input])?;
    Ok(consumer)
}

/// The worker's transactional producer for a deployment (its id fences an earlier
/// instance of the same worker); `timeout`: how long a transaction may stay open before
/// the cluster aborts it — after a crash, how long its partitions wait for the next owner.
pub(crate) fn producer(
    settings: &EngineSettings,
    job: &Job<'_>,
    timeout: Duration,
) -> Result<BaseProducer, EngineError> {
    let producer: BaseProducer = client_config(&settings.bootstrap_servers, &settings.id)
        .set(
            "transactional.id",
            format!("{}.{}.{}", settings.group, job.name, settings.id),
        )
        .set("transaction.timeout.ms", timeout.as_millis().to_string())
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        // Transactions hold hundreds of thousands of records: room for them in the queue,
        // and larger produce batches.
        .set("queue.buffering.max.messages", "1000000")
        .set("batch.num.messages", "100000")
        .set("batch.size", "8000000")
        // A delivery report per record is work nobody reads: errors only (a failed send
        // also fails the transaction's commit).
        .set("delivery.report.only.error", "true")
        .create()?;
    producer.init_transactions(TXN_TIMEOUT)?;
    Ok(producer)
}

/// Most records taken from the consumer before they are transformed and sent: the
/// transaction stays open for the commit interval, taking in chunk after chunk, so
/// consuming, transforming and producing overlap instead of taking turns.
const CHUNK: usize = 20_000;

/// One consumer and one transactional producer, until an error or `stop`.
pub(crate) fn session(
    settings: &EngineSettings,
    job: &Job<'_>,
    stop: &AtomicBool,
) -> Result<(), EngineError> {
    let d = job.spec;
    let consumer = consumer(settings, job)?;
    let producer = producer(settings, job, Duration::from_secs(60))?;
    let mut turn = Turn {
        job,
        producer: &producer,
        consumer: &consumer,
        dead_letter: d.dead_letter_topic(),
        executors: HashMap::new(),
        open: Open::default(),
    };
    let mut seen_gen = u64::MAX;
    let mut current: Option<Running> = None;
    while !stop.load(Ordering::Acquire) {
        // A new version takes over here, between two transactions.
        if let Some(t) = job.shared.new_target(&mut seen_gen) {
            turn.executors.clear();
            job.shared
                .active_version
                .store(t.version, Ordering::Release);
            current = Some((t.version, job.instance_config(t.version), t.compiled));
        }
        let Some(running) = current.clone() else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        // Transactions end every commit interval, counted from when this one began to
        // wait for records: a record that arrives in an idle stream waits half an interval
        // on average, not a whole one.
        let deadline = Instant::now() + settings.commit_interval;
        let mut chunk = take(&consumer, settings.commit_interval, CHUNK)?;
        // A rebalance while waiting may have taken partitions away: their records are
        // the new owner's to process (from the committed offsets), not ours.
        let held = held(&consumer, &d.input)?;
        chunk.retain(|p| held.iter().any(|h| h.partition == p));
        job.shared.hold(held);
        if chunk.is_empty() {
            producer.poll(Duration::ZERO);
            continue;
        }
        producer.begin_transaction()?;
        turn.open = Open::default();
        match turn
            .fill(settings, deadline, &running, chunk, stop)
            .and_then(|()| commit(&producer, &consumer, &d.input, &turn.open.next))
        {
            Ok(()) => turn.open.tally.add_to(job.shared),
            Err(EngineError::Rebalanced) => {
                // A partition of the open transaction was taken away: its records are
                // the new owner's. Abort, and read the partitions still held again from
                // where this transaction began.
                let (began, records) = (Instant::now(), turn.open.records);
                abort(&producer)?;
                turn.rewind(&d.input)?;
                tracing::info!(
                    deployment = job.name,
                    records,
                    took_ms = began.elapsed().as_millis() as u64,
                    "a rebalance took a partition of the open transaction: aborted, reading again"
                );
            }
            Err(e) => {
                let _ = abort(&producer);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The plugin version a session runs: its number, instance config and compiled code.
type Running = (u32, Arc<InstanceConfig>, Arc<Compiled>);

/// What the open transaction has consumed.
#[derive(Default)]
struct Open {
    /// Input partition → the first offset this transaction consumed, and the partition's
    /// assignment count then (see [`LagContext::assignment_of`]).
    first: BTreeMap<i32, (i64, u64)>,
    /// Input partition → the next offset to consume (what the commit stores).
    next: BTreeMap<i32, i64>,
    records: usize,
    tally: Tally,
}

/// What a transaction did, added to the deployment's counters when it commits (an
/// aborted transaction's records are read and counted again).
#[derive(Default)]
struct Tally {
    records_in: u64,
    records_out: u64,
    rejected: u64,
    failed: u64,
}

impl Tally {
    fn add_to(&self, shared: &Shared) {
        shared
            .records_in
            .fetch_add(self.records_in, Ordering::Relaxed);
        shared
            .records_out
            .fetch_add(self.records_out, Ordering::Relaxed);
        shared.rejected.fetch_add(self.rejected, Ordering::Relaxed);
        shared.failed.fetch_add(self.failed, Ordering::Relaxed);
        shared.transactions.fetch_add(1, Ordering::Relaxed);
    }
}

/// One session's transactions: the clients, the plugin's executors and what the open
/// transaction holds.
struct Turn<'a, 'j> {
    job: &'a Job<'j>,
    producer: &'a BaseProducer,
    consumer: &'a BaseConsumer<LagContext>,
    dead_letter: String,
    executors: HashMap<i32, Executor>,
    open: Open,
}

impl Turn<'_, '_> {
    /// Transforms and sends `chunk`, then chunk after chunk as records arrive, until
    /// `deadline`, until the transaction holds `max_batch` records or `stop` is set. [`EngineError::Rebalanced`] when a rebalance took a
    /// partition the transaction has read from.
    fn fill(
        &mut self,
        settings: &EngineSettings,
        deadline: Instant,
        running: &Running,
        mut chunk: Chunk,
        stop: &AtomicBool,
    ) -> Result<(), EngineError> {
        let input = &self.job.spec.input;
        let mut rebalances = self.consumer.context().rebalances();
        loop {
            self.run(running, chunk)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let room = settings.max_batch.saturating_sub(self.open.records);
            if left.is_zero() || room == 0 || stop.load(Ordering::Acquire) {
                return Ok(());
            }
            chunk = take(self.consumer, left, CHUNK.min(room))?;
            let ctx = self.consumer.context();
            if ctx.rebalances() != rebalances {
                rebalances = ctx.rebalances();
                let held = held(self.consumer, input)?;
                let kept = |p: i32| held.iter().any(|h| h.partition == p);
                if self
                    .open
                    .first
                    .iter()
                    .any(|(p, (_, a))| !kept(*p) || ctx.assignment_of(*p) != *a)
                {
                    return Err(EngineError::Rebalanced);
                }
                chunk.retain(kept);
                self.job.shared.hold(held);
            }
        }
    }

    /// Runs the plugin over one chunk, partition by partition, and sends what it emits.
    fn run(
        &mut self,
        (version, instance, compiled): &Running,
        chunk: Chunk,
    ) -> Result<(), EngineError> {
        let job = self.job;
        let ctx = self.consumer.context();
        self.open.records += chunk.records;
        for (p, part) in chunk.parts {
            self.open
                .first
                .entry(p)
                .or_insert_with(|| (part.base_offset, ctx.assignment_of(p)));
            self.open.next.insert(p, part.last_offset + 1);
            let ex = match self.executors.entry(p) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(
                    job.runtime
                        .executor(compiled.clone(), instance.clone(), p as u32)
                        .map_err(|e| EngineError::Plugin(e.to_string()))?,
                ),
            };
            job.shared.ran(p, *version, part.base_offset);
            transform(
                ex,
                self.producer,
                job,
                &self.dead_letter,
                p,
                part,
                &mut self.open.tally,
            )?;
        }
        Ok(())
    }

    /// After an abort: the partitions still held (and not given away and back meanwhile)
    /// are read again from the aborted transaction's first offsets.
    fn rewind(&mut self, input: &str) -> Result<(), EngineError> {
        let ctx = self.consumer.context();
        let held = held(self.consumer, input)?;
        for (p, (first, assigned)) in std::mem::take(&mut self.open).first {
            if held.iter().any(|h| h.partition == p) && ctx.assignment_of(p) == assigned {
                self.consumer
                    .seek(input, p, Offset::Offset(first), Duration::from_secs(10))?;
            }
        }
        Ok(())
    }
}

/// Sends the consumed positions `next` (input partition → next offset) with the group's
/// metadata (KIP-447: a fenced member's commit fails) and commits the open transaction.
pub(crate) fn commit(
    producer: &BaseProducer,
    consumer: &BaseConsumer<LagContext>,
    input: &str,
    next: &BTreeMap<i32, i64>,
) -> Result<(), EngineError> {
    if !next.is_empty() {
        let mut offsets = TopicPartitionList::new();
        for (p, o) in next {
            offsets.add_partition_offset(input, *p, Offset::Offset(*o))?;
        }
        let meta = consumer
            .group_metadata()
            .ok_or(EngineError::NoGroupMetadata)?;
        producer.send_offsets_to_transaction(&offsets, &meta, TXN_TIMEOUT)?;
    }
    flush(producer)?;
    producer.commit_transaction(TXN_TIMEOUT)?;
    Ok(())
}

/// Aborts the open transaction. librdkafka's abort waits for the delivery reports of the
/// records it purges, and a `BaseProducer` only receives them when polled: without
/// polling in between, an abort with records in flight hangs for its whole timeout.
pub(crate) fn abort(producer: &BaseProducer) -> Result<(), EngineError> {
    let deadline = Instant::now() + TXN_TIMEOUT;
    loop {
        match producer.abort_transaction(Duration::from_millis(100)) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(e))
                if (e.is_retriable() || e.code() == RDKafkaErrorCode::OperationTimedOut)
                    && Instant::now() < deadline =>
            {
                producer.poll(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until every record sent is acknowledged, a millisecond at a time (rdkafka's own
/// flush polls in steps of 100 ms that each run to their end: a tenth of a second per
/// commit for nothing).
fn flush(producer: &BaseProducer) -> Result<(), EngineError> {
    let deadline = std::time::Instant::now() + TXN_TIMEOUT;
    while producer.in_flight_count() > 0 {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut).into());
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// The input partitions' last stable offsets, from the consumer's statistics (every
/// second, no request of their own: a request of ours would queue behind the consumer's
/// long-poll fetches on the same connection).
pub(crate) struct LagContext {
    topic: String,
    highs: Mutex<HashMap<i32, i64>>,
    /// How many times each input partition was assigned here: a partition taken away and
    /// given back between two looks may have been processed elsewhere meanwhile.
    assigned: Mutex<HashMap<i32, u64>>,
    /// Rebalance events seen (assignments and revocations).
    rebalances: AtomicU64,
}

impl LagContext {
    /// How many rebalance events this consumer has seen: unchanged means the assignment
    /// is as it was.
    pub(crate) fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::Acquire)
    }

    /// The last stable offset of an input partition, as of the last statistics.
    pub(crate) fn high_of(&self, partition: i32) -> Option<i64> {
        lock(&self.highs).get(&partition).copied()
    }

    /// The assignment count of `partition` (see `assigned`).
    pub(crate) fn assignment_of(&self, partition: i32) -> u64 {
        lock(&self.assigned).get(&partition).copied().unwrap_or(0)
    }
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        let Some(t) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut highs = lock(&self.highs);
        for (p, part) in &t.partitions {
            let high = if part.ls_offset >= 0 {
                part.ls_offset
            } else {
                part.hi_offset
            };
            if *p >= 0 && high >= 0 {
                highs.insert(*p, high);
            }
        }
    }
}

impl ConsumerContext for LagContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::AcqRel);
        if let Rebalance::Assign(list) = rebalance {
            let mut assigned = lock(&self.assigned);
            for e in list.elements_for_topic(&self.topic) {
                *assigned.entry(e.partition()).or_default() += 1;
            }
        }
    }
}

/// The input partitions held now, with their positions and lag.
pub(crate) fn held(
    consumer: &BaseConsumer<LagContext>,
    topic: &str,
) -> Result<Vec<PartitionReport>, EngineError> {
    let positions = consumer.position()?;
    let highs = lock(&consumer.context().highs).clone();
    let mut held: Vec<PartitionReport> = consumer
        .assignment()?
        .elements()
        .iter()
        .map(|e| {
            let p = e.partition();
            let position = positions
                .find_partition(topic, p)
                .and_then(|x| x.offset().to_raw())
                .filter(|o| *o >= 0);
            let high = highs.get(&p).copied().unwrap_or(-1);
            PartitionReport {
                partition: p,
                position: position.unwrap_or(-1),
                lag: match position {
                    Some(pos) if high >= pos => high - pos,
                    _ => -1,
                },
                state: None,
            }
        })
        .collect();
    held.sort_unstable_by_key(|p| p.partition);
    Ok(held)
}

/// Up to `max` records, for at most `interval`.
pub(crate) fn gather(
    consumer: &BaseConsumer<LagContext>,
    interval: Duration,
    max: usize,
) -> Result<Vec<In>, EngineError> {
    let deadline = Instant::now() + interval;
    let mut out = Vec::new();
    while out.len() < max {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(m) = consumer.poll(left) else {
            break;
        };
        out.push(owned(&m?));
    }
    Ok(out)
}

/// A consumed message, copied out of the consumer's buffers.
fn owned(m: &rdkafka::message::BorrowedMessage<'_>) -> In {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    In {
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis().unwrap_or(0),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// Sends one record, waiting while the producer's queue is full.
pub(crate) fn send(
    producer: &BaseProducer,
    mut rec: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), EngineError> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                producer.poll(Duration::from_millis(1));
                rec = r;
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Runs the plugin over one partition's records and sends what it emits, rejects and
/// fails, inside the open transaction.
fn transform(
    ex: &mut Executor,
    producer: &BaseProducer,
    job: &Job<'_>,
    dead_letter: &str,
    partition: i32,
    part: Part,
    tally: &mut Tally,
) -> Result<(), EngineError> {
    let d = job.spec;
    let shared = job.shared;
    let bad = |e: sluice_sdk::codec::CodecError| EngineError::Plugin(format!("input batch: {e}"));
    let mut batch = part.into_batch();
    loop {
        let count = batch.len();
        let out = ex.run(&BatchInput::records(
            &d.input,
            partition as u32,
            batch.base_offset,
            batch.base_timestamp,
            batch.section.clone(),
            count as u32,
        ));
        shared
            .traps
            .fetch_add(u64::from(out.traps), Ordering::Relaxed);
        shared.fuel.fetch_add(out.fuel_used, Ordering::Relaxed);
        let done = (out.done as usize).clamp(1, count);
        for (i, result) in out.per_record(count).into_iter().enumerate().take(done) {
            let reason = match result {
                RecordResult::Dropped => continue,
                RecordResult::Emitted(list) => {
                    for e in list {
                        let Ok(view) = e.view() else { continue };
                        let Some(topic) = d.outputs.get(e.output as usize) else {
                            continue;
                        };
                        let mut rec = BaseRecord::to(topic)
                            .timestamp(e.base_timestamp + view.timestamp_delta);
                        // No header list for a record without headers (an allocation
                        // in librdkafka per record, for nothing).
                        let mut hs = view.headers().peekable();
                        if hs.peek().is_some() {
                            let mut headers = OwnedHeaders::new();
                            for h in hs {
                                headers = headers.insert(Header {
                                    key: h.key_str(),
                                    value: h.value,
                                });
                            }
                            rec = rec.headers(headers);
                        }
                        if let Some(k) = view.key {
                            rec = rec.key(k);
                        }
                        if let Some(v) = view.value {
                            rec = rec.payload(v);
                        }
                        send(producer, rec)?;
                        tally.records_out += 1;
                    }
                    continue;
                }
                RecordResult::Rejected(reason) => {
                    tally.rejected += 1;
                    reason
                }
                RecordResult::Failed(reason) => {
                    tally.failed += 1;
                    reason
                }
            };
            let input = batch.record(i).map_err(bad)?;
            let partition_s = partition.to_string();
            let offset_s = input.offset.to_string();
            let mut headers = OwnedHeaders::new();
            for h in input.view.headers() {
                headers = headers.insert(Header {
                    key: h.key_str(),
                    value: h.value,
                });
            }
            for (k, v) in [
                (sluice_log::dead_letter::ERROR_HEADER, reason.as_str()),
                (
                    sluice_log::dead_letter::SOURCE_TOPIC_HEADER,
                    d.input.as_str(),
                ),
                (
                    sluice_log::dead_letter::SOURCE_PARTITION_HEADER,
                    &partition_s,
                ),
                (sluice_log::dead_letter::SOURCE_OFFSET_HEADER, &offset_s),
                ("sluice-plugin", d.plugin.as_str()),
            ] {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let mut rec = BaseRecord::to(dead_letter)
                .timestamp(input.timestamp)
                .headers(headers);
            if let Some(k) = input.view.key {
                rec = rec.key(k);
            }
            if let Some(v) = input.view.value {
                rec = rec.payload(v);
            }
            send(producer, rec)?;
        }
        tally.records_in += done as u64;
        if done == count {
            return Ok(());
        }
        // The run was cut short (a trap, a limit): the rest goes again on its own.
        batch = batch.rest(done).map_err(bad)?;
    }
}
