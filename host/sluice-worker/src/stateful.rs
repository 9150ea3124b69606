//! Stateful deployments on a worker: the operator `sluice serve` runs (event time,
//! watermarks, late records, keyed state, timers, the idle advance — see
//! `sluice_pipeline::detached`), with each input partition's state kept in a compacted
//! changelog topic on the cluster (`<group>.<deployment>.state`, one partition per input
//! partition). Each transaction carries the outputs, dead letters, late records, the
//! changelog records and the consumed offsets of a gathered read (Kafka Streams'
//! exactly-once v2, KIP-447), so state, outputs and input positions move together across
//! crashes and rebalances.
//!
//! A partition assigned here is restored before it is processed, outside any transaction:
//! first the group's committed offset is fetched as stable (a transaction of the previous
//! owner that carried it has ended, committed or aborted), then the changelog partition is
//! read, committed records only, to its end. A partition taken away drops its state; one
//! given back restores again (another worker may have moved it meanwhile). A failed
//! transaction ends the session: every partition restores from what was committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sluice_log::batch::StoredRecord;
use sluice_pipeline::detached::{Detached, DetachedError, Read};
use sluice_pipeline::{Layout, Transform};
use sluice_runtime::{Compiled, InstanceConfig};

use crate::control::{PartitionReport, client_config};
use crate::engine::{
    EngineError, EngineSettings, In, Job, LagContext, abort, commit, consumer, gather, held,
    producer, send,
};
use crate::standby::Standbys;

/// How long a transaction of a stateful deployment may stay open: after a worker dies
/// mid-transaction, its partitions wait this long for the cluster to abort it before the
/// next owner restores them (Kafka Streams' default under exactly-once).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a partition's committed offset to become stable or its changelog to
/// be read to the end.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a session spends per turn applying changelog records to standby copies.
const STANDBY_BUDGET: Duration = Duration::from_millis(20);

/// The changelog topic of a stateful deployment run by the workers of `group`.
pub fn changelog_topic(group: &str, deployment: &str) -> String {
    format!("{group}.{deployment}.state")
}

/// The topics a stateful deployment writes, by slot (see [`Layout`]).
pub fn sink_topics(spec: &sluice_pipeline::TransformSpec) -> Vec<String> {
    let mut sinks = spec.outputs.clone();
    sinks.push(spec.dead_letter_topic());
    sinks.extend(spec.late_output.clone());
    sinks
}

/// One held input partition.
struct Part {
    run: Detached,
    /// The consumer's assignment count of the partition when it was restored.
    assigned: u64,
    /// The input offset its state covers (-1: none committed yet).
    committed: i64,
}

/// The plugin version a session runs.
struct Running {
    version: u32,
    instance: Arc<InstanceConfig>,
    compiled: Arc<Compiled>,
}

