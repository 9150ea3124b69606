//! `nexmark`: generates the Nexmark event stream (persons, auctions and bids of an online
//! auction; the `nexmark` crate, RisingWave's port of the Beam/Flink generator) into one
//! topic per event type, as JSON values with Flink's field names, each record keyed by what
//! the queries join and group on (persons by `id`, auctions by `seller`, bids by `auction`)
//! and timestamped at its event time (`dateTime`).
//!
//! Deterministic: the n-th event is always the same (the generator seeds each event from
//! its number, and the base time is fixed when the connector is created), so a crash and a
//! restart write exactly the events that were missing. Events go out in chunks; before a
//! chunk is appended, its first event number and the end offset of every partition it
//! writes are saved (fsync) to `nexmark.json`. A restart regenerates that chunk and appends
//! only the partitions whose end did not move: each partition gets one batch per chunk,
//! and an append is all or nothing. The topics are the connector's own while it runs
//! (producers are refused), so no other writer moves their ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nexmark::config::NexmarkConfig;
use nexmark::event::Event;
use serde::{Deserialize, Serialize};
use sluice_log::batch::Builder;
use sluice_log::{Log, Topic, now_ms};

use super::TaskEnv;

/// Events per chunk when generating as fast as possible (about 2 MB of JSON).
const CHUNK: u64 = 10_000;

/// What a `nexmark` connector takes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NexmarkSpec {
    /// Topic for person events (omitted: persons are generated but not written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persons: Option<String>,
    /// Topic for auction events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auctions: Option<String>,
    /// Topic for bid events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bids: Option<String>,
    /// Events to generate, all types counted (1 person, 3 auctions, 46 bids in 50); 0 =
    /// no end.
    #[serde(default)]
    pub events: u64,
    /// Events per second of wall-clock time; 0 = as fast as the log takes them.
    #[serde(default)]
    pub rate: u64,
    /// Event time of the first event (ms since the epoch); default: when the connector
    /// started first. Events are 100 µs of event time apart (10,000 per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_time_ms: Option<u64>,
}

impl NexmarkSpec {
    /// The topics written, persons, auctions, bids in that order.
    pub fn topics(&self) -> Vec<&str> {
        [&self.persons, &self.auctions, &self.bids]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.topics().is_empty() {
            return Err("nexmark: name at least one of persons, auctions and bids".into());
        }
        Ok(())
    }
}

/// Where generation stands (`nexmark.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct GenState {
    base_time_ms: u64,
    /// The first event of the chunk being appended (or next to generate).
    next: u64,
    /// The end (exclusive) of the chunk being appended, while `ends` is set.
    #[serde(default)]
    end: u64,
    /// End offsets before that chunk's appends: topic → partition → offset.
    ends: BTreeMap<String, BTreeMap<u32, u64>>,
}

/// The connector's topics by event type.
struct Targets {
    persons: Option<Arc<Topic>>,
    auctions: Option<Arc<Topic>>,
    bids: Option<Arc<Topic>>,
}

impl Targets {
    fn all(&self) -> impl Iterator<Item = &Arc<Topic>> {
        [&self.persons, &self.auctions, &self.bids]
            .into_iter()
            .flatten()
    }
}

/// Marks the connector's topics as its own (producers refused) or frees them.
pub(super) fn own(log: &Log, spec: &NexmarkSpec, name: &str, owned: bool) {
    let owner = format!("nexmark connector {name}");
    for t in spec.topics() {
        log.set_owner(t, owned.then_some(owner.as_str()));
    }
}

