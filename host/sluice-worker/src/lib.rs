//! `sluice worker`: a transform deployment run against an existing Kafka-compatible cluster
//! through librdkafka, with no local log. The deployment's input partitions are shared by
//! the workers of a consumer group (cooperative-sticky), and every read goes out as one
//! Kafka transaction — its outputs, its dead letters and the consumed offsets
//! (`send_offsets_to_transaction` with the group metadata, KIP-447) — so outputs are
//! exactly once for `read_committed` consumers across worker crashes and rebalances.
//!
//! The plugin runs in the same runtime, with the same limits and dead letters, as in
//! `sluice serve`. This first slice runs one deployment per process, from the command
//! line; plugins, deployments and status in cluster topics and the HTTP API are next.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sluice_runtime::{
    BatchInput, Executor, InstanceConfig, Limits, NoTables, RecordResult, Runtime, TracingLogs,
};

/// What a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub bootstrap_servers: String,
    /// The worker group: deployments' consumer groups and transactional ids start with it.
    pub group: String,
    /// This worker's id within the group (its transactional id's suffix).
    pub id: String,
    pub deployment: Deployment,
    /// Where compiled plugins are cached.
    pub cache_dir: std::path::PathBuf,
    /// How long a worker gathers records into one transaction (Kafka Streams'
    /// `commit.interval.ms` under exactly-once): longer is more throughput, more latency.
    pub commit_interval: Duration,
    /// Most records in one transaction.
    pub max_batch: usize,
}

/// Defaults of [`WorkerConfig::commit_interval`] and [`WorkerConfig::max_batch`].
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(200);
pub const DEFAULT_MAX_BATCH: usize = 50_000;

#[derive(Debug, Clone)]
pub struct Deployment {
    pub name: String,
    pub plugin: String,
    pub plugin_bytes: Vec<u8>,
    pub input: String,
    pub outputs: Vec<String>,
    pub dead_letter: Option<String>,
    pub config: BTreeMap<String, String>,
    pub limits: Limits,
}

