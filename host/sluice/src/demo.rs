//! `sluice demo`: the main job on the embedded default, end to end in one command — push
//! user-activity events with passwords and user ids, mask them, enrich them from a `users`
//! table, and print the results as they arrive, with a dead-letter example; and count each
//! user's activity per one-second window of event time with the stateful `window-count`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::client::Client;
use crate::config::ServerConfig;

const USERS: [(&str, &str, &str); 4] = [
    ("u-1001", "Ada", "pro"),
    ("u-1002", "Brook", "free"),
    ("u-1003", "Chen", "pro"),
    ("u-1004", "Dara", "team"),
];

/// Sample user-activity events of the kind Sluice is built to clean up.
pub fn sample_events() -> Vec<Value> {
    let actions = ["login", "view_item", "add_to_cart", "checkout", "logout"];
    (0..12)
        .map(|i| {
            let user = USERS[i % USERS.len()].0;
            json!({
                "user_id": user,
                "action": actions[i % actions.len()],
                "message": format!("User: {user}, Password: hunter{i}"),
                "email": format!("{user}@example.com"),
                "seq": i,
            })
        })
        .collect()
}

/// Starts a server in a temporary directory, runs the pipeline, prints what comes out.
pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = ServerConfig {
        tier: None,
        restore_from_tier: false,
        alerts: Default::default(),
        data_dir: dir.path().to_path_buf(),
        http: addr,
        insecure: false,
        plugins_dir: None,
        limits: Default::default(),
        log: Default::default(),
        kafka: None,
        schema_registry: None,
        advertise: None,
        kafka_settings: Default::default(),
        auth: None,
        tls: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listeners = crate::server::Listeners {
        http: listener,
        kafka: None,
        schema_registry: None,
    };
    let server = tokio::spawn(crate::server::run(config, listeners, async {
        let _ = stop_rx.await;
    }));
    let c = Client::new(&format!("http://{addr}"));
    wait_healthy(&c).await?;
    println!(
        "sluice demo: server on http://{addr}, data in {}",
        dir.path().display()
    );
    set_up(&c).await?;
    let (seen, expected) = push_and_follow(&c).await?;
    println!();
    let dead = dead_letters(&c).await?;
    println!();
    let counted = window_counts(&c, expected + 1).await?;
    println!();
    for t in ["mask-events", "enrich-events", "activity-per-window"] {
        let st = c.get(&format!("/v1/transforms/{t}")).await?;
        println!(
            "transform {t}: {} v{} counters {}",
            st["status"].as_str().unwrap_or(""),
            st["version"],
            st["counters"]
        );
    }
    let _ = stop_tx.send(());
    server.await??;
    if seen != expected || dead != 1 || counted != expected + 1 {
        anyhow::bail!(
            "demo saw {seen} of {expected} enriched events, {dead} dead letters (expected 1) and {counted} of {} events counted in windows",
            expected + 1
        );
    }
    println!(
        "\ndemo complete: {seen} events masked and enriched, 1 dead-lettered, {counted} counted per user per window"
    );
    Ok(())
}

/// Topics, the users table, the two plugins and their deployments.
async fn set_up(c: &Client) -> anyhow::Result<()> {
    for (name, partitions, cleanup) in [
        ("user_activity_events", 3, "delete"),
        ("masked_events", 3, "delete"),
        ("enriched_events", 3, "delete"),
        ("activity_counts", 3, "delete"),
        ("users", 1, "compact"),
    ] {
        c.post(
            "/v1/topics",
            &json!({"name": name, "partitions": partitions, "cleanup": cleanup}),
        )
        .await?;
    }
    println!(
        "topics: user_activity_events → [mask] → masked_events → [enrich ⋈ users] → enriched_events"
    );
    println!("        masked_events → [window-count: per user per 1 s window] → activity_counts");
    let users: Vec<Value> = USERS
        .iter()
        .map(|(id, name, plan)| json!({"key": id, "value": {"name": name, "plan": plan}}))
        .collect();
    c.post("/v1/topics/users/records", &json!({ "records": users }))
        .await?;
    println!("table users: {} rows", USERS.len());
    for (name, bytes) in [
        ("mask", crate::plugins::MASK),
        ("enrich", crate::plugins::ENRICH),
        ("window-count", crate::plugins::WINDOW_COUNT),
    ] {
        let v = c
            .put_bytes(&format!("/v1/plugins/{name}"), bytes.to_vec())
            .await?;
        println!(
            "plugin {name} v{} uploaded ({} KiB, {})",
            v["version"],
            bytes.len() / 1024,
            short(&v["digest"])
        );
    }
    c.put(
        "/v1/transforms/mask-events",
        &json!({"plugin": "mask", "input": "user_activity_events", "outputs": ["masked_events"]}),
    )
    .await?;
    c.put(
        "/v1/transforms/enrich-events",
        &json!({"plugin": "enrich", "input": "masked_events", "outputs": ["enriched_events"],
                "tables": ["users"],
                "config": {"table": "users", "key_field": "user_id", "into": "user", "on_missing": "reject"}}),
    )
    .await?;
    // Event time = the record timestamp; a window closes once the watermark (latest event
    // time less 200 ms of allowed lateness) passes its end, or after 500 ms without input.
    c.put(
        "/v1/transforms/activity-per-window",
        &json!({"plugin": "window-count", "input": "masked_events", "outputs": ["activity_counts"],
                "config": {"window_ms": "1000"}, "allowed_lateness_ms": 200, "idle_timeout_ms": 500}),
    )
    .await?;
    println!("transforms deployed: mask-events, enrich-events, activity-per-window (stateful)\n");
    Ok(())
}

