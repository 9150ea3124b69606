//! Groups each key's records into sessions of event time: a session is records less than
//! `gap_ms` apart, and it closes when the watermark passes its last record + `gap_ms`.
//! Then it emits `{"key","session_start","session_end","count"}` (session_end = the last
//! record's time + the gap), keyed by the key, to the first output. Out-of-order records
//! that bridge two sessions merge them.
//!
//! Config: `gap_ms` (default 1800000, thirty minutes), `key_field` (a JSON field of the
//! value — name, dotted path or JSON pointer; default: the record key).

use sluice_sdk::window::Sessions;
use sluice_sdk::{Error, OutRecord, Outcome, Record, Timer, config, config_ms};

#[derive(Debug)]
pub struct Sessionize {
    sessions: Sessions<u64>,
    key_field: Option<String>,
}

pub fn setup() -> Result<Sessionize, Error> {
    let gap = config_ms("gap_ms", 1_800_000)?;
    Ok(Sessionize {
        sessions: Sessions::new("session", gap),
        key_field: config("key_field"),
    })
}

pub fn track(s: &Sessionize, r: &Record) -> Result<Outcome, Error> {
    let key = s.key_field.as_deref();
    let key = r.key_or_field(key)?.unwrap_or_default();
    s.sessions.add(&key, r.event_time(), |n| *n += 1)?;
    Ok(Outcome::drop())
}

pub fn close(s: &Sessionize, t: &Timer) -> Result<Outcome, Error> {
    let Some(c) = s.sessions.close(t)? else {
        return Ok(Outcome::drop());
    };
    let v = serde_json::json!({
        "key": c.key_str(),
        "session_start": c.window.start,
        "session_end": c.window.end,
        "count": c.value,
    });
    Ok(Outcome::emit(OutRecord::new(v.to_string()).with_key(c.key)))
}

sluice_sdk::export_transform!(track, init = setup, timers = close);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, TestRecord};

    fn at(key: &str, t: i64) -> TestRecord {
        TestRecord {
            timestamp: t,
            ..TestRecord::value("x").with_key(key)
        }
    }

    fn closed(fired: &[sluice_sdk::testing::Fired]) -> Vec<serde_json::Value> {
        fired
            .iter()
            .flat_map(|f| f.values())
            .map(|v| serde_json::from_str(v).unwrap())
            .collect()
    }

    #[test]
    fn case_table() {
        Harness::with_init(setup, track)
            .timers(close)
            .run_suites(include_str!("../cases.json"));
    }

    #[test]
    fn sessions_close_after_the_gap_and_a_late_bridge_merges_two() {
        let h = Harness::with_init(setup, track)
            .config("gap_ms", "100")
            .timers(close)
            .allowed_lateness(1_000);
        let mut s = h.stream().unwrap();
        s.push(&[
            at("u", 1_000),
            at("u", 1_050),
            at("u", 1_200),
            at("v", 1_010),
        ])
        .unwrap();
        // [1000, 1150) and [1200, 1300) for u; a record at 1120 bridges them.
        s.push(&[at("u", 1_120)]).unwrap();
        let fired = s.advance(5_000).unwrap();
        let mut got = closed(&fired);
        got.sort_by_key(|v| v["key"].as_str().unwrap().to_string());
        assert_eq!(
            got,
            [
                serde_json::json!({"key": "u", "session_start": 1000, "session_end": 1300, "count": 4}),
                serde_json::json!({"key": "v", "session_start": 1010, "session_end": 1110, "count": 1}),
            ]
        );
        assert!(s.state().is_empty() && s.timers().is_empty());
    }
}