/// One consumer and one transactional producer for a stateful deployment, until an error
/// or `stop`.
pub(crate) fn session(
    settings: &EngineSettings,
    job: &Job<'_>,
    stop: &AtomicBool,
) -> Result<(), EngineError> {
    let d = job.spec;
    let consumer = consumer(settings, job)?;
    let producer = producer(settings, job, TRANSACTION_TIMEOUT)?;
    let changelog = changelog_topic(&settings.group, job.name);
    let sinks = sink_topics(d);
    let layout = layout(&consumer, d)?;
    // A disk store's files from an earlier session are stale: its partitions restore.
    let dir = settings.state_dir.join(job.name);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(EngineError::Plugin(format!(
                "state directory {}: {e}",
                dir.display()
            )));
        }
        _ => {}
    }
    let t = Transform::detached(job.name, d.clone(), job.shared.logs.clone(), dir);
    let mut parts: BTreeMap<i32, Part> = BTreeMap::new();
    let mut standbys = Standbys::new(changelog.clone());
    let mut seen_gen = u64::MAX;
    let mut running: Option<Running> = None;
    while !stop.load(Ordering::Acquire) {
        // A new version takes over between two transactions; it inherits the state (the
        // partitions restore it from the changelog).
        if let Some(target) = job.shared.new_target(&mut seen_gen) {
            parts.clear();
            running = Some(Running {
                version: target.version,
                instance: job.instance_config(target.version),
                compiled: target.compiled,
            });
            job.shared
                .active_version
                .store(target.version, Ordering::Release);
        }
        let Some(run) = running.as_ref() else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let mut batch = gather(&consumer, settings.commit_interval, settings.max_batch)?;
        let mut held = held(&consumer, &d.input)?;
        batch.retain(|m| held.iter().any(|p| p.partition == m.partition));
        // State of partitions given away (or given away and back) is stale.
        let ctx = consumer.context();
        parts.retain(|p, part| {
            held.iter().any(|h| h.partition == *p) && ctx.assignment_of(*p) == part.assigned
        });
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let missing: Vec<i32> = held
            .iter()
            .map(|h| h.partition)
            .filter(|p| !parts.contains_key(p))
            .collect();
        if !missing.is_empty() {
            parts.extend(restore(
                settings,
                job,
                &consumer,
                (&t, run, &layout),
                &missing,
                &mut standbys,
                stop,
            )?);
        }
        if d.standby_replicas > 0 {
            let held: Vec<i32> = held.iter().map(|h| h.partition).collect();
            follow_standbys(settings, job, &t, &held, &mut standbys)?;
        }
        // A partition that has consumed nothing since it came here stands at its committed
        // offset (the consumer knows no position for it yet).
        for h in &mut held {
            if let Some(part) = parts.get(&h.partition)
                && h.position < 0
                && part.committed >= 0
            {
                h.position = part.committed;
                h.lag = ctx
                    .high_of(h.partition)
                    .map_or(-1, |high| (high - h.position).max(-1));
            }
        }
        job.shared.hold(held.clone());
        job.shared.set_states(
            parts
                .iter()
                .map(|(p, part)| (*p, part.run.state().clone()))
                .collect(),
        );
        let mut by_partition: BTreeMap<i32, Vec<StoredRecord>> = BTreeMap::new();
        for m in batch {
            by_partition.entry(m.partition).or_default().push(stored(m));
        }
        let mut reads: Vec<(i32, Read)> = Vec::new();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, part) in parts.iter_mut() {
            let records = by_partition.remove(p).unwrap_or_default();
            let read = match (records.first(), records.last()) {
                (Some(first), Some(last)) => {
                    let after = last.offset + 1;
                    next.insert(*p, after);
                    job.shared.ran(*p, run.version, first.offset);
                    part.run.process(&records, after as u64)
                }
                _ => {
                    // Caught up: the position is known and nothing committed lies past it
                    // (as of the consumer's last statistics).
                    let h = held.iter().find(|h| h.partition == *p);
                    let caught_up = h.is_some_and(|h| h.position >= 0 && h.lag == 0);
                    let position = h.map_or(0, |h| h.position.max(0));
                    part.run.tick(position as u64, caught_up)
                }
            };
            match read {
                Ok(r) => reads.push((*p, r)),
                Err(DetachedError::Interrupted) if stop.load(Ordering::Acquire) => return Ok(()),
                Err(e) => return Err(EngineError::Plugin(e.to_string())),
            }
        }
        if next.is_empty() && reads.iter().all(|(_, r)| r.is_empty()) {
            producer.poll(Duration::ZERO);
            continue;
        }
        // Every transaction carries the offsets of the partitions it writes for, also a
        // turn without input (timers fired): a worker that lost the partition in a
        // rebalance meanwhile is fenced by the group's generation (KIP-447).
        for (p, _) in &reads {
            if let Some(h) = held.iter().find(|h| h.partition == *p && h.position >= 0) {
                next.entry(*p).or_insert(h.position);
            }
        }
        producer.begin_transaction()?;
        let result = send_reads(&producer, &sinks, &changelog, &reads)
            .and_then(|()| commit(&producer, &consumer, &d.input, &next));
        if let Err(e) = result {
            let _ = abort(&producer);
            return Err(e);
        }
        committed(&mut parts, &reads, &next, &held);
        count(job, &t, &reads);
    }
    Ok(())
}

/// After a commit: each partition read stands at its new position (status, and a disk
/// store takes the read's state changes).
fn committed(
    parts: &mut BTreeMap<i32, Part>,
    reads: &[(i32, Read)],
    next: &BTreeMap<i32, i64>,
    held: &[PartitionReport],
) {
    for (p, read) in reads {
        let position = next
            .get(p)
            .copied()
            .or_else(|| held.iter().find(|h| h.partition == *p).map(|h| h.position));
        if let Some(part) = parts.get_mut(p)
            && let Some(position) = position.filter(|o| *o >= 0)
        {
            part.committed = position;
            part.run.committed(position as u64, Some(read));
        }
    }
}

