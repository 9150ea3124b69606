//! The state store's tests: memory and disk.

use super::*;
use std::sync::Arc;

#[test]
fn failed_calls_and_dropped_runs_are_undone_and_kept_runs_give_their_delta() {
    let budget = Arc::new(StateBudget::new(1 << 20));
    let mut s = StateStore::new(budget.clone());
    s.begin_run();
    s.begin_call();
    s.put(b"a", b"1").unwrap();
    s.set_timer(b"a", 10).unwrap();
    s.end_call(true);
    s.begin_call();
    s.put(b"a", b"2").unwrap();
    s.put(b"b", b"x").unwrap();
    s.cancel_timer(b"a", 10).unwrap();
    s.end_call(false);
    assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get(b"b").unwrap(), None);
    assert_eq!(s.timer_count(), 1);
    let d = s.end_run(true);
    assert_eq!(d.values.get(&b"a"[..]), Some(&Some(b"1".to_vec())));
    assert_eq!(d.timers.get(&(10, b"a".to_vec())), Some(&true));
    assert_eq!(budget.used(), s.bytes());

    s.begin_run();
    s.begin_call();
    s.delete(b"a").unwrap();
    let (due, n) = s.take_due(10, 100).unwrap();
    assert_eq!(n, 1);
    assert!(!due.is_empty());
    s.end_call(true);
    assert!(s.end_run(false).is_empty());
    assert_eq!(
        (s.get(b"a").unwrap(), s.timer_count()),
        (Some(b"1".to_vec()), 1)
    );
    assert_eq!(budget.used(), s.bytes());
    drop(s);
    assert_eq!(budget.used(), 0);
}

#[test]
fn readers_see_the_state_of_the_last_completed_run() {
    let mut s = StateStore::new(Arc::new(StateBudget::new(1 << 20)));
    s.begin_run();
    for k in [&b"p1"[..], b"p2", b"p3", b"q"] {
        s.put(k, b"old").unwrap();
    }
    s.end_run(true);
    s.begin_run();
    s.begin_call();
    s.put(b"p1", b"new").unwrap();
    s.delete(b"p2").unwrap();
    s.put(b"p0", b"added").unwrap();
    let page = s.page(b"p", None, 10).unwrap();
    let keys: Vec<&[u8]> = page.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, [&b"p1"[..], b"p2", b"p3"]);
    assert!(page.iter().all(|(_, v)| v == b"old"));
    assert_eq!(
        s.page(b"p", Some(b"p1"), 1).unwrap(),
        [(b"p2".to_vec(), b"old".to_vec())]
    );
    assert_eq!(s.committed_get(b"p2").unwrap(), Some(b"old".to_vec()));
    assert_eq!(s.committed_get(b"p0").unwrap(), None);
    s.end_call(true);
    s.end_run(true);
    assert_eq!(s.committed_get(b"p1").unwrap(), Some(b"new".to_vec()));
    let keys: Vec<Vec<u8>> = s
        .page(b"p", None, 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, [b"p0".to_vec(), b"p1".to_vec(), b"p3".to_vec()]);
}

#[test]
fn the_budget_is_shared_and_enforced() {
    let budget = Arc::new(StateBudget::new(300));
    let mut a = StateStore::new(budget.clone());
    let mut b = StateStore::new(budget.clone());
    a.put(b"k", &[0; 100]).unwrap();
    let e = b.put(b"k", &[0; 100]).unwrap_err();
    assert!(matches!(
        e.downcast_ref::<Stop>(),
        Some(Stop::StateLimit { limit: 300 })
    ));
    // Shrinking a value always works.
    a.put(b"k", b"").unwrap();
    b.put(b"k", &[0; 100]).unwrap();
    assert!(b.put(&vec![0; MAX_KEY_BYTES + 1], b"").is_err());
}

