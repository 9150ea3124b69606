//! The disk state store (`"state_store": "disk"`) next to the memory store, in one run so
//! that they compare as ratios:
//!
//! - ns per `get` and `put` on 2 M keys: the memory store, and the disk store with its
//!   cache holding ~10% of the state (uniform keys: mostly misses; skewed keys: 90% of
//!   operations on 10% of the keys), a commit written every 1,000 operations;
//! - `window-count` end to end on state 10× the cache (2.4 M keys in hour-long windows,
//!   3 M events, 2 partitions), disk against memory; the memory the disk store holds;
//! - the embedded store chosen by measurement: fjall (LSM) against redb (copy-on-write
//!   B-tree) on the store's own work — 2 M keys written in batches of 1,000 (one atomic
//!   commit each, made durable every 100), then random updates in batches, then random
//!   point reads, each with a 64 MiB cache: ns per key and bytes on disk;
//! - what checkpointing costs on disk: the store's bytes on disk per input record (each
//!   commit's changes are written with the changelog offset they reach).
//!
//! Run: `cargo bench -p sluice-tests --bench state_disk`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Env, create, env};
use sluice_log::batch::{self, NewRecord};
use sluice_pipeline::TransformSpec;
use sluice_runtime::state::disk::StateDb;
use sluice_runtime::state::{StateBudget, StateDelta, StateStore, write_committed};

const KEYS: usize = 2_000_000;
const OPS: usize = 1_000_000;
/// Operations between two commits written to disk.
const PER_COMMIT: usize = 1000;

fn key(i: usize) -> Vec<u8> {
    format!("count\0user-{i:010}").into_bytes()
}

/// Fills `store` with KEYS keys (8-byte values), committing as the pipeline does.
fn fill(store: &Mutex<StateStore>) {
    for start in (0..KEYS).step_by(10_000) {
        let delta = {
            let mut s = store.lock().unwrap();
            s.begin_run();
            for i in start..start + 10_000 {
                s.put(&key(i), &(i as u64).to_le_bytes()).unwrap();
            }
            s.end_run(true)
        };
        write_committed(store, &delta, b"").unwrap();
    }
}

/// ns per get and per put (a read-modify-write of a counter) over keys from `pick`.
fn ops(store: &Mutex<StateStore>, mut pick: impl FnMut() -> usize) -> (f64, f64) {
    let start = Instant::now();
    {
        let mut s = store.lock().unwrap();
        for _ in 0..OPS {
            std::hint::black_box(s.get(&key(pick())).unwrap());
        }
    }
    let get = start.elapsed().as_nanos() as f64 / OPS as f64;
    let start = Instant::now();
    for _ in 0..OPS / PER_COMMIT {
        let delta: StateDelta = {
            let mut s = store.lock().unwrap();
            s.begin_run();
            for _ in 0..PER_COMMIT {
                let k = key(pick());
                let n = s
                    .get(&k)
                    .unwrap()
                    .map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()));
                s.put(&k, &(n + 1).to_le_bytes()).unwrap();
            }
            s.end_run(true)
        };
        write_committed(store, &delta, b"").unwrap();
    }
    let put = start.elapsed().as_nanos() as f64 / OPS as f64;
    (get, put)
}

