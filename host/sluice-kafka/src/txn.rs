//! The transaction coordinator (KIP-98): transactional ids with their producer id and
//! epoch (a new `InitProducerId` bumps the epoch and fences the old producer), the
//! partitions and consumer groups a transaction touches, offsets committed inside it, and
//! the end — commit or abort markers written to every partition, then the group offsets.
//!
//! State is kept durably in the compacted topic `__sluice_transactions` (one record per
//! transactional id, the latest wins), written before a request is answered. A transaction
//! is `Ongoing` from its first partition until `EndTxn`; `PrepareCommit`/`PrepareAbort`
//! are written before the markers, `CompleteCommit`/`CompleteAbort` after them, so a
//! restart finishes a prepared end and aborts what was ongoing. Transactions that outlive
//! their timeout are aborted (and their producer fenced) by [`Transactions::expire`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sluice_log::batch::{self, NewRecord};
use sluice_log::{Log, LogError, Partition, TopicConfig, now_ms};

use crate::code;

pub const TOPIC: &str = "__sluice_transactions";
const OWNER: &str = "the Kafka transaction coordinator";
/// Longest transaction timeout a producer may ask for (Kafka's
/// `transaction.max.timeout.ms` default).
pub const MAX_TIMEOUT_MS: i32 = 900_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

/// Offsets a transaction commits for a group: (topic, partition, offset, metadata).
pub type GroupOffsets = Vec<(String, i32, i64, Option<String>)>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Txn {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: State,
    pub partitions: BTreeSet<(String, i32)>,
    /// Group → offsets committed in this transaction (applied when it commits).
    pub offsets: BTreeMap<String, GroupOffsets>,
    /// Group → leader epochs of those offsets.
    #[serde(default)]
    pub epochs: BTreeMap<String, Vec<(String, i32, i32)>>,
    /// When the transaction began (ms).
    pub started: i64,
}

/// How a producer's id and epoch compare with the coordinator's.
fn check(t: &Txn, producer_id: i64, epoch: i16) -> Result<(), i16> {
    if producer_id != t.producer_id {
        return Err(code::INVALID_PRODUCER_ID_MAPPING);
    }
    // An older epoch: fenced by a newer producer with the same transactional id
    // (INVALID_PRODUCER_EPOCH, which every client version treats as fenced).
    if epoch != t.epoch {
        return Err(code::INVALID_PRODUCER_EPOCH);
    }
    Ok(())
}

pub struct Transactions {
    log: Arc<Log>,
    /// The state topic's partition, created by the first transactional producer.
    state: Mutex<Option<Arc<Partition>>>,
    txns: Mutex<HashMap<String, Arc<Mutex<Txn>>>>,
    /// Producer id → transactional id (for Produce checks).
    by_pid: Mutex<HashMap<i64, String>>,
}

impl std::fmt::Debug for Transactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactions").finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stores a committed transaction's offsets in a consumer group (before the end is
/// recorded as complete, so a crash in between applies them again, never loses them).
pub type Apply<'a> = &'a dyn Fn(&str, &GroupOffsets, &[(String, i32, i32)]);

impl Transactions {
    /// Opens (or creates) the state topic and reads every transaction back. Ends left
    /// half-done by a crash are finished with `finish` (write markers, apply offsets).
    pub fn open(log: Arc<Log>) -> Result<Transactions, LogError> {
        // The server's, whether or not it exists yet (it is created by the first
        // transaction): clients may not write it, and read it only with the state permission.
        log.set_owner(TOPIC, Some(OWNER));
        let state = match log.topic(TOPIC) {
            Ok(t) => t.partitions.first().cloned(),
            Err(_) => None,
        };
        let mut latest: HashMap<String, Option<Txn>> = HashMap::new();
        let mut off = state.as_ref().map_or(0, |s| s.start_offset());
        while let Some(state) = &state {
            let (recs, next, _) = state.read_records(off, 10_000)?;
            if recs.is_empty() {
                break;
            }
            for r in recs {
                let Some(k) = r.key.and_then(|k| String::from_utf8(k.to_vec()).ok()) else {
                    continue;
                };
                let v = r.value.and_then(|v| serde_json::from_slice::<Txn>(&v).ok());
                latest.insert(k, v);
            }
            off = next;
        }
        let mut txns = HashMap::new();
        let mut by_pid = HashMap::new();
        for (id, t) in latest {
            let Some(t) = t else { continue };
            by_pid.insert(t.producer_id, id.clone());
            txns.insert(id, Arc::new(Mutex::new(t)));
        }
        Ok(Transactions {
            log,
            state: Mutex::new(state),
            txns: Mutex::new(txns),
            by_pid: Mutex::new(by_pid),
        })
    }