/// Keeps this worker's standby copies: the partitions others hold that it follows, given
/// the group's holders, fed what their changelog has for a bounded time.
fn follow_standbys(
    settings: &EngineSettings,
    job: &Job<'_>,
    t: &Transform,
    held: &[i32],
    standbys: &mut Standbys,
) -> Result<(), EngineError> {
    let want: Vec<i32> = job
        .shared
        .peers()
        .standby_for(&settings.id, job.spec.standby_replicas)
        .into_iter()
        .filter(|p| !held.contains(p))
        .collect();
    standbys.follow(settings, t, &want, STANDBY_BUDGET)?;
    job.shared.set_standbys(standbys.reports());
    Ok(())
}

/// Sends what the reads emit (to the sinks by slot) and their changelog records (to the
/// changelog partition of their input partition) into the open transaction.
fn send_reads(
    producer: &BaseProducer,
    sinks: &[String],
    changelog: &str,
    reads: &[(i32, Read)],
) -> Result<(), EngineError> {
    for (p, read) in reads {
        for e in &read.records {
            let Some(topic) = sinks.get(e.slot) else {
                continue;
            };
            send(producer, record(topic, e.partition as i32, &e.record))?;
        }
        for (k, v) in &read.changelog {
            let mut rec = BaseRecord::to(changelog).partition(*p).key(k.as_slice());
            if let Some(v) = v {
                rec = rec.payload(v.as_slice());
            }
            send(producer, rec)?;
        }
    }
    Ok(())
}