/// Follows the output, pushes the events a few at a time, and prints what comes out;
/// returns (events seen, events expected).
async fn push_and_follow(c: &Client) -> anyhow::Result<(usize, usize)> {
    // Follow the output before producing.
    let mut stream = c
        .stream("/v1/topics/enriched_events/stream?from=earliest")
        .await?
        .bytes_stream();
    let mut events = sample_events();
    events.push(json!({"user_id": "u-9999", "action": "login", "message": "Password: letmein"}));
    let expected = events.len() - 1;
    let producer = {
        let c = c.clone();
        tokio::spawn(async move {
            for chunk in events.chunks(4) {
                let recs: Vec<Value> = chunk
                    .iter()
                    .map(|e| json!({"key": e["user_id"], "value": e}))
                    .collect();
                let path = "/v1/topics/user_activity_events/records";
                if let Err(e) = c.post(path, &json!({ "records": recs })).await {
                    eprintln!("produce failed: {e}");
                }
                println!("→ pushed {} events", chunk.len());
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    let mut buf = Vec::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < expected && Instant::now() < deadline {
        let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await
        else {
            break;
        };
        buf.extend_from_slice(&chunk?);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let Some(data) = line.strip_prefix(b"data: ") else {
                continue;
            };
            let rec: Value = serde_json::from_slice(data.trim_ascii_end())?;
            let v: Value =
                serde_json::from_str(rec["value"].as_str().unwrap_or("{}")).unwrap_or_default();
            seen += 1;
            println!(
                "← enriched_events[p{}@{}] {} {:<11} {:<34} {:<22} user={}",
                rec["partition"],
                rec["offset"],
                v["user_id"].as_str().unwrap_or(""),
                v["action"].as_str().unwrap_or(""),
                v["message"].as_str().unwrap_or(""),
                v["email"].as_str().unwrap_or(""),
                v["user"]
            );
        }
    }
    producer.await?;
    Ok((seen, expected))
}

/// Prints the dead letters and returns how many there are.
async fn dead_letters(c: &Client) -> anyhow::Result<usize> {
    let mut dlq_records: Vec<Value> = Vec::new();
    for p in 0..3 {
        // The first read waits briefly for the dead letter to arrive.
        let wait = if p == 0 { 3000 } else { 0 };
        let more = c
            .get(&format!(
                "/v1/topics/masked_events.dlq/partitions/{p}/records?offset=0&wait_ms={wait}"
            ))
            .await?;
        dlq_records.extend(more["records"].as_array().cloned().unwrap_or_default());
    }
    for r in &dlq_records {
        let h = &r["headers"];
        println!(
            "✗ masked_events.dlq: {} — reason: {} (from {}/{}@{})",
            r["value"].as_str().unwrap_or(""),
            h["sluice-error"].as_str().unwrap_or(""),
            h["sluice-source-topic"].as_str().unwrap_or(""),
            h["sluice-source-partition"].as_str().unwrap_or(""),
            h["sluice-source-offset"].as_str().unwrap_or("")
        );
    }
    Ok(dlq_records.len())
}

/// Prints the per-user window counts as the windows close; returns the events counted.
async fn window_counts(c: &Client, events: usize) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut next = [0u64; 3];
    let mut counted = 0;
    while counted < events && Instant::now() < deadline {
        for (p, next) in next.iter_mut().enumerate() {
            let got = c
                .get(&format!(
                    "/v1/topics/activity_counts/partitions/{p}/records?offset={next}&wait_ms=200"
                ))
                .await?;
            for r in got["records"].as_array().into_iter().flatten() {
                let v: Value =
                    serde_json::from_str(r["value"].as_str().unwrap_or("{}")).unwrap_or_default();
                counted += v["count"].as_u64().unwrap_or(0) as usize;
                println!(
                    "◷ activity_counts: {:<7} window {}–{} UTC: {} event(s)",
                    v["key"].as_str().unwrap_or(""),
                    time_of_day(&v["window_start"]),
                    time_of_day(&v["window_end"]),
                    v["count"]
                );
            }
            *next = got["next_offset"].as_u64().unwrap_or(*next);
        }
    }
    Ok(counted)
}

/// `HH:MM:SS` of a time in ms since the epoch (UTC).
fn time_of_day(ms: &Value) -> String {
    let s = ms.as_i64().unwrap_or(0).div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn short(digest: &Value) -> String {
    digest.as_str().unwrap_or("").chars().take(19).collect()
}

async fn wait_healthy(client: &Client) -> anyhow::Result<()> {
    for _ in 0..200 {
        if client.get("/healthz").await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("server did not become healthy")
}