fn store_ops() {
    let dir = tempfile::tempdir_in(
        std::env::var_os("SLUICE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into),
    )
    .unwrap();
    let budget = Arc::new(StateBudget::new(1 << 40));
    let memory = Mutex::new(StateStore::new(budget.clone()));
    fill(&memory);
    let state_bytes = memory.lock().unwrap().bytes();
    // Cache ~10% of the state: half for values, half for the store's own blocks.
    let cache = state_bytes / 10;
    let db = StateDb::open(dir.path(), cache / 2, 1).unwrap();
    let values = Arc::new(StateBudget::new(cache / 2));
    let (disk, _) = StateStore::on_disk(budget, values.clone(), db.partition(0).unwrap()).unwrap();
    let disk = Mutex::new(disk);
    let started = Instant::now();
    fill(&disk);
    let fill_disk = started.elapsed();
    let mut rng = fastrand::Rng::with_seed(1);
    let uniform = |rng: &mut fastrand::Rng| rng.usize(0..KEYS);
    let skewed = |rng: &mut fastrand::Rng| {
        if rng.u8(0..10) < 9 {
            rng.usize(0..KEYS / 10)
        } else {
            rng.usize(0..KEYS)
        }
    };
    let (mg, mp) = ops(&memory, || uniform(&mut rng));
    let (dg, dp) = ops(&disk, || uniform(&mut rng));
    let (sg, sp) = ops(&disk, || skewed(&mut rng));
    println!(
        "state ops, {KEYS} keys ({:.0} MB of state), disk cache {:.0} MB: memory get {mg:.0} ns, put {mp:.0} ns; \
         disk uniform get {dg:.0} ns ({:.1}x), put {dp:.0} ns ({:.1}x); disk skewed (90% on 10% of keys) get {sg:.0} ns, put {sp:.0} ns; \
         filling the disk store: {:.0} ns/key; values cached now {:.1} MB",
        state_bytes as f64 / 1e6,
        cache as f64 / 1e6,
        dg / mg,
        dp / mp,
        fill_disk.as_nanos() as f64 / KEYS as f64,
        values.used() as f64 / 1e6,
    );
}

const EVENTS: usize = 3_000_000;
const USERS: usize = 2_400_000;
const PER_BATCH: usize = 1000;

/// EVENTS events of USERS users, all in one hour-long window, on 2 partitions.
fn fill_events(e: &Env) {
    let t = e.log.topic("in").unwrap();
    let base = (sluice_log::now_ms() - 7_200_000) / 3_600_000 * 3_600_000;
    let mut rng = fastrand::Rng::with_seed(2);
    for b in 0..EVENTS / PER_BATCH {
        let p = b % 2;
        let recs: Vec<NewRecord> = (0..PER_BATCH)
            .map(|i| {
                let user = 2 * rng.usize(0..USERS / 2) + p;
                NewRecord {
                    key: Some(Bytes::from(format!("user-{user:08}"))),
                    value: Some(Bytes::from_static(b"{}")),
                    headers: Vec::new(),
                    timestamp: Some(base + 1000 + ((b * PER_BATCH + i) / 1000) as i64),
                }
            })
            .collect();
        t.partitions[p].append(batch::build(&recs, base)).unwrap();
    }
}

fn spec(store: &str, cache: u64) -> TransformSpec {
    serde_json::from_value(serde_json::json!({
        "plugin": "window-count", "input": "in", "outputs": ["out"],
        "config": {"window_ms": "3600000"}, "idle_timeout_ms": 3_600_000,
        "state_store": store,
        "limits": {"state_bytes": 16u64 << 30, "state_cache_bytes": cache},
    }))
    .unwrap()
}

/// Runs the deployment over all the input: events/s, state bytes, memory held, disk bytes.
fn run(e: &Env, name: &str, spec: TransformSpec) -> (f64, u64, Option<u64>, Option<u64>) {
    let start = Instant::now();
    e.pipelines.deploy(name, spec).unwrap();
    let t = e.pipelines.get(name).unwrap();
    loop {
        let st = e.pipelines.status(&t);
        let done: u64 = st.partitions.iter().filter_map(|p| p.position).sum();
        if done >= EVENTS as u64 {
            let rate = EVENTS as f64 / start.elapsed().as_secs_f64();
            let bytes = st
                .partitions
                .iter()
                .filter_map(|p| p.state.as_ref())
                .map(|s| s.state_bytes)
                .sum();
            return (rate, bytes, st.state_memory_bytes, st.state_disk_bytes);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn window_count() {
    let e = env(&[("window-count", sluice::plugins::WINDOW_COUNT)]);
    create(&e.log, "in", 2);
    create(&e.log, "out", 2);
    fill_events(&e);
    let (mem_rate, state, _, _) = run(&e, "mem", spec("memory", 64 << 20));
    e.pipelines.delete("mem").unwrap();
    // The cache a tenth of the state.
    let cache = (state / 10).max(16 << 20);
    let (disk_rate, _, held, on_disk) = run(&e, "disk", spec("disk", cache));
    let written = on_disk.unwrap_or(0);
    e.pipelines.shutdown();
    println!(
        "window-count, {USERS} users in hour windows ({:.0} MB of state), 2 partitions: memory store {mem_rate:.0} events/s; \
         disk store with a {:.0} MB cache {disk_rate:.0} events/s ({:.0}%); values cached at the end {:.1} MB; store on disk {:.0} MB ({:.1} bytes per input record)",
        state as f64 / 1e6,
        cache as f64 / 1e6,
        disk_rate / mem_rate * 100.0,
        held.unwrap_or(0) as f64 / 1e6,
        written as f64 / 1e6,
        written as f64 / EVENTS as f64,
    );
}

/// One embedded store under the state's work.
trait Kv {
    fn name(&self) -> &'static str;
    /// One atomic batch, not yet durable.
    fn batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]);
    /// Makes every batch so far durable.
    fn checkpoint(&mut self);
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    fn disk_bytes(&self) -> u64;
}

struct Fjall(StateDb, sluice_runtime::state::disk::DiskPart);

impl Kv for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }
    fn batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]) {
        use sluice_runtime::state::disk::{Change, Counts};
        let changes = items.iter().map(|(k, v)| Change::Value(k, Some(v)));
        self.1.write(changes, Counts::default(), b"").unwrap();
    }
    fn checkpoint(&mut self) {
        self.0.persist().unwrap();
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.1.get(key).unwrap()
    }
    fn disk_bytes(&self) -> u64 {
        self.0.disk_space()
    }
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("state");

