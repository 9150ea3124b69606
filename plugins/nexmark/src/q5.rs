//! q5, hot items: `q5-count` counts bids per auction per hopping window; `q5-hot` keeps,
//! per window, the highest count and the auctions that have it, and emits them when the
//! watermark reaches the window's end.
//!
//! q5-count state: the window helper's (`q5`, one count per auction and window). q5-hot
//! state: `h/<starttime>` the window's end, highest count and its auctions, with a timer
//! at the end.

use serde::{Deserialize, Serialize};
use sluice_sdk::window::Windows;
use sluice_sdk::{Error, Outcome, Record, Timer, state, timers};

use crate::{decimal, emit_all, json_record, key, or_reject, parse, parse_decimal};

const HOT: &[u8] = b"h/";

/// What q5-count reads of a bid.
#[derive(Debug, Deserialize)]
struct Bid {
    auction: i64,
}

/// q5-count's result, q5-hot's input and result.
#[derive(Debug, Serialize, Deserialize)]
struct AuctionBids {
    auction: i64,
    num: u64,
    starttime: i64,
    endtime: i64,
}

/// A window's leaders so far.
#[derive(Debug, Serialize, Deserialize)]
struct Hot {
    start: i64,
    end: i64,
    max: u64,
    auctions: Vec<i64>,
}

pub(crate) fn count(w: &Windows<u64>, r: &Record) -> Result<Outcome, Error> {
    let b: Bid = or_reject!(parse(r, "bid"));
    let mut text = itoa::Buffer::new();
    w.add(text.format(b.auction).as_bytes(), r.event_time(), |n| {
        *n += 1
    })?;
    Ok(Outcome::drop())
}

pub(crate) fn close_count(w: &Windows<u64>, t: &Timer) -> Result<Outcome, Error> {
    let Some(c) = w.close(t)? else {
        return Ok(Outcome::drop());
    };
    let Some(auction) = parse_decimal(&c.key) else {
        return Ok(Outcome::drop());
    };
    let row = AuctionBids {
        auction,
        num: c.value,
        starttime: c.window.start,
        endtime: c.window.end,
    };
    let mut out = json_record(&row, decimal(c.window.start))?;
    out.timestamp = Some(c.window.end.saturating_sub(1));
    Ok(Outcome::emit(out))
}

pub(crate) fn hot(r: &Record) -> Result<Outcome, Error> {
    let c: AuctionBids = or_reject!(parse(r, "q5-count result"));
    let k = key(HOT, c.starttime);
    let fresh = state::update(&k, |h: &mut Option<Hot>| {
        let fresh = h.is_none();
        let h = h.get_or_insert_with(|| Hot {
            start: c.starttime,
            end: c.endtime,
            max: c.num,
            auctions: Vec::new(),
        });
        if c.num > h.max {
            h.max = c.num;
            h.auctions.clear();
        }
        if c.num == h.max {
            h.auctions.push(c.auction);
        }
        fresh
    })?;
    if fresh {
        timers::set(&k, c.endtime);
    }
    Ok(Outcome::drop())
}

pub(crate) fn fire_hot(t: &Timer) -> Result<Outcome, Error> {
    if !t.key().starts_with(HOT) {
        return Ok(Outcome::drop());
    }
    let Some(h) = state::take_json::<Hot>(t.key())? else {
        return Ok(Outcome::drop());
    };
    let rows = h.auctions.iter().map(|a| {
        let row = AuctionBids {
            auction: *a,
            num: h.max,
            starttime: h.start,
            endtime: h.end,
        };
        let mut out = json_record(&row, decimal(*a))?;
        out.timestamp = Some(h.end.saturating_sub(1));
        Ok(out)
    });
    Ok(emit_all(rows.collect::<Result<Vec<_>, Error>>()?))
}

#[cfg(test)]
mod tests {
    use crate::{fire, process, setup};
    use sluice_sdk::testing::{Harness, TestRecord};

    #[test]
    fn every_bid_counts_in_size_over_slide_windows() {
        let h = Harness::with_init(setup, process)
            .config("query", "q5-count")
            .timers(fire);
        let mut s = h.stream().unwrap();
        let bid = TestRecord {
            timestamp: 10_500,
            ..TestRecord::value(r#"{"auction":7,"bidder":1,"price":1,"dateTime":10500}"#)
        };
        s.push(&[bid]).unwrap();
        let fired = s.advance(100_000).unwrap();
        let windows: Vec<(i64, String)> = fired
            .iter()
            .flat_map(|f| match &f.outcome {
                sluice_sdk::testing::TestOutcome::Emitted(e) => e.clone(),
                _ => Vec::new(),
            })
            .map(|e| (e.timestamp, String::from_utf8(e.key.unwrap()).unwrap()))
            .collect();
        // Default 10 s windows every 2 s: the five that hold 10.5 s, results at end − 1.
        let want: Vec<(i64, String)> = [2_000, 4_000, 6_000, 8_000, 10_000]
            .iter()
            .map(|start| (start + 10_000 - 1, start.to_string()))
            .collect();
        assert_eq!(windows, want);
    }
}
