//! PostgreSQL sink throughput: rows/s into a real server with `append` and `upsert`, next to a
//! plain `COPY` of the same rows (the store's own limit) measured in the same run.
//! Run: `cargo bench -p sluice-tests --bench sink` (starts a throwaway server with
//! scripts/test-postgres unless `SLUICE_TEST_PG_DSN` is set). `SLUICE_BENCH_ROWS` sets the count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_connect::{ConnectorSpec, Connectors};
use sluice_log::batch::{self, NewRecord};
use sluice_log::{Log, TopicConfig};

const USERS: usize = 10_000;

/// A 150-byte JSON record.
fn value(i: usize) -> String {
    let mut v = format!(
        "{{\"id\":{i},\"user_id\":\"u-{}\",\"action\":\"click\",\"page\":\"/products/{}\",\"ts\":{}",
        i % USERS,
        i * 7919 % 1_000_000,
        1_790_000_000_000u64 + i as u64
    );
    v.push_str(",\"pad\":\"");
    while v.len() < 148 {
        v.push('x');
    }
    v.push_str("\"}");
    v
}

fn database(base: &str) -> String {
    let mut admin = postgres::Client::connect(base, postgres::NoTls).unwrap();
    admin
        .batch_execute("DROP DATABASE IF EXISTS sluice_bench")
        .unwrap();
    admin.batch_execute("CREATE DATABASE sluice_bench").unwrap();
    format!("{}/sluice_bench", base.rsplit_once('/').unwrap().0)
}

const COLUMNS: &str = "id bigint, user_id text, action text, page text, ts bigint, pad text";

/// COPY of the same rows, formatted from the same JSON by the client.
fn copy(dsn: &str, values: &[String]) -> f64 {
    let mut pg = postgres::Client::connect(dsn, postgres::NoTls).unwrap();
    pg.batch_execute(&format!(
        "DROP TABLE IF EXISTS copied; CREATE TABLE copied ({COLUMNS})"
    ))
    .unwrap();
    let t = Instant::now();
    let mut w = pg
        .copy_in("COPY copied (id, user_id, action, page, ts, pad) FROM STDIN")
        .unwrap();
    for v in values {
        let d: serde_json::Value = serde_json::from_str(v).unwrap();
        writeln!(
            w,
            "{}\t{}\t{}\t{}\t{}\t{}",
            d["id"],
            d["user_id"].as_str().unwrap(),
            d["action"].as_str().unwrap(),
            d["page"].as_str().unwrap(),
            d["ts"],
            d["pad"].as_str().unwrap()
        )
        .unwrap();
    }
    w.finish().unwrap();
    values.len() as f64 / t.elapsed().as_secs_f64()
}

/// Sluice's postgres-sink from a topic already holding the rows, until its lag is 0.
fn sink(dsn: &str, values: &[String], mode: &str, partitions: u32, batch: usize) -> f64 {
    let mut pg = postgres::Client::connect(dsn, postgres::NoTls).unwrap();
    let table = format!("sunk_{mode}");
    let ddl = if mode == "upsert" {
        "id bigint, user_id text PRIMARY KEY, action text, page text, ts bigint, pad text"
    } else {
        COLUMNS
    };
    pg.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({ddl}); DELETE FROM sluice_sink_positions WHERE connector = '{table}'"
    ))
    .or_else(|_| pg.batch_execute(&format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({ddl})")))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = Log::open(dir.path().join("data")).unwrap();
    let topic = log
        .create_topic(
            "rows",
            TopicConfig {
                partitions,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    // Keyed by user, partitioned by key as a producer would.
    let mut by_part: Vec<Vec<NewRecord>> = (0..partitions).map(|_| Vec::new()).collect();
    for (i, v) in values.iter().enumerate() {
        let key = format!("u-{}", i % USERS);
        let p = topic.pick_partition(Some(key.as_bytes())) as usize;
        by_part[p].push(NewRecord {
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(v.clone())),
            ..Default::default()
        });
    }
    for (p, recs) in by_part.iter().enumerate() {
        for chunk in recs.chunks(1000) {
            topic.partitions[p]
                .append(batch::build(chunk, sluice_log::now_ms()))
                .unwrap();
        }
    }
    let mut spec = serde_json::json!({"kind": "postgres-sink", "topic": "rows", "dsn": dsn,
        "table": table, "mode": mode,
        "columns": {"id": "id", "user_id": "user_id", "action": "action", "page": "page",
                    "ts": "ts", "pad": "pad"},
        "batch": {"max_records": batch, "max_bytes": 64 << 20, "linger_ms": 0}});
    if mode == "upsert" {
        spec["key_column"] = serde_json::json!("user_id");
    }
    let spec: ConnectorSpec = serde_json::from_value(spec).unwrap();
    let rate = rt.block_on(async {
        let (l, d) = (log.clone(), dir.path().join("connectors"));
        let connectors = tokio::task::spawn_blocking(move || Connectors::open(l, d))
            .await
            .unwrap()
            .unwrap();
        let t = Instant::now();
        connectors.deploy(&table, spec).await.unwrap();
        loop {
            let c = connectors.get(&table).unwrap();
            let st = serde_json::to_value(connectors.status(&c)).unwrap();
            if st["partitions"]
                .as_array()
                .is_some_and(|p| p.len() == partitions as usize)
                && st["lag"] == 0
            {
                break;
            }
            assert!(st["dead_letters"] == 0, "{st}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let rate = values.len() as f64 / t.elapsed().as_secs_f64();
        connectors.shutdown().await;
        rate
    });
    let want = if mode == "upsert" {
        USERS.min(values.len())
    } else {
        values.len()
    } as i64;
    let got: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(got, want, "{table}");
    log.close();
    drop(Arc::clone(&log));
    rate
}

fn main() {
    let n: usize = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dsn = database(&sluice_tests::test_postgres_dsn());
    let values: Vec<String> = (0..n).map(value).collect();
    println!("{n} rows of {} bytes of JSON", values[0].len());
    let copy_rate = copy(&dsn, &values);
    println!(
        "COPY (client-side formatting)       {:>10.0} rows/s",
        copy_rate
    );
    for (mode, partitions, batch) in [
        ("append", 1, 5000),
        ("append", 2, 5000),
        ("upsert", 2, 5000),
    ] {
        let r = sink(&dsn, &values, mode, partitions, batch);
        println!(
            "postgres-sink {mode:<6} {partitions} partition(s) batch {batch:<5} {r:>10.0} rows/s = {:>3.0}% of COPY",
            r / copy_rate * 100.0
        );
    }
}