/// Adds a committed transaction's reads to the deployment's counters.
fn count(job: &Job<'_>, t: &Transform, reads: &[(i32, Read)]) {
    let s = job.shared;
    for (_, read) in reads {
        let [records_in, records_out, rejected, failed] = read.counts;
        s.records_in.fetch_add(records_in, Ordering::Relaxed);
        s.records_out.fetch_add(records_out, Ordering::Relaxed);
        s.rejected.fetch_add(rejected, Ordering::Relaxed);
        s.failed.fetch_add(failed, Ordering::Relaxed);
        s.late.fetch_add(read.late, Ordering::Relaxed);
    }
    let c = &t.counters;
    s.fuel
        .fetch_add(c.fuel.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    s.traps
        .fetch_add(c.traps.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    if let Some(e) = t.last_error() {
        s.set_error(e);
    }
    s.transactions.fetch_add(1, Ordering::Relaxed);
}

/// The partitions of each sink topic, from the cluster's metadata.
fn layout(
    consumer: &BaseConsumer<LagContext>,
    spec: &sluice_pipeline::TransformSpec,
) -> Result<Layout, EngineError> {
    let partitions = |topic: &str| -> Result<u32, EngineError> {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len() as u32);
        if n == 0 {
            return Err(EngineError::Plugin(format!(
                "topic {topic} does not exist on the cluster"
            )));
        }
        Ok(n)
    };
    Ok(Layout {
        outputs: spec
            .outputs
            .iter()
            .map(|o| partitions(o))
            .collect::<Result<_, _>>()?,
        dead_letter: partitions(&spec.dead_letter_topic())?,
        late: match &spec.late_output {
            Some(l) => Some(partitions(l)?),
            None => None,
        },
    })
}

/// Restores input partitions `ps`' state from the changelog (see the module's doc), all
/// at once: one stable offset fetch, one reader over their changelog partitions — from
/// where a standby copy stands, for a partition this worker followed.
fn restore(
    settings: &EngineSettings,
    job: &Job<'_>,
    consumer: &BaseConsumer<LagContext>,
    (t, run, layout): (&Arc<Transform>, &Running, &Layout),
    ps: &[i32],
    standbys: &mut Standbys,
    stop: &AtomicBool,
) -> Result<BTreeMap<i32, Part>, EngineError> {
    let d = job.spec;
    let started = Instant::now();
    let ctx = consumer.context();
    // A transaction still open on the partitions' offsets ends first (KIP-447).
    let mut input = TopicPartitionList::new();
    for p in ps {
        input.add_partition(&d.input, *p);
    }
    let committed = loop {
        match consumer.committed_offsets(input.clone(), Duration::from_secs(2)) {
            Ok(list) => break list,
            Err(e) if started.elapsed() < RESTORE_TIMEOUT && !stop.load(Ordering::Acquire) => {
                tracing::debug!(deployment = %job.name, partitions = ?ps, error = %e,
                    "waiting for the partitions' committed offsets to be stable");
            }
            Err(e) => return Err(e.into()),
        }
    };
    let changelog = changelog_topic(&settings.group, job.name);
    // A partition added to the input (CreatePartitions) gets its changelog partition.
    let highest = ps.iter().copied().max().unwrap_or(0);
    crate::control::grow_topic(
        &settings.bootstrap_servers,
        &settings.id,
        &changelog,
        highest as usize + 1,
    )
    .map_err(|e| EngineError::Plugin(e.to_string()))?;
    let mut parts = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in ps {
        let executor = job
            .runtime
            .executor(run.compiled.clone(), run.instance.clone(), p as u32)
            .map_err(|e| EngineError::Plugin(e.to_string()))?;
        let offset = committed
            .find_partition(&d.input, p)
            .and_then(|e| e.offset().to_raw())
            .filter(|o| *o >= 0)
            .unwrap_or(-1);
        let warm = standbys.take(p);
        let from = match &warm {
            Some(w) if w.next >= 0 => Offset::Offset(w.next),
            _ => Offset::Beginning,
        };
        parts.insert(
            p,
            Part {
                run: Detached::new(
                    t.clone(),
                    &d.input,
                    (p as u32, highest as u32 + 1),
                    executor,
                    run.version,
                    layout.clone(),
                    warm,
                )
                .map_err(|e| EngineError::Plugin(format!("partition {p}: state store: {e}")))?,
                assigned: ctx.assignment_of(p),
                committed: offset,
            },
        );
        tpl.add_partition_offset(&changelog, p, from)?;
    }
    let reader: BaseConsumer = client_config(&settings.bootstrap_servers, &settings.id)
        .set("group.id", format!("{}.restore", settings.group))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // The end is known from the first empty fetch: do not hold it open on the broker.
        .set("fetch.wait.max.ms", "10")
        .set("isolation.level", "read_committed")
        .create()?;
    reader.assign(&tpl)?;
    let mut open: Vec<i32> = ps.to_vec();
    while !open.is_empty() {
        if stop.load(Ordering::Acquire) {
            return Err(EngineError::Plugin("stopped while restoring".into()));
        }
        if started.elapsed() > RESTORE_TIMEOUT {
            return Err(EngineError::Plugin(format!(
                "restoring partitions {open:?} from {changelog}: not at their end after {} s",
                RESTORE_TIMEOUT.as_secs()
            )));
        }
        match reader.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                if let (Some(k), Some(part)) = (m.key(), parts.get_mut(&m.partition())) {
                    part.run
                        .restore_change(k, m.payload())
                        .map_err(|e| EngineError::Plugin(format!("restoring state: {e}")))?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => open.retain(|o| *o != p),
            Some(Err(e)) => return Err(e.into()),
        }
    }
    for (p, part) in &mut parts {
        let info = part
            .run
            .restored()
            .map_err(|e| EngineError::Plugin(format!("restoring state: {e}")))?;
        if part.committed >= 0 {
            part.run.committed(part.committed as u64, None);
        }
        tracing::info!(deployment = %job.name, partition = *p, keys = info.keys, timers = info.timers,
            replayed = info.replayed, took_ms = started.elapsed().as_millis() as u64, "state restored");
    }
    Ok(parts)
}

/// A consumed record as the operator takes it.
fn stored(m: In) -> StoredRecord {
    StoredRecord {
        offset: m.offset,
        timestamp: m.timestamp,
        key: m.key.map(Into::into),
        value: m.value.map(Into::into),
        headers: m
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.map(Into::into)))
            .collect(),
    }
}

/// A record to send to `topic`/`partition`.
fn record<'a>(topic: &'a str, partition: i32, r: &'a StoredRecord) -> BaseRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let mut rec = BaseRecord::to(topic)
        .partition(partition)
        .timestamp(r.timestamp)
        .headers(headers);
    if let Some(k) = r.key.as_deref() {
        rec = rec.key(k);
    }
    if let Some(v) = r.value.as_deref() {
        rec = rec.payload(v);
    }
    rec
}