struct Redb(redb::Database, std::path::PathBuf);

impl Kv for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }
    fn batch(&mut self, items: &[(Vec<u8>, Vec<u8>)]) {
        let mut tx = self.0.begin_write().unwrap();
        tx.set_durability(redb::Durability::None).unwrap();
        {
            let mut t = tx.open_table(TABLE).unwrap();
            for (k, v) in items {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn checkpoint(&mut self) {
        let mut tx = self.0.begin_write().unwrap();
        tx.set_durability(redb::Durability::Immediate).unwrap();
        tx.commit().unwrap();
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        use redb::{ReadableDatabase, ReadableTable};
        let tx = self.0.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        t.get(key).unwrap().map(|g| g.value().to_vec())
    }
    fn disk_bytes(&self) -> u64 {
        std::fs::metadata(&self.1).map_or(0, |m| m.len())
    }
}

/// ns per key written (insert, then update) and read, and bytes on disk per key.
fn exercise(kv: &mut dyn Kv) -> String {
    let mut rng = fastrand::Rng::with_seed(3);
    let timed = |kv: &mut dyn Kv, n: usize, rng: &mut fastrand::Rng, fresh: bool| {
        let start = Instant::now();
        for b in 0..n / PER_COMMIT {
            let items: Vec<(Vec<u8>, Vec<u8>)> = (0..PER_COMMIT)
                .map(|i| {
                    let k = if fresh {
                        b * PER_COMMIT + i
                    } else {
                        rng.usize(0..KEYS)
                    };
                    (key(k), rng.u64(..).to_le_bytes().to_vec())
                })
                .collect();
            kv.batch(&items);
            if b % 100 == 99 {
                kv.checkpoint();
            }
        }
        kv.checkpoint();
        start.elapsed().as_nanos() as f64 / n as f64
    };
    let insert = timed(kv, KEYS, &mut rng, true);
    let update = timed(kv, OPS, &mut rng, false);
    let start = Instant::now();
    for _ in 0..OPS / 2 {
        std::hint::black_box(kv.get(&key(rng.usize(0..KEYS))));
    }
    let get = start.elapsed().as_nanos() as f64 / (OPS / 2) as f64;
    format!(
        "{}: insert {insert:.0} ns/key, random update {update:.0} ns/key, random get {get:.0} ns/key, {:.0} bytes on disk per key",
        kv.name(),
        kv.disk_bytes() as f64 / KEYS as f64
    )
}

fn compare_stores() {
    let base = std::env::var_os("SLUICE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    let db = StateDb::open(&dir.path().join("fjall"), 128 << 20, 1).unwrap();
    let part = db.partition(0).unwrap();
    let fjall = exercise(&mut Fjall(db, part));
    let path = dir.path().join("redb");
    let redb = redb::Database::builder()
        .set_cache_size(64 << 20)
        .create(&path)
        .unwrap();
    let redb = exercise(&mut Redb(redb, path));
    println!(
        "embedded stores, {KEYS} keys, batches of {PER_COMMIT}, durable every 100 batches:\n  {fjall}\n  {redb}"
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    match std::env::var("SLUICE_BENCH_ONLY").as_deref() {
        Ok("ops") => return store_ops(),
        Ok("window-count") => return window_count(),
        Ok("stores") => return compare_stores(),
        _ => {}
    }
    compare_stores();
    store_ops();
    window_count();
}