/// Runs until every event is written or the connector stops.
pub(super) async fn run(mut env: TaskEnv, spec: NexmarkSpec, log: Arc<Log>) {
    let topic = |t: &Option<String>| t.as_ref().and_then(|n| log.topic(n).ok());
    let targets = Arc::new(Targets {
        persons: topic(&spec.persons),
        auctions: topic(&spec.auctions),
        bids: topic(&spec.bids),
    });
    let path = env.dir.join("nexmark.json");
    let mut state = match read_state(&path).await {
        Ok(Some(s)) => s,
        Ok(None) => GenState {
            base_time_ms: spec.base_time_ms.unwrap_or(now_ms().max(0) as u64),
            ..GenState::default()
        },
        Err(e) => return env.health.failed(&env.name, &format!("{e}; not started")),
    };
    let config = Arc::new(nexmark_config(state.base_time_ms));
    let started = tokio::time::Instant::now();
    let first = state.next;
    let chunk = if spec.rate > 0 {
        (spec.rate / 20).clamp(1, CHUNK)
    } else {
        CHUNK
    };
    env.health.next_run_ms.store(0, Ordering::Relaxed);
    loop {
        env.health.generated.store(state.next, Ordering::Relaxed);
        if spec.events > 0 && state.next >= spec.events {
            tracing::info!(connector = %env.name, events = state.next, "nexmark: every event written");
            return;
        }
        if !env.wait_unpaused().await {
            return;
        }
        if spec.rate > 0 {
            // Paced from where this run started: the n-th event at n / rate seconds.
            let due = Duration::from_secs_f64((state.next - first) as f64 / spec.rate as f64);
            if !env.sleep(due.saturating_sub(started.elapsed())).await {
                return;
            }
        }
        // A chunk cut short by a crash (or a failed append) is completed as it was saved.
        let end = if state.ends.is_empty() {
            match spec.events {
                0 => state.next + chunk,
                n => (state.next + chunk).min(n),
            }
        } else {
            state.end
        };
        let (t, cfg, dir, s) = (
            targets.clone(),
            config.clone(),
            env.dir.clone(),
            state.clone(),
        );
        let done = tokio::task::spawn_blocking(move || write_chunk(&t, &cfg, &dir, s, end)).await;
        match done {
            Ok(Ok((next, written))) => {
                env.health
                    .records
                    .fetch_add(written as u64, Ordering::Relaxed);
                env.health.recovered();
                state.next = next;
                state.ends.clear();
            }
            Ok(Err(e)) => {
                env.health.failed(&env.name, &e);
                // The retry completes the chunk the saved place names (some partitions may
                // have it already).
                match read_state(&path).await {
                    Ok(Some(saved)) => state = saved,
                    Ok(None) => {}
                    Err(e) => return env.health.failed(&env.name, &e),
                }
                if !env.sleep(Duration::from_secs(1)).await {
                    return;
                }
            }
            Err(e) => return env.health.failed(&env.name, &e.to_string()),
        }
        if env.cancel.is_cancelled() {
            return;
        }
    }
}

