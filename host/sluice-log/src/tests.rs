use super::batch::{self, NewRecord};
use super::*;
use bytes::Bytes;
use std::io::Write;

fn recs(n: usize, tag: &str) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord {
            key: None,
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: vec![],
            timestamp: None,
        })
        .collect()
}

fn values(p: &Partition, from: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut off = from;
    loop {
        let r = p.read(off, 4096).unwrap();
        if r.data.is_empty() {
            return out;
        }
        for (_, b) in batch::split(r.data).unwrap() {
            for rec in batch::decode(&b).unwrap() {
                if rec.offset as u64 >= off {
                    out.push(String::from_utf8(rec.value.unwrap().to_vec()).unwrap());
                }
            }
        }
        off = r.next_offset;
    }
}

fn small_segments() -> TopicConfig {
    TopicConfig {
        segment_bytes: 2048,
        ..TopicConfig::default()
    }
}

#[test]
fn murmur2_matches_kafka() {
    // Vectors from Kafka's UtilsTest.testMurmur2.
    assert_eq!(murmur2(b"21"), -973932308);
    assert_eq!(murmur2(b"foobar"), -790332482);
    assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
    assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
    assert_eq!(
        murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
        -58897971
    );
    assert_eq!(murmur2(b"abc"), 479470107);
}

#[test]
fn topic_names_follow_kafka_rules() {
    for bad in ["", ".", "..", "../x", "a/b", "a b", "é", &"x".repeat(250)] {
        assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
    }
    for good in ["a", "user_activity.events-1", &"x".repeat(249)] {
        validate_topic_name(good).unwrap();
    }
}

#[test]
fn append_read_roll_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        let t = log.create_topic("t", small_segments()).unwrap();
        let p = &t.partitions[0];
        for i in 0..50 {
            let a = p
                .append(batch::build(&recs(3, &format!("b{i}")), 1000 + i))
                .unwrap();
            assert_eq!(a.base_offset, i as u64 * 3);
        }
        assert!(p.segment_count() >= 2, "segments should roll");
        assert_eq!(p.high_watermark(), 150);
        assert_eq!(values(p, 0).len(), 150);
        assert_eq!(values(p, 100)[0], "b33-1");
        log.close();
    }
    let log = Log::open(dir.path()).unwrap();
    let p = log.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.high_watermark(), 150);
    assert_eq!(values(&p, 0).len(), 150);
    let a = p.append(batch::build(&recs(1, "more"), 5000)).unwrap();
    assert_eq!(a.base_offset, 150);
    // timestamps: batch i has timestamp 1000+i
    assert_eq!(p.offset_for_timestamp(1010).unwrap(), Some(30));
    assert_eq!(p.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(p.offset_for_timestamp(6000).unwrap(), None);
}

fn active_segment_path(p: &Partition) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(p.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn garbage_tail_is_truncated_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let log = Log::open(dir.path()).unwrap();
        let t = log.create_topic("t", TopicConfig::default()).unwrap();
        for i in 0..5 {
            t.partitions[0]
                .append(batch::build(&recs(2, &format!("x{i}")), 1))
                .unwrap();
        }
        active_segment_path(&t.partitions[0])
    };
    let good_len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0xab; 777])
        .unwrap();
    let log = Log::open(dir.path()).unwrap();
    let p = log.topic("t").unwrap().partitions[0].clone();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(p.high_watermark(), 10);
    assert_eq!(values(&p, 0).len(), 10);
    assert_eq!(
        p.append(batch::build(&recs(1, "y"), 1))
            .unwrap()
            .base_offset,
        10
    );
}

#[test]
fn torn_batch_is_truncated_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (path, len_before_last) = {
        let log = Log::open(dir.path()).unwrap();
        let t = log.create_topic("t", TopicConfig::default()).unwrap();
        let p = &t.partitions[0];
        for i in 0..4 {
            p.append(batch::build(&recs(2, &format!("x{i}")), 1))
                .unwrap();
        }
        let path = active_segment_path(p);
        let before = std::fs::metadata(&path).unwrap().len();
        p.append(batch::build(&recs(5, "last"), 1)).unwrap();
        (path, before)
    };
    let full = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len_before_last + (full - len_before_last) / 2)
        .unwrap();
    let log = Log::open(dir.path()).unwrap();
    let p = log.topic("t").unwrap().partitions[0].clone();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len_before_last);
    assert_eq!(p.high_watermark(), 8);
    assert_eq!(values(&p, 0).len(), 8);
}

