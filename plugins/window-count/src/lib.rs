//! Counts records per key per tumbling window of event time. When the partition's
//! watermark passes a window's end, emits `{"key","window_start","window_end","count"}`
//! (keyed by the key, timestamped at the window's end) to the first output.
//!
//! Config: `window_ms` (window size, default 60000), `key_field` (a JSON field of the value
//! to count by — name, dotted path or JSON pointer; default: the record key). Records
//! without a key count under `""`.

use sluice_sdk::window::Windows;
use sluice_sdk::{Error, OutRecord, Outcome, Record, Timer, config, config_ms};

#[derive(Debug)]
pub struct Counter {
    windows: Windows<u64>,
    key_field: Option<String>,
}

pub fn setup() -> Result<Counter, Error> {
    Ok(Counter {
        windows: Windows::tumbling("count", config_ms("window_ms", 60_000)?),
        key_field: config("key_field"),
    })
}

pub fn count(c: &Counter, r: &Record) -> Result<Outcome, Error> {
    let key = r.key_or_field(c.key_field.as_deref())?.unwrap_or_default();
    c.windows.add(&key, r.event_time(), |n| *n += 1)?;
    Ok(Outcome::drop())
}

pub fn close(c: &Counter, t: &Timer) -> Result<Outcome, Error> {
    let Some(w) = c.windows.close(t)? else {
        return Ok(Outcome::drop());
    };
    let v = serde_json::json!({
        "key": w.key_str(),
        "window_start": w.window.start,
        "window_end": w.window.end,
        "count": w.value,
    });
    Ok(Outcome::emit(OutRecord::new(v.to_string()).with_key(w.key)))
}

sluice_sdk::export_transform!(count, init = setup, timers = close);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, TestOutcome, TestRecord};

    fn at(key: &str, t: i64) -> TestRecord {
        TestRecord {
            timestamp: t,
            ..TestRecord::value("x").with_key(key)
        }
    }

    #[test]
    fn case_table() {
        Harness::with_init(setup, count)
            .timers(close)
            .run_suites(include_str!("../cases.json"));
    }

    #[test]
    fn counts_out_of_order_events_per_window_and_emits_when_the_watermark_passes() {
        let h = Harness::with_init(setup, count)
            .config("window_ms", "1000")
            .timers(close)
            .allowed_lateness(500);
        let mut s = h.stream().unwrap();
        let p = s
            .push(&[at("a", 1_100), at("b", 1_900), at("a", 1_400)])
            .unwrap();
        assert!(p.fired.is_empty());
        // Out of order but within the lateness: still window [1000, 2000).
        let p = s.push(&[at("a", 2_300), at("a", 1_850)]).unwrap();
        assert!(p.fired.is_empty(), "watermark 1800 < 2000");
        // Watermark 2100: the first window closes.
        let p = s.push(&[at("b", 2_600)]).unwrap();
        let got: Vec<serde_json::Value> = p
            .fired
            .iter()
            .map(|f| serde_json::from_str(f.values()[0]).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                serde_json::json!({"key": "a", "window_start": 1000, "window_end": 2000, "count": 3}),
                serde_json::json!({"key": "b", "window_start": 1000, "window_end": 2000, "count": 1}),
            ]
        );
        // Late: before the watermark (2100), never counted.
        let p = s.push(&[at("a", 1_999)]).unwrap();
        assert_eq!(p.outcomes, [TestOutcome::Late]);
        let fired = s.advance(10_000).unwrap();
        let counts: Vec<&str> = fired.iter().flat_map(|f| f.values()).collect();
        assert_eq!(counts.len(), 2);
        assert!(counts[0].contains("\"count\":1") && counts[0].contains("\"key\":\"a\""));
        assert!(counts[1].contains("\"window_end\":3000") && counts[1].contains("\"key\":\"b\""));
        assert!(
            s.state().is_empty() && s.timers().is_empty(),
            "closed windows leave nothing"
        );
    }

    #[test]
    fn bad_window_size_fails_init() {
        let e = Harness::with_init(setup, count)
            .config("window_ms", "0")
            .try_run(&[])
            .unwrap_err();
        assert!(e.contains("window_ms"), "{e}");
    }
}