/// Records and transactions done so far, and what the worker holds now.
#[derive(Debug, Default)]
pub struct Counters {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub dead_letters: AtomicU64,
    pub transactions: AtomicU64,
    /// Sessions that ended on an error (their open transaction aborted).
    pub aborts: AtomicU64,
    /// Times the set of assigned input partitions changed.
    pub rebalances: AtomicU64,
    /// The input partitions this worker holds.
    pub assigned: std::sync::Mutex<Vec<i32>>,
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    pub fn assigned(&self) -> Vec<i32> {
        self.assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the partitions held now; counts a change as a rebalance.
    fn hold(&self, now: Vec<i32>) {
        let mut held = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
        if *held != now {
            *held = now;
            self.rebalances.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("plugin: {0}")]
    Plugin(String),
    #[error("the consumer has no group metadata yet")]
    NoGroupMetadata,
}

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A consumed record, owned.
struct In {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Runs the deployment until `stop` is set; a failed transaction is aborted and the work
/// starts again from the committed offsets (new consumer and producer).
pub fn run(cfg: &WorkerConfig, stop: &AtomicBool, counters: &Counters) -> Result<(), WorkerError> {
    let runtime = Runtime::new(&cfg.cache_dir).map_err(|e| WorkerError::Plugin(e.to_string()))?;
    let compiled = runtime
        .compile(&cfg.deployment.plugin_bytes)
        .map_err(|e| WorkerError::Plugin(e.to_string()))?;
    if compiled.stateful() {
        return Err(WorkerError::Plugin(
            "stateful plugins run in `sluice serve` only for now".into(),
        ));
    }
    let d = &cfg.deployment;
    let instance = Arc::new(InstanceConfig {
        plugin: d.plugin.clone(),
        version: 1,
        config: d.config.clone(),
        outputs: d.outputs.clone(),
        limits: d.limits.clone(),
        tables: Arc::new(NoTables),
        tables_allowed: Vec::new(),
        logs: Arc::new(TracingLogs),
        recycle_after: 10_000,
    });
    while !stop.load(Ordering::Acquire) {
        match session(cfg, &runtime, &compiled, &instance, stop, counters) {
            Ok(()) => return Ok(()),
            Err(e) => {
                counters.aborts.fetch_add(1, Ordering::Relaxed);
                *counters
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                tracing::warn!(deployment = %d.name, error = %e, "worker session ended; starting again from the committed offsets");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    Ok(())
}

fn client(cfg: &WorkerConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers);
    c.set("client.id", format!("sluice-worker-{}", cfg.id));
    c
}

/// One consumer and one transactional producer, until an error or `stop`.
fn session(
    cfg: &WorkerConfig,
    runtime: &Arc<Runtime>,
    compiled: &Arc<sluice_runtime::Compiled>,
    instance: &Arc<InstanceConfig>,
    stop: &AtomicBool,
    counters: &Counters,
) -> Result<(), WorkerError> {
    let d = &cfg.deployment;
    let consumer: BaseConsumer = client(cfg)
        .set("group.id", format!("{}.{}", cfg.group, d.name))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .create()?;
    consumer.subscribe(&[&d.input])?;
    let producer: BaseProducer = client(cfg)
        .set(
            "transactional.id",
            format!("{}.{}.{}", cfg.group, d.name, cfg.id),
        )
        .set("transaction.timeout.ms", "60000")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()?;
    producer.init_transactions(TXN_TIMEOUT)?;
    let dead_letter = d
        .dead_letter
        .clone()
        .unwrap_or_else(|| sluice_log::dead_letter::transform_topic(&d.input));
    let mut executors: HashMap<i32, Executor> = HashMap::new();
    while !stop.load(Ordering::Acquire) {
        let mut batch = gather(&consumer, cfg.commit_interval, cfg.max_batch)?;
        // A rebalance during the gather may have taken partitions away: their records
        // are the new owner's to process (from the committed offsets), not ours.
        let mut held: Vec<i32> = consumer
            .assignment()?
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        held.sort_unstable();
        batch.retain(|m| held.binary_search(&m.partition).is_ok());
        counters.hold(held);
        if batch.is_empty() {
            producer.poll(Duration::ZERO);
            continue;
        }
        producer.begin_transaction()?;
        let result = (|| {
            let mut next: BTreeMap<i32, i64> = BTreeMap::new();
            let mut by_partition: BTreeMap<i32, Vec<In>> = BTreeMap::new();
            for m in batch {
                next.insert(m.partition, m.offset + 1);
                by_partition.entry(m.partition).or_default().push(m);
            }
            for (p, records) in by_partition {
                let ex = match executors.entry(p) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => v.insert(
                        runtime
                            .executor(compiled.clone(), instance.clone(), p as u32)
                            .map_err(|e| WorkerError::Plugin(e.to_string()))?,
                    ),
                };
                transform(ex, &producer, d, &dead_letter, p, &records, counters)?;
            }
            let mut offsets = TopicPartitionList::new();
            for (p, o) in &next {
                offsets.add_partition_offset(&d.input, *p, Offset::Offset(*o))?;
            }
            let meta = consumer
                .group_metadata()
                .ok_or(WorkerError::NoGroupMetadata)?;
            producer.send_offsets_to_transaction(&offsets, &meta, TXN_TIMEOUT)?;
            producer.commit_transaction(TXN_TIMEOUT)?;
            Ok::<_, WorkerError>(())
        })();
        if let Err(e) = result {
            let _ = producer.abort_transaction(TXN_TIMEOUT);
            return Err(e);
        }
        counters.transactions.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Up to `max` records, for at most `interval`.
fn gather(consumer: &BaseConsumer, interval: Duration, max: usize) -> Result<Vec<In>, WorkerError> {
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
        let m = m?;
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        out.push(In {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis().unwrap_or(0),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    Ok(out)
}

/// Sends one record, waiting while the producer's queue is full.
fn send(producer: &BaseProducer, mut rec: BaseRecord<'_, [u8], [u8]>) -> Result<(), WorkerError> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                producer.poll(Duration::from_millis(10));
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
    d: &Deployment,
    dead_letter: &str,
    partition: i32,
    records: &[In],
    counters: &Counters,
) -> Result<(), WorkerError> {
    let mut start = 0usize;
    while start < records.len() {
        let chunk = &records[start..];
        let base_offset = chunk[0].offset;
        let base_ts = chunk[0].timestamp;
        let mut section = Vec::new();
        for r in chunk {
            sluice_sdk::codec::put_record(
                &mut section,
                r.timestamp - base_ts,
                (r.offset - base_offset) as i32,
                r.key.as_deref(),
                r.value.as_deref(),
                r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
            );
        }
        let out = ex.run(&BatchInput::records(
            &d.input,
            partition as u32,
            base_offset,
            base_ts,
            Bytes::from(section),
            chunk.len() as u32,
        ));
        let done = (out.done as usize).clamp(1, chunk.len());
        for (i, result) in out
            .per_record(chunk.len())
            .into_iter()
            .enumerate()
            .take(done)
        {
            let input = &chunk[i];
            match result {
                RecordResult::Dropped => {}
                RecordResult::Emitted(list) => {
                    for e in list {
                        let Ok(view) = e.view() else { continue };
                        let Some(topic) = d.outputs.get(e.output as usize) else {
                            continue;
                        };
                        let mut headers = OwnedHeaders::new();
                        for h in view.headers() {
                            headers = headers.insert(Header {
                                key: h.key_str(),
                                value: h.value,
                            });
                        }
                        let mut rec = BaseRecord::to(topic)
                            .timestamp(e.base_timestamp + view.timestamp_delta)
                            .headers(headers);
                        if let Some(k) = view.key {
                            rec = rec.key(k);
                        }
                        if let Some(v) = view.value {
                            rec = rec.payload(v);
                        }
                        send(producer, rec)?;
                        counters.records_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
                RecordResult::Rejected(reason) | RecordResult::Failed(reason) => {
                    let partition_s = partition.to_string();
                    let offset_s = input.offset.to_string();
                    let mut headers = OwnedHeaders::new();
                    for (k, v) in &input.headers {
                        headers = headers.insert(Header {
                            key: k,
                            value: v.as_deref(),
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
                    if let Some(k) = input.key.as_deref() {
                        rec = rec.key(k);
                    }
                    if let Some(v) = input.value.as_deref() {
                        rec = rec.payload(v);
                    }
                    send(producer, rec)?;
                    counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        counters
            .records_in
            .fetch_add(done as u64, Ordering::Relaxed);
        start += done;
    }
    Ok(())
}