#[test]
fn crc_damage_in_the_middle_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let log = Log::open(dir.path()).unwrap();
        let t = log.create_topic("t", TopicConfig::default()).unwrap();
        for i in 0..3 {
            t.partitions[0]
                .append(batch::build(&recs(2, &format!("x{i}")), 1))
                .unwrap();
        }
        active_segment_path(&t.partitions[0])
    };
    // Flip a byte inside the value of the second batch.
    let mut bytes = std::fs::read(&path).unwrap();
    let first = batch::BatchHeader::parse(&bytes).unwrap().size;
    let second = batch::BatchHeader::parse(&bytes[first..]).unwrap().size;
    bytes[first + second - 2] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();

    let log = Log::open(dir.path()).unwrap();
    let p = log.topic("t").unwrap().partitions[0].clone();
    // Nothing after the damage is lost.
    assert_eq!(p.high_watermark(), 6);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes.len() as u64);
    // Reading the damaged batch is an error naming the offset; the others still read.
    let err = p.read(2, 1 << 20).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { offset: 2, .. }), "{err}");
    let r = p.read(0, 1 << 20).unwrap();
    assert_eq!(r.next_offset, 2, "a read stops before the damaged batch");
    assert_eq!(values(&p, 4), vec!["x2-0", "x2-1"]);
}

#[test]
fn bad_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        let t = log.create_topic("t", small_segments()).unwrap();
        for i in 0..40 {
            t.partitions[0]
                .append(batch::build(&recs(3, &format!("b{i}")), 1))
                .unwrap();
        }
        log.close();
    }
    let pdir = dir.path().join("topics/t/0");
    for e in std::fs::read_dir(&pdir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|e| e == "index") {
            std::fs::write(&path, [0u8, 0, 0, 0, 0xff, 0xff, 0, 0]).unwrap();
        }
    }
    let log = Log::open(dir.path()).unwrap();
    let p = log.topic("t").unwrap().partitions[0].clone();
    assert_eq!(values(&p, 0).len(), 120);
    assert_eq!(values(&p, 61)[0], "b20-1");
}

#[test]
fn retention_by_size_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let t = log
        .create_topic(
            "size",
            TopicConfig {
                retention_bytes: Some(4096),
                ..small_segments()
            },
        )
        .unwrap();
    let p = &t.partitions[0];
    for i in 0..60 {
        p.append(batch::build(&recs(3, &format!("b{i}")), 1))
            .unwrap();
    }
    let before = p.stats();
    assert!(p.apply_retention(now_ms()) > 0);
    let after = p.stats();
    assert!(after.size_bytes <= 4096 + 2048, "{after:?}");
    assert!(after.start_offset > 0);
    assert_eq!(after.end_offset, before.end_offset);
    let err = p.read(0, 100).unwrap_err();
    assert!(matches!(err, LogError::OffsetOutOfRange { .. }), "{err}");
    assert!(err.to_string().contains("out of range"));
    assert!(!values(p, after.start_offset).is_empty());

    let t = log
        .create_topic(
            "time",
            TopicConfig {
                retention_ms: Some(60_000),
                ..small_segments()
            },
        )
        .unwrap();
    let p = &t.partitions[0];
    let old = now_ms() - 3_600_000;
    for i in 0..30 {
        let mut r = recs(3, &format!("o{i}"));
        r.iter_mut().for_each(|r| r.timestamp = Some(old));
        p.append(batch::build(&r, old)).unwrap();
    }
    for i in 0..30 {
        p.append(batch::build(&recs(3, &format!("n{i}")), now_ms()))
            .unwrap();
    }
    p.apply_retention(now_ms());
    let v = values(p, p.start_offset());
    assert!(
        v.iter().all(|s| !s.starts_with('o') || v.len() > 90),
        "old segments left"
    );
    assert!(p.start_offset() >= 60, "start {}", p.start_offset());
    assert_eq!(v.last().unwrap(), "n29-2");
}

