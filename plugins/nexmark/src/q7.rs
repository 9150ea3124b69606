//! q7, highest bid: `q7-local` keeps, per tumbling window of its partition, the highest
//! price and the bids at it; `q7-max` merges those of every partition per window and emits
//! the bids at the overall highest price when the watermark reaches the window's end.
//!
//! q7-local state: the window helper's (`q7`, one accumulator per window). q7-max state:
//! `m/<end>` the window's highest price and bids, with a timer at the end.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sluice_sdk::window::Windows;
use sluice_sdk::{Error, OutRecord, Outcome, Record, Timer, state, timers};

use crate::{decimal, emit_all, key, or_reject, parse, parse_decimal};

const MAX: &[u8] = b"m/";

/// A bid as q7 reads it, and its results (strings borrowed from the record unless
/// escaped).
#[derive(Debug, Deserialize, Serialize)]
struct Bid<'a> {
    auction: i64,
    price: i64,
    bidder: i64,
    #[serde(rename = "dateTime")]
    date_time: i64,
    #[serde(borrow, default)]
    extra: Cow<'a, str>,
}

/// A bid at the highest price, kept until its window closes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    auction: i64,
    bidder: i64,
    #[serde(rename = "dateTime")]
    date_time: i64,
    extra: String,
}

/// The highest price of a window and the bids at it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MaxBids {
    price: i64,
    bids: Vec<Kept>,
}

impl MaxBids {
    /// Counts a bid: a higher price replaces the bids kept, an equal one joins them (the
    /// bid is copied only then).
    fn offer(&mut self, b: &Bid) {
        if self.bids.is_empty() || b.price > self.price {
            self.price = b.price;
            self.bids.clear();
        } else if b.price < self.price {
            return;
        }
        self.bids.push(Kept {
            auction: b.auction,
            bidder: b.bidder,
            date_time: b.date_time,
            extra: b.extra.clone().into_owned(),
        });
    }

    /// One record per bid, keyed by the window's end and timestamped at its last ms.
    fn emit(&self, end: i64) -> Result<Outcome, Error> {
        let rows = self.bids.iter().map(|k| {
            let row = Bid {
                auction: k.auction,
                price: self.price,
                bidder: k.bidder,
                date_time: k.date_time,
                extra: Cow::Borrowed(&k.extra),
            };
            Ok(OutRecord {
                key: Some(decimal(end)),
                value: Some(serde_json::to_vec(&row)?),
                headers: Vec::new(),
                timestamp: Some(end.saturating_sub(1)),
            })
        });
        Ok(emit_all(rows.collect::<Result<Vec<_>, Error>>()?))
    }
}

pub(crate) fn local(w: &Windows<MaxBids>, r: &Record) -> Result<Outcome, Error> {
    let b: Bid = or_reject!(parse(r, "bid"));
    // One accumulator per window for the whole partition: the empty key.
    w.add(b"", r.event_time(), |m| m.offer(&b))?;
    Ok(Outcome::drop())
}

pub(crate) fn close_local(w: &Windows<MaxBids>, t: &Timer) -> Result<Outcome, Error> {
    match w.close(t)? {
        Some(c) => c.value.emit(c.window.end),
        None => Ok(Outcome::drop()),
    }
}

pub(crate) fn max(size: i64, r: &Record) -> Result<Outcome, Error> {
    let b: Bid = or_reject!(parse(r, "q7-local result"));
    let end = r.key().and_then(parse_decimal).unwrap_or_else(|| {
        let start = b.date_time.saturating_sub(b.date_time.rem_euclid(size));
        start.saturating_add(size)
    });
    let k = key(MAX, end);
    let fresh = state::update(&k, |m: &mut Option<MaxBids>| {
        let fresh = m.is_none();
        m.get_or_insert_with(MaxBids::default).offer(&b);
        fresh
    })?;
    if fresh {
        timers::set(&k, end);
    }
    Ok(Outcome::drop())
}

pub(crate) fn fire_max(t: &Timer) -> Result<Outcome, Error> {
    if !t.key().starts_with(MAX) {
        return Ok(Outcome::drop());
    }
    match state::take_json::<MaxBids>(t.key())? {
        Some(m) => m.emit(t.at()),
        None => Ok(Outcome::drop()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(price: i64, extra: &'static str) -> Bid<'static> {
        Bid {
            auction: 1,
            price,
            bidder: 2,
            date_time: 3,
            extra: Cow::Borrowed(extra),
        }
    }

    #[test]
    fn the_highest_price_keeps_every_bid_at_it() {
        let mut m = MaxBids::default();
        for (price, extra) in [
            (-5, "a"),
            (-7, "b"),
            (-5, "c"),
            (0, "d"),
            (0, "e"),
            (-1, "f"),
        ] {
            m.offer(&bid(price, extra));
        }
        let kept: Vec<&str> = m.bids.iter().map(|k| k.extra.as_str()).collect();
        assert_eq!((m.price, kept), (0, vec!["d", "e"]));
    }
}