/// The saved place, if there is one (an unreadable one is an error, not a fresh start).
async fn read_state(path: &std::path::Path) -> Result<Option<GenState>, String> {
    match tokio::fs::read(path).await {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The generator's settings: Flink's Nexmark vocabulary (upper-case states, capitalised
/// cities) at 10,000 events per second of event time.
fn nexmark_config(base_time_ms: u64) -> NexmarkConfig {
    let words = |s: &str| s.split(',').map(String::from).collect();
    NexmarkConfig {
        base_time: base_time_ms,
        us_states: words("AZ,CA,ID,OR,WA,WY"),
        us_cities: words(
            "Phoenix,Los Angeles,San Francisco,Boise,Portland,Bend,Redmond,Seattle,Kent,Cheyenne",
        ),
        first_names: words("Peter,Paul,Luke,John,Saul,Vicky,Kate,Julie,Sarah,Deiter,Walter"),
        last_names: words("Shultz,Abrams,Spencer,White,Bartels,Walton,Smith,Jones,Noris"),
        ..NexmarkConfig::default()
    }
}

/// The events `from..to` of the stream (a deterministic function of the numbers).
pub fn events(config: &NexmarkConfig, from: u64, to: u64) -> impl Iterator<Item = Event> {
    nexmark::EventGenerator::new(config.clone())
        .with_offset(from)
        .take(to.saturating_sub(from) as usize)
}

/// The generator settings of a stream based at `base_time_ms` (for tests and benches that
/// compute what a connector writes).
pub fn config_at(base_time_ms: u64) -> NexmarkConfig {
    nexmark_config(base_time_ms)
}

/// Appends the events `state.next..end`, after saving where that starts (or, when the
/// saved state already names this chunk, completing it). Returns the next event and how
/// many records were written.
fn write_chunk(
    targets: &Targets,
    config: &NexmarkConfig,
    dir: &std::path::Path,
    mut state: GenState,
    end: u64,
) -> Result<(u64, usize), String> {
    // Batches per topic and partition.
    let mut batches: BTreeMap<(String, u32), Builder> = BTreeMap::new();
    let mut value = Vec::with_capacity(512);
    for e in events(config, state.next, end) {
        let (topic, key) = match &e {
            Event::Person(p) => (&targets.persons, p.id),
            Event::Auction(a) => (&targets.auctions, a.seller),
            Event::Bid(b) => (&targets.bids, b.auction),
        };
        let Some(topic) = topic else { continue };
        value.clear();
        to_json(&e, &mut value).map_err(|e| e.to_string())?;
        let key = itoa::Buffer::new().format(key).as_bytes().to_vec();
        let p = topic.pick_partition(Some(&key));
        batches.entry((topic.name.clone(), p)).or_default().push(
            e.timestamp() as i64,
            Some(&key),
            Some(&value),
            std::iter::empty(),
        );
    }
    let resuming = !state.ends.is_empty();
    if !resuming {
        for t in targets.all() {
            let ends = t
                .partitions
                .iter()
                .map(|p| (p.id, p.high_watermark()))
                .collect();
            state.ends.insert(t.name.clone(), ends);
        }
        state.end = end;
        let bytes = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
        sluice_common::fs::write_file(&dir.join("nexmark.json"), &bytes)
            .and_then(|()| sluice_common::fs::sync_dir(dir))
            .map_err(|e| format!("saving the generator's place: {e}"))?;
    }
    let mut written = 0;
    for t in targets.all() {
        for part in &t.partitions {
            let Some(b) = batches.remove(&(t.name.clone(), part.id)) else {
                continue;
            };
            let before = state
                .ends
                .get(&t.name)
                .and_then(|e| e.get(&part.id))
                .copied()
                .unwrap_or(0);
            if resuming && part.high_watermark() > before {
                continue; // this partition's batch landed before the crash
            }
            let n = b.len();
            part.append(b.finish())
                .map_err(|e| format!("appending to {}/{}: {e}", t.name, part.id))?;
            written += n;
        }
    }
    Ok((end, written))
}

/// One event as the JSON value Flink's Nexmark tables read (times in ms).
fn to_json(e: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct PersonJson<'a> {
        id: usize,
        name: &'a str,
        email_address: &'a str,
        credit_card: &'a str,
        city: &'a str,
        state: &'a str,
        date_time: u64,
        extra: &'a str,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct AuctionJson<'a> {
        id: usize,
        item_name: &'a str,
        description: &'a str,
        initial_bid: usize,
        reserve: usize,
        date_time: u64,
        expires: u64,
        seller: usize,
        category: usize,
        extra: &'a str,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct BidJson<'a> {
        auction: usize,
        bidder: usize,
        price: usize,
        channel: &'a str,
        url: &'a str,
        date_time: u64,
        extra: &'a str,
    }
    match e {
        Event::Person(p) => serde_json::to_writer(
            out,
            &PersonJson {
                id: p.id,
                name: &p.name,
                email_address: &p.email_address,
                credit_card: &p.credit_card,
                city: &p.city,
                state: &p.state,
                date_time: p.date_time,
                extra: &p.extra,
            },
        ),
        Event::Auction(a) => serde_json::to_writer(
            out,
            &AuctionJson {
                id: a.id,
                item_name: &a.item_name,
                description: &a.description,
                initial_bid: a.initial_bid,
                reserve: a.reserve,
                date_time: a.date_time,
                expires: a.expires,
                seller: a.seller,
                category: a.category,
                extra: &a.extra,
            },
        ),
        Event::Bid(b) => serde_json::to_writer(
            out,
            &BidJson {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: &b.channel,
                url: &b.url,
                date_time: b.date_time,
                extra: &b.extra,
            },
        ),
    }
}

/// An event as its JSON value (what the connector writes), for tests and benches.
pub fn event_json(e: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = to_json(e, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_a_function_of_the_event_numbers() {
        let c = config_at(1_700_000_000_000);
        let whole: Vec<Event> = events(&c, 0, 500).collect();
        let later: Vec<Event> = events(&c, 200, 500).collect();
        assert_eq!(&whole[200..], &later[..]);
        let persons = whole
            .iter()
            .filter(|e| matches!(e, Event::Person(_)))
            .count();
        assert_eq!(persons, 10, "1 person in 50 events");
        let v: serde_json::Value = serde_json::from_slice(&event_json(&whole[0])).unwrap();
        assert!(
            v["emailAddress"].is_string() && v["dateTime"].is_u64(),
            "{v}"
        );
        assert!(
            ["AZ", "CA", "ID", "OR", "WA", "WY"].contains(&v["state"].as_str().unwrap()),
            "{v}"
        );
    }
}