#[test]
fn concurrent_appends_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let t = log.create_topic("t", TopicConfig::default()).unwrap();
    let p = t.partitions[0].clone();
    std::thread::scope(|s| {
        for w in 0..4 {
            let p = p.clone();
            s.spawn(move || {
                for i in 0..50 {
                    p.append(batch::build(&recs(2, &format!("w{w}-{i}")), 1))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(p.high_watermark(), 400);
    assert_eq!(values(&p, 0).len(), 400);
}

#[test]
fn deleted_topic_is_gone_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        log.create_topic("gone", TopicConfig::default()).unwrap();
        log.create_topic("kept", TopicConfig::default()).unwrap();
        log.delete_topic("gone").unwrap();
        assert!(matches!(
            log.create_topic("kept", TopicConfig::default()),
            Err(LogError::TopicExists(_))
        ));
    }
    let log = Log::open(dir.path()).unwrap();
    assert!(log.topic("gone").is_err());
    assert!(log.topic("kept").is_ok());
    assert!(!dir.path().join("topics/gone").exists());
}

#[test]
fn compaction_keeps_the_latest_value_per_key_and_drops_old_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let t = log
        .create_topic(
            "table",
            TopicConfig {
                cleanup: Cleanup::Compact,
                segment_bytes: 1024,
                tombstone_retention_ms: 0,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let p = &t.partitions[0];
    let rec = |k: &str, v: Option<&str>| NewRecord {
        key: Some(Bytes::from(k.to_string())),
        value: v.map(|v| Bytes::from(v.to_string())),
        headers: vec![],
        timestamp: Some(1),
    };
    for round in 0..20 {
        let recs: Vec<_> = (0..4)
            .map(|k| rec(&format!("k{k}"), Some(&format!("v{round}"))))
            .collect();
        p.append(batch::build(&recs, 1)).unwrap();
    }
    p.append(batch::build(&[rec("k1", None)], 1)).unwrap();
    for round in 0..10 {
        p.append(batch::build(&[rec("k9", Some(&format!("w{round}")))], 1))
            .unwrap();
    }
    let before = p.stats();
    assert!(p.compact(now_ms()).unwrap() > 0);
    let after = p.stats();
    assert!(after.size_bytes < before.size_bytes, "{before:?} {after:?}");
    assert_eq!(after.end_offset, before.end_offset, "offsets are kept");
    // Latest value per key (the active segment is left as it is).
    let mut latest = std::collections::HashMap::new();
    let mut off = p.start_offset();
    let mut offsets = Vec::new();
    while off < p.high_watermark() {
        let r = p.read(off, 4096).unwrap();
        for (_, b) in batch::split(r.data).unwrap() {
            for r in batch::decode(&b).unwrap() {
                offsets.push(r.offset);
                latest.insert(r.key.clone().unwrap(), r.value.clone());
            }
        }
        off = r.next_offset;
    }
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(latest[&Bytes::from("k0")], Some(Bytes::from("v19")));
    assert_eq!(latest[&Bytes::from("k9")], Some(Bytes::from("w9")));
    assert!(latest.get(&Bytes::from("k1")).is_none_or(|v| v.is_none()));
    // Reads from an offset that compaction removed continue at the next record.
    let r = p.read(1, 4096).unwrap();
    assert!(r.next_offset > 1);
    // Survives a restart.
    drop(t);
    drop(log);
    let log = Log::open(dir.path()).unwrap();
    let p = log.topic("table").unwrap().partitions[0].clone();
    assert_eq!(p.high_watermark(), before.end_offset);
}

/// A transactional batch of `n` records from producer `pid`.
fn txn_batch(pid: i64, n: usize, tag: &str) -> bytes::BytesMut {
    let mut b = batch::build(&recs(n, tag), 1000);
    b[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&0i16.to_be_bytes());
    b[53..57].copy_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn committed_values(p: &Partition) -> Vec<String> {
    let (recs, _, _) = p.read_records(0, 10_000).unwrap();
    recs.into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

#[test]
fn open_transactions_hold_the_lso_and_aborted_ones_stay_hidden_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        let p = log
            .create_topic("t", TopicConfig::default())
            .unwrap()
            .partitions[0]
            .clone();
        p.append(batch::build(&recs(2, "plain"), 1000)).unwrap(); // 0..2
        p.append(txn_batch(7, 3, "seven")).unwrap(); // 2..5, open
        p.append(txn_batch(8, 2, "eight")).unwrap(); // 5..7, open
        p.append(batch::build(&recs(1, "late"), 1000)).unwrap(); // 7
        assert_eq!((p.high_watermark(), p.last_stable_offset()), (8, 2));
        assert_eq!(committed_values(&p), ["plain-0", "plain-1"]);
        // 8 aborts: 7 still holds the LSO.
        p.append(batch::control_batch(8, 0, false, 1000)).unwrap(); // 8
        assert_eq!(p.last_stable_offset(), 2);
        // 7 commits: everything below the end is decided; 8's records stay hidden.
        p.append(batch::control_batch(7, 0, true, 1000)).unwrap(); // 9
        assert_eq!(p.last_stable_offset(), 10);
        let expect = [
            "plain-0", "plain-1", "seven-0", "seven-1", "seven-2", "late-0",
        ];
        assert_eq!(committed_values(&p), expect);
        let aborted = p.aborted_between(0, 9);
        assert_eq!(
            aborted,
            [txn::Aborted {
                producer_id: 8,
                first: 5,
                last: 8
            }]
        );
        // 9 opens a transaction and the server stops with it open.
        p.append(txn_batch(9, 1, "nine")).unwrap(); // 10
        assert_eq!(p.last_stable_offset(), 10);
        log.close();
    }
    let log = Log::open(dir.path()).unwrap();
    let p = log.topic("t").unwrap().partitions[0].clone();
    assert_eq!(
        p.last_stable_offset(),
        10,
        "the open transaction survives a restart"
    );
    assert!(p.is_aborted(&batch::BatchHeader {
        producer_id: 8,
        base_offset: 5,
        attributes: 0x10,
        ..batch::BatchHeader::parse(&txn_batch(8, 1, "x")).unwrap()
    }));
    p.append(batch::control_batch(9, 0, false, 1000)).unwrap();
    assert_eq!(p.last_stable_offset(), p.high_watermark());
    let expect = [
        "plain-0", "plain-1", "seven-0", "seven-1", "seven-2", "late-0",
    ];
    assert_eq!(committed_values(&p), expect, "aborted 8 and 9 stay hidden");
}

/// An object store in memory that can be made to fail.
#[derive(Debug, Default)]
struct MemStore {
    objects: std::sync::Mutex<std::collections::BTreeMap<(String, String), Bytes>>,
    down: std::sync::atomic::AtomicBool,
    range_gets: std::sync::atomic::AtomicU64,
}

impl MemStore {
    fn check(&self) -> std::io::Result<()> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("store down"));
        }
        Ok(())
    }
    fn keys(&self) -> Vec<String> {
        self.objects
            .lock()
            .unwrap()
            .keys()
            .map(|(_, k)| k.clone())
            .collect()
    }
}

impl tier::RemoteStore for MemStore {
    fn put(&self, bucket: &str, key: &str, data: Bytes) -> std::io::Result<()> {
        self.check()?;
        self.objects
            .lock()
            .unwrap()
            .insert((bucket.into(), key.into()), data);
        Ok(())
    }
    fn put_file(&self, bucket: &str, key: &str, path: &std::path::Path) -> std::io::Result<u64> {
        let data = std::fs::read(path)?;
        let n = data.len() as u64;
        self.put(bucket, key, data.into())?;
        Ok(n)
    }
    fn get(&self, bucket: &str, key: &str) -> std::io::Result<Option<Bytes>> {
        self.check()?;
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(&(bucket.into(), key.into()))
            .cloned())
    }
    fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> std::io::Result<Bytes> {
        self.check()?;
        self.range_gets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let o = self.objects.lock().unwrap();
        let b = o
            .get(&(bucket.into(), key.into()))
            .ok_or_else(|| std::io::Error::other("no such key"))?;
        Ok(b.slice(range.start as usize..range.end as usize))
    }
    fn delete(&self, bucket: &str, key: &str) -> std::io::Result<()> {
        self.check()?;
        self.objects
            .lock()
            .unwrap()
            .remove(&(bucket.into(), key.into()));
        Ok(())
    }
    fn list(&self, bucket: &str, prefix: &str) -> std::io::Result<Vec<(String, u64)>> {
        self.check()?;
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.len() as u64))
            .collect())
    }
}

