//! q4, average closing price per category: `q4-join` finds each auction's winning bid
//! (the highest among bids within its `[dateTime, expires]`) when it closes, `q4-avg`
//! averages them per category.
//!
//! q4-join state, per auction id: `a/<id>` the open auction (category, start, expiry, the
//! highest price so far), with a timer at `expires + 1`; `b/<id>` the bids that came
//! before their auction, with a timer just after the latest of them. Timers are one past
//! the time they guard because the watermark reaching `t` still lets events at `t` in:
//! a bid at exactly `expires` counts, and an auction starting at a bid's time claims it.
//! q4-avg state: `c/<category>` the sum and count.

use serde::{Deserialize, Serialize};
use sluice_sdk::{Error, Outcome, Record, Timer, state, timers};

use crate::{Auction, decimal, json_record, key, or_reject, parse, parse_decimal};

const OPEN: &[u8] = b"a/";
const EARLY: &[u8] = b"b/";
const CATEGORY: &[u8] = b"c/";

/// An auction that has not closed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Open {
    category: i64,
    start: i64,
    expires: i64,
    /// The highest price among the bids in `[start, expires]` so far.
    max: Option<i64>,
}

impl Open {
    /// Counts a bid at `at` if it is within the auction's time.
    fn offer(&mut self, at: i64, price: i64) {
        if (self.start..=self.expires).contains(&at) {
            self.max = Some(self.max.map_or(price, |m| m.max(price)));
        }
    }
}

/// Bids that came before their auction: (dateTime, price), and the latest dateTime.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Early {
    latest: i64,
    bids: Vec<(i64, i64)>,
}

/// What q4 reads of a bid.
#[derive(Debug, Deserialize)]
struct Bid {
    auction: i64,
    price: i64,
    #[serde(rename = "dateTime")]
    date_time: i64,
}

/// q4-join's result, and q4-avg's input.
#[derive(Debug, Serialize, Deserialize)]
struct Final {
    auction: i64,
    category: i64,
    #[serde(rename = "final")]
    price: i64,
}

#[derive(Debug, Serialize)]
struct Average {
    category: i64,
    avg: i64,
    sum: i64,
    count: i64,
}

pub(crate) fn auction(r: &Record) -> Result<Outcome, Error> {
    let a: Auction = or_reject!(parse(r, "auction"));
    let open_key = key(OPEN, a.id);
    // A repeated auction changes nothing (its bids are already counted).
    if state::get_json::<Open>(&open_key)?.is_some() {
        return Ok(Outcome::drop());
    }
    let mut open = Open {
        category: a.category,
        start: a.date_time,
        expires: a.expires,
        max: None,
    };
    let early_key = key(EARLY, a.id);
    if let Some(early) = state::take_json::<Early>(&early_key)? {
        for (at, price) in early.bids {
            open.offer(at, price);
        }
        timers::cancel(&early_key, early.latest.saturating_add(1));
    }
    state::put_json(&open_key, open)?;
    timers::set(&open_key, a.expires.saturating_add(1));
    Ok(Outcome::drop())
}

pub(crate) fn bid(r: &Record) -> Result<Outcome, Error> {
    let b: Bid = or_reject!(parse(r, "bid"));
    let open_key = key(OPEN, b.auction);
    if let Some(mut open) = state::get_json::<Open>(&open_key)? {
        let before = open.max;
        open.offer(b.date_time, b.price);
        if open.max != before {
            state::put_json(&open_key, open)?;
        }
        return Ok(Outcome::drop());
    }
    // The auction has not come (its input is behind, so it is no later than the
    // watermark of this bid's input): keep the bid for it until the watermark passes it.
    let early_key = key(EARLY, b.auction);
    let moved = state::update(&early_key, |e: &mut Option<Early>| {
        let before = e.as_ref().map(|e| e.latest);
        let e = e.get_or_insert_with(Early::default);
        e.latest = before.map_or(b.date_time, |l| l.max(b.date_time));
        e.bids.push((b.date_time, b.price));
        (before, e.latest)
    })?;
    match moved {
        (Some(before), latest) if before == latest => {}
        (before, latest) => {
            if let Some(before) = before {
                timers::cancel(&early_key, before.saturating_add(1));
            }
            timers::set(&early_key, latest.saturating_add(1));
        }
    }
    Ok(Outcome::drop())
}