    /// The state topic's partition, created on first use.
    fn state_partition(&self) -> Result<Arc<Partition>, LogError> {
        let mut state = lock(&self.state);
        if let Some(p) = state.as_ref() {
            return Ok(p.clone());
        }
        let topic = match self.log.create_topic(
            TOPIC,
            TopicConfig {
                partitions: 1,
                cleanup: sluice_log::Cleanup::Compact,
                ..TopicConfig::default()
            },
        ) {
            Err(LogError::TopicExists(_)) => self.log.topic(TOPIC)?,
            other => other?,
        };
        self.log.set_owner(TOPIC, Some(OWNER));
        let p = topic
            .partitions
            .first()
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(TOPIC.into()))?;
        *state = Some(p.clone());
        Ok(p)
    }

    fn persist(&self, id: &str, t: &Txn) -> Result<(), LogError> {
        let rec = NewRecord {
            key: Some(bytes::Bytes::copy_from_slice(id.as_bytes())),
            value: Some(serde_json::to_vec(t).unwrap_or_default().into()),
            headers: Vec::new(),
            timestamp: None,
        };
        self.state_partition()?
            .append(batch::build([&rec], now_ms()))?;
        Ok(())
    }

    fn get(&self, id: &str) -> Option<Arc<Mutex<Txn>>> {
        lock(&self.txns).get(id).cloned()
    }

    /// Writes the markers of an end that was prepared, stores a commit's group offsets,
    /// then marks it complete.
    fn complete(&self, id: &str, t: &mut Txn, apply: Apply<'_>) -> Result<(), LogError> {
        let commit = match t.state {
            State::PrepareCommit => true,
            State::PrepareAbort => false,
            _ => return Ok(()),
        };
        let now = now_ms();
        for (topic, p) in &t.partitions {
            // A partition deleted meanwhile has nothing left to mark.
            let Ok(part) = self
                .log
                .topic(topic)
                .and_then(|tp| tp.partition(i64::from(*p)).cloned())
            else {
                continue;
            };
            part.append(batch::control_batch(t.producer_id, t.epoch, commit, now))?;
        }
        if commit {
            for (group, offsets) in &t.offsets {
                if !offsets.is_empty() {
                    let epochs = t.epochs.get(group).map_or(&[][..], Vec::as_slice);
                    apply(group, offsets, epochs);
                }
            }
        }
        t.offsets.clear();
        t.epochs.clear();
        t.partitions.clear();
        t.state = if commit {
            State::CompleteCommit
        } else {
            State::CompleteAbort
        };
        self.persist(id, t)
    }

    /// Ends an ongoing transaction (prepare, markers, complete).
    fn end(&self, id: &str, t: &mut Txn, commit: bool, apply: Apply<'_>) -> Result<(), LogError> {
        t.state = if commit {
            State::PrepareCommit
        } else {
            State::PrepareAbort
        };
        self.persist(id, t)?;
        self.complete(id, t, apply)
    }

    /// After a restart: finishes prepared ends and aborts what was ongoing (its producer
    /// is fenced: it must re-initialise).
    pub fn recover(&self, apply: Apply<'_>) -> Result<(), LogError> {
        let all: Vec<(String, Arc<Mutex<Txn>>)> = lock(&self.txns)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, t) in all {
            let mut t = lock(&t);
            match t.state {
                State::PrepareCommit | State::PrepareAbort => self.complete(&id, &mut t, apply)?,
                State::Ongoing => {
                    t.epoch = t.epoch.saturating_add(1);
                    self.end(&id, &mut t, false, apply)?;
                    tracing::info!(
                        transactional_id = id,
                        "aborted a transaction left open by a restart"
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// InitProducerId with a transactional id: the id's producer id with a new epoch
    /// (fencing any older producer), its open transaction aborted first.
    pub fn init(
        &self,
        id: &str,
        timeout_ms: i32,
        next_pid: impl Fn() -> i64,
        apply: Apply<'_>,
    ) -> Result<(i64, i16), i16> {
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(code::INVALID_TRANSACTION_TIMEOUT);
        }
        let entry = {
            let mut txns = lock(&self.txns);
            match txns.get(id) {
                Some(t) => t.clone(),
                None => {
                    let t = Arc::new(Mutex::new(Txn {
                        producer_id: next_pid(),
                        epoch: -1,
                        timeout_ms,
                        state: State::Empty,
                        partitions: BTreeSet::new(),
                        offsets: BTreeMap::new(),
                        epochs: BTreeMap::new(),
                        started: 0,
                    }));
                    txns.insert(id.to_string(), t.clone());
                    t
                }
            }
        };
        let mut t = lock(&entry);
        match t.state {
            State::Ongoing => {
                // The new producer takes over: what the old one left open is aborted.
                self.end(id, &mut t, false, apply).map_err(internal)?;
            }
            State::PrepareCommit | State::PrepareAbort => {
                self.complete(id, &mut t, apply).map_err(internal)?;
            }
            _ => {}
        }
        if t.epoch == i16::MAX - 1 {
            // Epochs are exhausted: a new producer id starts again at 0.
            lock(&self.by_pid).remove(&t.producer_id);
            t.producer_id = next_pid();
            t.epoch = 0;
        } else {
            t.epoch += 1;
        }
        t.timeout_ms = timeout_ms;
        t.state = State::Empty;
        self.persist(id, &t).map_err(internal)?;
        lock(&self.by_pid).insert(t.producer_id, id.to_string());
        Ok((t.producer_id, t.epoch))
    }

    /// The transaction of `id` checked against the producer's id and epoch, in a state that
    /// may take more partitions or offsets.
    fn open_for_adding(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<Arc<Mutex<Txn>>, i16> {
        let entry = self.get(id).ok_or(code::INVALID_PRODUCER_ID_MAPPING)?;
        {
            let t = lock(&entry);
            check(&t, producer_id, epoch)?;
            if matches!(t.state, State::PrepareCommit | State::PrepareAbort) {
                return Err(code::CONCURRENT_TRANSACTIONS);
            }
        }
        Ok(entry)
    }

    /// AddPartitionsToTxn: every partition must exist.
    pub fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<(String, i32, i16)>, i16> {
        let entry = self.open_for_adding(id, producer_id, epoch)?;
        let mut t = lock(&entry);
        let exists = |topic: &str, p: i32| {
            self.log
                .topic(topic)
                .is_ok_and(|tp| tp.partition(i64::from(p)).is_ok())
        };
        let missing = partitions.iter().any(|(topic, p)| !exists(topic, *p));
        if missing {
            // All or nothing, as Kafka answers: the missing ones fail, the rest are aborted.
            return Ok(partitions
                .iter()
                .map(|(topic, p)| {
                    let e = if exists(topic, *p) {
                        code::OPERATION_NOT_ATTEMPTED
                    } else {
                        code::UNKNOWN_TOPIC_OR_PARTITION
                    };
                    (topic.clone(), *p, e)
                })
                .collect());
        }
        let before = t.partitions.len();
        t.partitions.extend(partitions.iter().cloned());
        let mut changed = t.partitions.len() != before;
        if t.state != State::Ongoing {
            t.state = State::Ongoing;
            t.started = now_ms();
            changed = true;
        }
        if changed {
            self.persist(id, &t).map_err(internal)?;
        }
        Ok(partitions
            .iter()
            .map(|(topic, p)| (topic.clone(), *p, code::NONE))
            .collect())
    }

    /// AddOffsetsToTxn: the group joins the transaction (its offsets come with
    /// TxnOffsetCommit).
    pub fn add_offsets(&self, id: &str, producer_id: i64, epoch: i16, group: &str) -> i16 {
        let entry = match self.open_for_adding(id, producer_id, epoch) {
            Ok(e) => e,
            Err(e) => return e,
        };
        let mut t = lock(&entry);
        t.offsets.entry(group.to_string()).or_default();
        if t.state != State::Ongoing {
            t.state = State::Ongoing;
            t.started = now_ms();
        }
        match self.persist(id, &t) {
            Ok(()) => code::NONE,
            Err(e) => internal(e),
        }
    }

    /// TxnOffsetCommit: offsets held with the transaction until it ends.
    pub fn commit_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: GroupOffsets,
        epochs: Vec<(String, i32, i32)>,
    ) -> i16 {
        let entry = match self.open_for_adding(id, producer_id, epoch) {
            Ok(e) => e,
            Err(e) => return e,
        };
        let mut t = lock(&entry);
        let Some(pending) = t.offsets.get_mut(group) else {
            // AddOffsetsToTxn must come first.
            return code::INVALID_TXN_STATE;
        };
        for o in offsets {
            pending.retain(|(tp, p, _, _)| !(*tp == o.0 && *p == o.1));
            pending.push(o);
        }
        let known = t.epochs.entry(group.to_string()).or_default();
        for e in epochs {
            known.retain(|(tp, p, _)| !(*tp == e.0 && *p == e.1));
            known.push(e);
        }
        match self.persist(id, &t) {
            Ok(()) => code::NONE,
            Err(e) => internal(e),
        }
    }

    /// EndTxn: commit or abort. A retry of an end already done answers as it did.
    pub fn end_txn(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        apply: Apply<'_>,
    ) -> i16 {
        let Some(entry) = self.get(id) else {
            return code::INVALID_PRODUCER_ID_MAPPING;
        };
        let mut t = lock(&entry);
        if let Err(e) = check(&t, producer_id, epoch) {
            return e;
        }
        let done = match (t.state, commit) {
            (State::Ongoing, _) => self.end(id, &mut t, commit, apply),
            // A retry of an end already done, or nothing was added: nothing to do.
            (State::CompleteCommit, true) | (State::CompleteAbort, false) | (State::Empty, _) => {
                Ok(())
            }
            (State::PrepareCommit, true) | (State::PrepareAbort, false) => {
                self.complete(id, &mut t, apply)
            }
            _ => return code::INVALID_TXN_STATE,
        };
        match done {
            Ok(()) => code::NONE,
            Err(e) => internal(e),
        }
    }

    /// Whether a transactional batch of `producer_id` at `epoch` may go to the partition:
    /// the producer is current and added the partition to its ongoing transaction.
    pub fn check_produce(&self, producer_id: i64, epoch: i16, topic: &str, partition: i32) -> i16 {
        let Some(id) = lock(&self.by_pid).get(&producer_id).cloned() else {
            return code::INVALID_PRODUCER_ID_MAPPING;
        };
        let Some(entry) = self.get(&id) else {
            return code::INVALID_PRODUCER_ID_MAPPING;
        };
        let t = lock(&entry);
        if epoch != t.epoch {
            return code::INVALID_PRODUCER_EPOCH;
        }
        if t.state != State::Ongoing || !t.partitions.contains(&(topic.to_string(), partition)) {
            return code::INVALID_TXN_STATE;
        }
        code::NONE
    }

    /// Whether an open transaction holds an offset of the group's partition (for
    /// `OffsetFetch.require_stable`, KIP-447).
    pub fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        let all: Vec<Arc<Mutex<Txn>>> = lock(&self.txns).values().cloned().collect();
        all.iter().any(|t| {
            let t = lock(t);
            t.state == State::Ongoing
                && t.offsets
                    .get(group)
                    .is_some_and(|o| o.iter().any(|(tp, p, _, _)| tp == topic && *p == partition))
        })
    }

    /// Aborts transactions open longer than their timeout and fences their producers
    /// (the epoch moves on). Returns how many it aborted.
    pub fn expire(&self, now: i64, apply: Apply<'_>) -> usize {
        let all: Vec<(String, Arc<Mutex<Txn>>)> = lock(&self.txns)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut n = 0;
        for (id, entry) in all {
            let mut t = lock(&entry);
            if t.state == State::Ongoing && now - t.started > i64::from(t.timeout_ms) {
                t.epoch = t.epoch.saturating_add(1);
                match self.end(&id, &mut t, false, apply) {
                    Ok(_) => {
                        n += 1;
                        tracing::info!(
                            transactional_id = id,
                            "transaction timed out: aborted, producer fenced"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(transactional_id = id, error = %e, "aborting a timed-out transaction failed")
                    }
                }
            }
        }
        n
    }
}

fn internal(e: LogError) -> i16 {
    tracing::error!(error = %e, "transaction coordinator: log write failed");
    code::COORDINATOR_NOT_AVAILABLE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn log(dir: &std::path::Path) -> Arc<Log> {
        let log = Log::open(dir).unwrap();
        if log.topic("t").is_err() {
            log.create_topic(
                "t",
                TopicConfig {
                    partitions: 2,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
        }
        log
    }

    fn no_apply(_: &str, _: &GroupOffsets, _: &[(String, i32, i32)]) {}

    /// A transactional data batch of `producer_id` at `epoch`, appended to t/`p`.
    fn produce(log: &Log, producer_id: i64, epoch: i16, p: u32) {
        let mut b = batch::build(
            [&NewRecord {
                value: Some(bytes::Bytes::from_static(b"v")),
                ..NewRecord::default()
            }],
            1000,
        );
        b[21..23].copy_from_slice(&0x10i16.to_be_bytes());
        b[43..51].copy_from_slice(&producer_id.to_be_bytes());
        b[51..53].copy_from_slice(&epoch.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        log.topic("t").unwrap().partitions[p as usize]
            .append(b)
            .unwrap();
    }

    #[test]
    fn a_transaction_commits_with_markers_and_its_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        let txns = Transactions::open(log.clone()).unwrap();
        let next = std::sync::atomic::AtomicI64::new(100);
        let pid = || next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (p, e) = txns.init("tx", 60_000, pid, &no_apply).unwrap();
        assert_eq!((p, e), (100, 0));
        assert_eq!(
            txns.check_produce(p, e, "t", 0),
            code::INVALID_TXN_STATE,
            "not added yet"
        );
        let added = txns
            .add_partitions("tx", p, e, &[("t".into(), 0), ("nope".into(), 0)])
            .unwrap();
        assert_eq!(
            added.iter().map(|a| a.2).collect::<Vec<_>>(),
            [
                code::OPERATION_NOT_ATTEMPTED,
                code::UNKNOWN_TOPIC_OR_PARTITION
            ]
        );
        txns.add_partitions("tx", p, e, &[("t".into(), 0)]).unwrap();
        assert_eq!(txns.check_produce(p, e, "t", 0), code::NONE);
        produce(&log, p, e, 0);
        let part = log.topic("t").unwrap().partitions[0].clone();
        assert_eq!(part.last_stable_offset(), 0, "open: readers wait");
        assert_eq!(txns.add_offsets("tx", p, e, "g"), code::NONE);
        let offsets = vec![("t".to_string(), 0, 1, None)];
        assert_eq!(
            txns.commit_offsets("tx", p, e, "g", offsets, vec![("t".into(), 0, 0)]),
            code::NONE
        );
        assert!(txns.has_pending_offset("g", "t", 0));
        let applied = RefCell::new(Vec::new());
        let apply = |g: &str, o: &GroupOffsets, _: &[(String, i32, i32)]| {
            applied.borrow_mut().push((g.to_string(), o.clone()));
        };
        assert_eq!(txns.end_txn("tx", p, e, true, &apply), code::NONE);
        assert_eq!(applied.borrow().len(), 1, "the offsets reached the group");
        assert_eq!(part.last_stable_offset(), part.high_watermark());
        assert_eq!(part.high_watermark(), 2, "one record and the commit marker");
        assert!(!txns.has_pending_offset("g", "t", 0));
        // A retried EndTxn answers as before; the opposite end is refused.
        assert_eq!(txns.end_txn("tx", p, e, true, &apply), code::NONE);
        assert_eq!(
            txns.end_txn("tx", p, e, false, &apply),
            code::INVALID_TXN_STATE
        );
        assert_eq!(applied.borrow().len(), 1, "applied once");
    }

    #[test]
    fn a_new_producer_fences_the_old_one_and_aborts_what_it_left_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        let txns = Transactions::open(log.clone()).unwrap();
        let pid = || 7;
        let (p, old) = txns.init("tx", 60_000, pid, &no_apply).unwrap();
        txns.add_partitions("tx", p, old, &[("t".into(), 1)])
            .unwrap();
        produce(&log, p, old, 1);
        let (p2, new) = txns.init("tx", 60_000, pid, &no_apply).unwrap();
        assert_eq!((p2, new), (p, old + 1));
        let part = log.topic("t").unwrap().partitions[1].clone();
        assert_eq!(part.last_stable_offset(), part.high_watermark(), "aborted");
        assert!(part.aborted_between(0, 1).len() == 1);
        assert_eq!(
            txns.check_produce(p, old, "t", 1),
            code::INVALID_PRODUCER_EPOCH
        );
        assert_eq!(
            txns.add_partitions("tx", p, old, &[("t".into(), 1)]),
            Err(code::INVALID_PRODUCER_EPOCH)
        );
        assert_eq!(
            txns.end_txn("tx", p, old, true, &no_apply),
            code::INVALID_PRODUCER_EPOCH
        );
        assert_eq!(
            txns.init("tx", 0, pid, &no_apply),
            Err(code::INVALID_TRANSACTION_TIMEOUT)
        );
    }

    #[test]
    fn timeouts_and_restarts_abort_open_transactions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = log(dir.path());
            let txns = Transactions::open(log.clone()).unwrap();
            let (p, e) = txns.init("slow", 1000, || 1, &no_apply).unwrap();
            txns.add_partitions("slow", p, e, &[("t".into(), 0)])
                .unwrap();
            produce(&log, p, e, 0);
            assert_eq!(txns.expire(now_ms(), &no_apply), 0, "not yet");
            assert_eq!(txns.expire(now_ms() + 5000, &no_apply), 1);
            assert_eq!(
                txns.check_produce(p, e, "t", 0),
                code::INVALID_PRODUCER_EPOCH,
                "fenced"
            );
            let (p, e) = txns.init("open", 60_000, || 2, &no_apply).unwrap();
            txns.add_partitions("open", p, e, &[("t".into(), 1)])
                .unwrap();
            produce(&log, p, e, 1);
            log.close();
        }
        // The server restarts with "open" still open: it is aborted.
        let log = log(dir.path());
        let txns = Transactions::open(log.clone()).unwrap();
        txns.recover(&no_apply).unwrap();
        let part = log.topic("t").unwrap().partitions[1].clone();
        assert_eq!(part.last_stable_offset(), part.high_watermark());
        assert_eq!(part.aborted_between(0, 10).len(), 1);
        // The producer id survives: the next init of "open" keeps it, one epoch on.
        let (p, e) = txns.init("open", 60_000, || 99, &no_apply).unwrap();
        assert_eq!((p, e), (2, 2));
    }
}