fn tiered(local_retention_bytes: Option<u64>) -> TopicConfig {
    TopicConfig {
        segment_bytes: 2048,
        tiered: Some(tier::TierSettings {
            bucket: "b".into(),
            prefix: "sluice".into(),
            local_retention_ms: None,
            local_retention_bytes,
        }),
        ..TopicConfig::default()
    }
}

#[test]
fn tiered_segments_upload_leave_local_disk_and_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(MemStore::default());
    let backend = tier::TierBackend::new(store.clone(), 8 << 10);
    let log = Log::open_with(dir.path(), Some(backend.clone())).unwrap();
    assert!(
        Log::open(dir.path().join("other"))
            .unwrap()
            .create_topic("t", tiered(None))
            .is_err(),
        "no store, no tiered topic"
    );
    let t = log.create_topic("t", tiered(None)).unwrap();
    let p = t.partitions[0].clone();
    for i in 0..200 {
        p.append(batch::build(&recs(3, &format!("b{i}")), 1000 + i))
            .unwrap();
    }
    let all = values(&p, 0);
    assert_eq!(all.len(), 600);
    let local_before = p.segment_count();
    assert!(local_before > 5);
    let mut published = std::collections::HashMap::new();
    for _ in 0..10 {
        log.tier_pass(now_ms(), &mut published);
    }
    let st = p.stats().tier.unwrap();
    assert_eq!(
        p.segment_count(),
        1,
        "only the active segment stays local: {st:?}"
    );
    assert_eq!(st.remote_segments, local_before - 1);
    assert_eq!(st.pending_segments, 0);
    assert_eq!(st.local_start_offset, st.remote_end_offset);
    assert!(store.keys().contains(&"sluice/t/topic.json".to_string()));
    assert!(
        store
            .keys()
            .contains(&"sluice/t/0/00000000000000000000.json".to_string())
    );
    // Reads from offset 0 go through the remote tier and see exactly the same records.
    assert_eq!(values(&p, 0), all);
    assert_eq!(values(&p, 97), all[97..].to_vec());
    assert_eq!(p.start_offset(), 0);
    assert_eq!(p.high_watermark(), 600);
    assert_eq!(p.offset_for_timestamp(1010).unwrap(), Some(30));
    assert_eq!(p.read_records(0, 1000).unwrap().0.len(), 600);
    // A reopen keeps the manifest.
    log.close();
    drop((t, p, log));
    let log = Log::open_with(dir.path(), Some(backend.clone())).unwrap();
    let p = log.topic("t").unwrap().partitions[0].clone();
    assert_eq!(values(&p, 0), all);

    // The store goes down: appends go on, nothing is lost, uploads wait and back off.
    store.down.store(true, std::sync::atomic::Ordering::Relaxed);
    for i in 200..260 {
        p.append(batch::build(&recs(3, &format!("b{i}")), 1000 + i))
            .unwrap();
    }
    log.tier_pass(now_ms(), &mut published);
    let st = p.stats().tier.unwrap();
    assert!(st.pending_segments > 0 && st.failures > 0, "{st:?}");
    assert!(st.last_error.as_deref().unwrap().contains("store down"));
    assert_eq!(p.high_watermark(), 780);
    store
        .down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    // Past the backoff, the uploads resume.
    log.tier_pass(now_ms() + 120_000, &mut published);
    log.tier_pass(now_ms() + 120_000, &mut published);
    let st = p.stats().tier.unwrap();
    assert_eq!(
        (st.pending_segments, st.failures, st.last_error.clone()),
        (0, 0, None),
        "{st:?}"
    );
    let all = values(&p, 0);
    assert_eq!(all.len(), 780);

    // The local disk is lost: a restore serves everything uploaded.
    let fresh = tempfile::tempdir().unwrap();
    let report = Log::restore_from_tier(fresh.path(), &backend, "b", "sluice").unwrap();
    assert_eq!(report.len(), 1, "{report:?}");
    let end = p.stats().tier.unwrap().remote_end_offset;
    assert!(
        report[0].contains(&format!("..{end}")) && report[0].contains("lost"),
        "{report:?}"
    );
    let restored = Log::open_with(fresh.path(), Some(backend.clone())).unwrap();
    let rp = restored.topic("t").unwrap().partitions[0].clone();
    assert_eq!(rp.high_watermark(), end);
    assert_eq!(values(&rp, 0), all[..end as usize].to_vec());
    let a = rp.append(batch::build(&recs(1, "after"), 9999)).unwrap();
    assert_eq!(
        a.base_offset, end,
        "the log goes on where the remote data ends"
    );

    // Total retention deletes remote segments too, and their objects.
    let mut cfg = tiered(None);
    cfg.retention_bytes = Some(4096);
    log.alter_topic("t", cfg).unwrap();
    assert!(p.apply_retention(now_ms()) > 0);
    let st = p.stats().tier.unwrap();
    assert!(p.stats().size_bytes <= 4096 + 2048, "{:?}", p.stats());
    assert!(p.start_offset() > 0);
    assert_eq!(
        store.keys().iter().filter(|k| k.ends_with(".log")).count(),
        st.remote_segments
    );
    assert_eq!(
        values(&p, p.start_offset()),
        all[p.start_offset() as usize..].to_vec()
    );
    assert!(p.read(0, 100).is_err(), "below the start is out of range");
}