#[test]
fn scans_page_by_prefix() {
    let mut s = StateStore::new(Arc::new(StateBudget::new(1 << 20)));
    for k in ["a1", "b1", "b2", "b3", "c"] {
        s.put(k.as_bytes(), b"v").unwrap();
    }
    let keys = |buf: Result<Vec<u8>, wasmtime::Error>| -> Vec<String> {
        sluice_sdk::state::read_entries(&buf.unwrap())
            .map(|e| String::from_utf8(e.unwrap().0.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(keys(s.scan(b"b", None, 2)), ["b1", "b2"]);
    assert_eq!(keys(s.scan(b"b", Some(b"b2"), 10)), ["b3"]);
    assert_eq!(keys(s.scan(b"b", Some(b"a"), 10)), ["b1", "b2", "b3"]);
    assert!(keys(s.scan(b"d", None, 10)).is_empty());
}

/// A memory store and a disk store with a tiny cache take the same random runs
/// (failed calls, dropped runs, committed deltas written late as an appender does,
/// restarts): every read, scan, timer firing, count and delta is the same.
#[test]
fn the_disk_store_behaves_as_the_memory_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let budget = Arc::new(StateBudget::new(1 << 30));
    let memory = Arc::new(StateBudget::new(2 << 10));
    let open = |db: &disk::StateDb| {
        let (s, cp) =
            StateStore::on_disk(budget.clone(), memory.clone(), db.partition(0).unwrap()).unwrap();
        (Mutex::new(s), cp)
    };
    let mut db = disk::StateDb::open(dir.path(), 4 << 20, 1).unwrap();
    let mut m = StateStore::new(Arc::new(StateBudget::new(1 << 30)));
    let (mut d, _) = open(&db);
    let mut pending: Vec<StateDelta> = Vec::new();
    let mut watermark = 0i64;
    let mut last_cp = None;
    for step in 0..3000u64 {
        let dd = d.get_mut().unwrap();
        m.begin_run();
        dd.begin_run();
        for _ in 0..rnd(4) + 1 {
            m.begin_call();
            dd.begin_call();
            for _ in 0..rnd(6) + 1 {
                let key = format!("k{}", rnd(30)).into_bytes();
                match rnd(8) {
                    0 | 1 => {
                        let v = vec![b'a' + rnd(26) as u8; rnd(40) as usize];
                        m.put(&key, &v).unwrap();
                        dd.put(&key, &v).unwrap();
                    }
                    2 => {
                        m.delete(&key).unwrap();
                        dd.delete(&key).unwrap();
                    }
                    3 => assert_eq!(m.get(&key).unwrap(), dd.get(&key).unwrap()),
                    4 => {
                        let at = watermark + rnd(20) as i64;
                        m.set_timer(&key, at).unwrap();
                        dd.set_timer(&key, at).unwrap();
                    }
                    5 => {
                        let at = watermark + rnd(20) as i64;
                        m.cancel_timer(&key, at).unwrap();
                        dd.cancel_timer(&key, at).unwrap();
                    }
                    6 => {
                        let prefix = format!("k{}", rnd(4)).into_bytes();
                        let after = format!("k{}", rnd(30)).into_bytes();
                        let after = (rnd(2) == 0).then_some(after.as_slice());
                        let limit = rnd(8) as u32;
                        assert_eq!(
                            m.scan(&prefix, after, limit).unwrap(),
                            dd.scan(&prefix, after, limit).unwrap()
                        );
                    }
                    _ => {
                        watermark += rnd(3) as i64;
                        let max = rnd(5) as usize + 1;
                        assert_eq!(
                            m.take_due(watermark, max).unwrap(),
                            dd.take_due(watermark, max).unwrap(),
                            "step {step}"
                        );
                    }
                }
            }
            let ok = rnd(7) != 0;
            m.end_call(ok);
            dd.end_call(ok);
        }
        let keep = rnd(5) != 0;
        let (a, b) = (m.end_run(keep), dd.end_run(keep));
        assert_eq!(
            (&a.values, &a.timers),
            (&b.values, &b.timers),
            "step {step}"
        );
        if keep {
            pending.push(b);
        }
        assert_eq!(
            (m.keys(), m.timer_count(), m.bytes(), m.next_timer()),
            (dd.keys(), dd.timer_count(), dd.bytes(), dd.next_timer()),
            "step {step}"
        );
        assert_eq!(
            m.page(b"k1", None, 5).unwrap(),
            dd.page(b"k1", None, 5).unwrap()
        );
        // The appender writes what the changelog has, some commits behind.
        if !pending.is_empty() && rnd(3) == 0 {
            let n = rnd(pending.len() as u64) as usize + 1;
            let mut merged = StateDelta::default();
            for delta in pending.drain(..n) {
                merged.merge(delta);
            }
            write_committed(&d, &merged, &step.to_le_bytes()).unwrap();
            last_cp = Some(step.to_le_bytes().to_vec());
        }
        if rnd(200) == 0 {
            for delta in pending.drain(..) {
                write_committed(&d, &delta, &step.to_le_bytes()).unwrap();
                last_cp = Some(step.to_le_bytes().to_vec());
            }
            drop(d);
            db.persist().unwrap();
            drop(db);
            db = disk::StateDb::open(dir.path(), 4 << 20, 1).unwrap();
            let (again, cp) = open(&db);
            assert_eq!(cp, last_cp);
            d = again;
            let dd = d.get_mut().unwrap();
            assert_eq!(
                (m.keys(), m.timer_count(), m.bytes(), m.next_timer()),
                (dd.keys(), dd.timer_count(), dd.bytes(), dd.next_timer())
            );
            assert_eq!(
                m.page(b"", None, 1000).unwrap(),
                dd.page(b"", None, 1000).unwrap()
            );
        }
    }
    assert!(
        memory.used() <= memory.limit() + (8 << 10),
        "{}",
        memory.used()
    );
}
