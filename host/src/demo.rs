//! `sluice demo`: the main job on the embedded default, end to end in one command.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::Client;
use crate::config::ServerConfig;

/// Sample user-activity events of the kind Sluice is built to clean up.
pub fn sample_events() -> Vec<Value> {
    let users = ["u-1001", "u-1002", "u-1003", "u-1004"];
    let actions = ["login", "view_item", "add_to_cart", "checkout", "logout"];
    (0..12)
        .map(|i| {
            let user = users[i % users.len()];
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

/// Starts a server in a temporary directory, pushes sample events, prints them as they
/// arrive on the other side, and stops.
pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        http: addr,
        insecure: false,
        limits: Default::default(),
        log: Default::default(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::run(config, listener, async {
        let _ = stop_rx.await;
    }));
    let client = Client::new(&format!("http://{addr}"));
    wait_healthy(&client).await?;

    let topic = "user_activity_events";
    client
        .post("/v1/topics", &json!({"name": topic, "partitions": 3}))
        .await?;
    println!(
        "created topic {topic} (3 partitions) in {}",
        dir.path().display()
    );
    let events = sample_events();
    let records: Vec<Value> = events
        .iter()
        .map(|e| json!({"key": e["user_id"], "value": e}))
        .collect();
    let resp = client
        .post(
            &format!("/v1/topics/{topic}/records"),
            &json!({ "records": records }),
        )
        .await?;
    println!(
        "produced {} events",
        resp["offsets"].as_array().map_or(0, Vec::len)
    );

    let mut seen = 0;
    for p in 0..3 {
        let v = client
            .get(&format!(
                "/v1/topics/{topic}/partitions/{p}/records?offset=0&max=100"
            ))
            .await?;
        for r in v["records"].as_array().into_iter().flatten() {
            seen += 1;
            println!(
                "  [p{p}@{}] key={} {}",
                r["offset"],
                r["key"],
                r["value"].as_str().unwrap_or("")
            );
        }
    }
    println!("read back {seen} of {} events", events.len());
    let _ = stop_tx.send(());
    server.await??;
    if seen != events.len() {
        anyhow::bail!("demo read back {seen} events, expected {}", events.len());
    }
    Ok(())
}

async fn wait_healthy(client: &Client) -> anyhow::Result<()> {
    for _ in 0..100 {
        if client.get("/healthz").await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("server did not become healthy")
}