#[test]
fn a_crash_between_upload_and_manifest_neither_loses_nor_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(MemStore::default());
    let backend = tier::TierBackend::new(store.clone(), 1 << 20);
    let log = Log::open_with(dir.path(), Some(backend.clone())).unwrap();
    let p = log
        .create_topic("t", tiered(Some(1 << 30)))
        .unwrap()
        .partitions[0]
        .clone();
    for i in 0..150 {
        p.append(batch::build(&recs(3, &format!("b{i}")), 1000 + i))
            .unwrap();
    }
    let all = values(&p, 0);
    // As if the process died after uploading the objects but before the manifest: the
    // objects are there, the manifest does not list them.
    let mut published = std::collections::HashMap::new();
    for _ in 0..5 {
        log.tier_pass(now_ms(), &mut published);
    }
    let uploaded = p.stats().tier.unwrap().remote_segments;
    assert!(uploaded > 4);
    std::fs::remove_file(dir.path().join("topics/t/0").join(tier::MANIFEST)).unwrap();
    drop((p, log));
    let log = Log::open_with(dir.path(), Some(backend)).unwrap();
    let p = log.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.stats().tier.unwrap().remote_segments, 0);
    for _ in 0..5 {
        log.tier_pass(now_ms(), &mut published);
    }
    let st = p.stats().tier.unwrap();
    assert_eq!(
        st.remote_segments, uploaded,
        "uploaded again under the same names"
    );
    let logs = store.keys().iter().filter(|k| k.ends_with(".log")).count();
    assert_eq!(logs, uploaded, "one object per segment");
    assert_eq!(values(&p, 0), all);
}