pub(crate) fn fire(t: &Timer) -> Result<Outcome, Error> {
    if let Some(id) = t.key().strip_prefix(OPEN) {
        let closed = state::update(t.key(), |o: &mut Option<Open>| match o {
            Some(open) if open.expires.saturating_add(1) == t.at() => o.take(),
            _ => None,
        })?;
        let (Some(open), Some(auction)) = (closed, parse_decimal(id)) else {
            return Ok(Outcome::drop());
        };
        // Inner join: an auction without a bid in its time has no result.
        let Some(price) = open.max else {
            return Ok(Outcome::drop());
        };
        let row = Final {
            auction,
            category: open.category,
            price,
        };
        let mut out = json_record(&row, decimal(open.category))?;
        out.timestamp = Some(open.expires);
        return Ok(Outcome::emit(out));
    }
    if t.key().starts_with(EARLY) {
        // The watermark passed the latest early bid: its auction can no longer claim it.
        state::update(t.key(), |e: &mut Option<Early>| {
            if e.as_ref().is_some_and(|e| e.latest < t.at()) {
                *e = None;
            }
        })?;
    }
    Ok(Outcome::drop())
}

pub(crate) fn average(r: &Record) -> Result<Outcome, Error> {
    let f: Final = or_reject!(parse(r, "q4-join result"));
    let (sum, count) = state::update(&key(CATEGORY, f.category), |s: &mut Option<(i64, i64)>| {
        let (sum, count) = s.get_or_insert((0, 0));
        *sum = sum.saturating_add(f.price);
        *count += 1;
        (*sum, *count)
    })?;
    let row = Average {
        category: f.category,
        avg: sum / count,
        sum,
        count,
    };
    Ok(Outcome::emit(json_record(&row, decimal(f.category))?))
}

#[cfg(test)]
mod tests {
    use crate::{fire, process, setup};
    use serde_json::json;
    use sluice_sdk::testing::{Harness, TestRecord};

    fn at(topic: &str, t: i64, v: serde_json::Value) -> TestRecord {
        TestRecord {
            timestamp: t,
            ..TestRecord::json(&v).with_topic(topic)
        }
    }

    fn bid(auction: i64, t: i64, price: i64) -> TestRecord {
        let v = json!({"auction": auction, "bidder": 1, "price": price, "dateTime": t});
        at("bids", t, v)
    }

    fn auction(id: i64, t: i64, expires: i64) -> TestRecord {
        let v = json!({"id": id, "seller": 1, "category": 3, "dateTime": t, "expires": expires});
        at("auctions", t, v)
    }

    #[test]
    fn early_bids_wait_for_their_auction_and_nothing_is_left_behind() {
        let h = Harness::with_init(setup, process)
            .config("query", "q4-join")
            .timers(fire)
            .allowed_lateness(1_000);
        let mut s = h.stream().unwrap();
        // Bids for auction 1 before it; bids for auction 2, which never comes.
        s.push(&[bid(1, 1_500, 10), bid(1, 1_200, 30), bid(2, 1_300, 5)])
            .unwrap();
        assert_eq!(
            s.timers().len(),
            2,
            "one timer per early list: {:?}",
            s.timers()
        );
        s.push(&[bid(1, 1_700, 20)]).unwrap();
        let timers: Vec<i64> = s.timers().iter().map(|t| t.0).collect();
        assert_eq!(
            timers,
            [1_301, 1_701],
            "the timer moved with the latest bid"
        );
        // The auction starts after the bid of 30: the winner is 20.
        s.push(&[auction(1, 1_250, 1_900)]).unwrap();
        assert!(s.get(b"b/1").is_none());
        let fired = s.advance(5_000).unwrap();
        let values: Vec<&str> = fired.iter().flat_map(|f| f.values()).collect();
        assert_eq!(values, [r#"{"auction":1,"category":3,"final":20}"#]);
        assert!(
            s.state().is_empty() && s.timers().is_empty(),
            "{:?}",
            s.state()
        );
    }

    #[test]
    fn averages_round_down() {
        let h = Harness::with_init(setup, process).config("query", "q4-avg");
        let f =
            |price: i64| TestRecord::json(&json!({"auction": 1, "category": 2, "final": price}));
        let out = h.run(&[f(3), f(4), f(-9)]);
        assert_eq!(
            out[1].values(),
            [r#"{"category":2,"avg":3,"sum":7,"count":2}"#]
        );
        // Flink's AVG of BIGINT truncates towards zero, as Rust's division does.
        assert_eq!(
            out[2].values(),
            [r#"{"category":2,"avg":0,"sum":-2,"count":3}"#]
        );
    }
}
