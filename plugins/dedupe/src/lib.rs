//! Drops a record whose id was already seen on its partition within the last `window_ms`
//! of event time; the first one passes on unchanged. Ids are forgotten when the watermark
//! passes their window, so state stays as large as the ids of one window.
//!
//! Config: `id_field` (a JSON field of the value holding the id — name, dotted path or JSON
//! pointer; default: the record key), `window_ms` (default 600000, ten minutes). A record
//! without an id is rejected.

use sluice_sdk::{Error, Outcome, Record, Timer, config, config_ms, state, timers};

#[derive(Debug)]
pub struct Dedupe {
    id_field: Option<String>,
    window_ms: i64,
}

pub fn setup() -> Result<Dedupe, Error> {
    let window_ms = config_ms("window_ms", 600_000)?;
    Ok(Dedupe {
        id_field: config("id_field"),
        window_ms,
    })
}

fn id_of(d: &Dedupe, r: &Record) -> Result<Vec<u8>, Error> {
    r.key_or_field(d.id_field.as_deref())?
        .filter(|i| !i.is_empty())
        .map(|i| i.into_owned())
        .ok_or_else(|| Error::new("the record has no id"))
}

pub fn dedupe(d: &Dedupe, r: &Record) -> Result<Outcome, Error> {
    let id = id_of(d, r)?;
    let t = r.event_time();
    // The event time of the id's first record.
    let seen: Option<i64> = state::get_json(&id)?;
    if seen.is_some_and(|s| t < s.saturating_add(d.window_ms)) {
        return Ok(Outcome::drop());
    }
    state::put_json(&id, t)?;
    timers::set(&id, t.saturating_add(d.window_ms));
    Ok(Outcome::keep())
}

/// Forgets an id whose window has passed (unless a later record started a new one).
pub fn expire(d: &Dedupe, t: &Timer) -> Result<Outcome, Error> {
    let seen: Option<i64> = state::get_json(t.key())?;
    if seen.is_some_and(|s| s.saturating_add(d.window_ms) == t.at()) {
        state::delete(t.key());
    }
    Ok(Outcome::drop())
}

sluice_sdk::export_transform!(dedupe, init = setup, timers = expire);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, TestOutcome, TestRecord};

    fn rec(id: &str, t: i64) -> TestRecord {
        TestRecord {
            timestamp: t,
            ..TestRecord::json(&serde_json::json!({"id": id}))
        }
    }

    #[test]
    fn case_table() {
        Harness::with_init(setup, dedupe)
            .timers(expire)
            .run_suites(include_str!("../cases.json"));
    }

    #[test]
    fn duplicates_within_the_window_are_dropped_and_ids_expire() {
        let h = Harness::with_init(setup, dedupe)
            .config("id_field", "id")
            .config("window_ms", "1000")
            .timers(expire)
            .allowed_lateness(0);
        let mut s = h.stream().unwrap();
        let p = s
            .push(&[rec("a", 100), rec("b", 150), rec("a", 900)])
            .unwrap();
        assert!(matches!(p.outcomes[0], TestOutcome::Emitted(_)));
        assert!(matches!(p.outcomes[1], TestOutcome::Emitted(_)));
        assert_eq!(p.outcomes[2], TestOutcome::Dropped);
        assert_eq!(s.state().len(), 2);
        // Past a's window: a new first record.
        let p = s.push(&[rec("a", 1_200)]).unwrap();
        assert!(matches!(p.outcomes[0], TestOutcome::Emitted(_)));
        // b's window ended at 1150: forgotten; a's restarted at 1200 and is kept.
        assert_eq!(s.state().len(), 1);
        let p = s
            .push(&[TestRecord::json(&serde_json::json!({"x": 1}))])
            .unwrap();
        assert!(matches!(&p.outcomes[0], TestOutcome::Rejected(r) if r.contains("no id")));
    }
}