#[test]
fn disk_danger_is_reported_before_the_disk_fills() {
    let gib = 1 << 30;
    assert!(!tier::disk_danger(50 * gib, 100 * gib, 0), "nothing waits");
    assert!(!tier::disk_danger(50 * gib, 100 * gib, gib));
    assert!(tier::disk_danger(9 * gib, 100 * gib, gib), "under 10% free");
    assert!(
        tier::disk_danger(40 * gib, 100 * gib, 41 * gib),
        "less free than what waits"
    );
    // The real file system answers.
    let dir = tempfile::tempdir().unwrap();
    let (free, total) = tier::disk_space(dir.path()).unwrap();
    assert!(free > 0 && total >= free);
}

#[test]
fn a_tiered_topic_keeps_its_place_and_takes_its_objects_when_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(MemStore::default());
    let log = Log::open_with(
        dir.path(),
        Some(tier::TierBackend::new(store.clone(), 1 << 20)),
    )
    .unwrap();
    let p = log.create_topic("t", tiered(None)).unwrap().partitions[0].clone();
    for i in 0..100 {
        p.append(batch::build(&recs(3, &format!("b{i}")), 1000 + i))
            .unwrap();
    }
    log.tier_pass(now_ms(), &mut std::collections::HashMap::new());
    assert!(p.remote_segment_count() > 0);
    let mut moved = tiered(None);
    if let Some(t) = &mut moved.tiered {
        t.prefix = "elsewhere".into();
    }
    let e = log.alter_topic("t", moved).unwrap_err().to_string();
    assert!(e.contains("cannot change"), "{e}");
    assert!(
        log.alter_topic("t", small_segments()).is_err(),
        "tiering cannot be switched off"
    );
    let mut more_local = tiered(Some(1 << 20));
    more_local.retention_ms = Some(3_600_000);
    log.alter_topic("t", more_local).unwrap();
    log.delete_topic("t").unwrap();
    assert!(store.keys().is_empty(), "{:?}", store.keys());
}

/// Stats and tier passes (which take the writer lock) run beside appends that roll
/// segments (which hold the writer and take the segment map): no lock-order deadlock.
#[test]
fn stats_and_tier_passes_beside_rolling_appends_never_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(MemStore::default());
    let log = Log::open_with(dir.path(), Some(tier::TierBackend::new(store, 1 << 20))).unwrap();
    let p = log
        .create_topic("t", tiered(Some(1 << 30)))
        .unwrap()
        .partitions[0]
        .clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchers: Vec<_> = (0..2)
        .map(|i| {
            let (p, log, stop) = (p.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut published = std::collections::HashMap::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if i == 0 {
                        std::hint::black_box(p.stats());
                    } else {
                        log.tier_pass(now_ms(), &mut published);
                    }
                }
            })
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let p = p.clone();
        std::thread::spawn(move || {
            for i in 0..3000 {
                p.append(batch::build(&recs(2, &format!("b{i}")), 1000 + i))
                    .unwrap();
            }
            let _ = tx.send(());
        })
    };
    let done = rx.recv_timeout(std::time::Duration::from_secs(60));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(done.is_ok(), "appends stalled: a lock-order deadlock");
    writer.join().unwrap();
    for w in watchers {
        w.join().unwrap();
    }
    assert!(p.segment_count() > 10);
}

/// With a map smaller than the keys, compaction goes in passes, each on from where the
/// last stopped; together they leave the latest record of every key and drop the rest.
#[test]
fn compaction_with_a_bounded_map_takes_passes_and_keeps_every_latest_record() {
    // Segments read a batch at a time (each batch is longer than 60 bytes), a few at a
    // time, and whole.
    for chunk in [60, 200, crate::partition::CLEAN_CHUNK] {
        compaction_takes_passes(chunk);
    }
}

fn compaction_takes_passes(chunk: usize) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let t = log
        .create_topic(
            "table",
            TopicConfig {
                cleanup: Cleanup::Compact,
                segment_bytes: 1024,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let p = &t.partitions[0];
    let mut want = std::collections::HashMap::new();
    for round in 0..6 {
        for k in 0..40 {
            let (key, value) = (format!("k{k:02}"), format!("v{round}-{k}"));
            want.insert(Bytes::from(key.clone()), Bytes::from(value.clone()));
            let r = NewRecord {
                key: Some(Bytes::from(key)),
                value: Some(Bytes::from(value)),
                headers: vec![],
                timestamp: Some(1),
            };
            p.append(batch::build(&[r], 1)).unwrap();
        }
    }
    let before = p.stats().size_bytes;
    for _ in 0..30 {
        p.compact_mapping(now_ms(), 8, chunk).unwrap();
    }
    assert!(
        p.stats().size_bytes < before / 2,
        "{} of {before}",
        p.stats().size_bytes
    );
    let mut latest = std::collections::HashMap::new();
    let mut count: std::collections::HashMap<Bytes, usize> = std::collections::HashMap::new();
    let mut off = p.start_offset();
    while off < p.high_watermark() {
        let r = p.read(off, 4096).unwrap();
        for (_, b) in batch::split(r.data).unwrap() {
            for r in batch::decode(&b).unwrap() {
                *count.entry(r.key.clone().unwrap()).or_default() += 1;
                latest.insert(r.key.clone().unwrap(), r.value.clone().unwrap());
            }
        }
        off = r.next_offset;
    }
    assert_eq!(latest, want, "every key's latest value");
    // Sealed segments hold one record per key; the active one may hold more.
    assert!(count.values().all(|n| *n <= 2), "{count:?}");
}
