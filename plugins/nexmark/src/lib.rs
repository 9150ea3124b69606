//! The stateful queries of the Nexmark benchmark (as in Flink's Nexmark), over events as
//! JSON record values with Flink's field names; times are epoch milliseconds and a
//! record's timestamp is its event's `dateTime`:
//! - person: `{"id","name","emailAddress","creditCard","city","state","dateTime","extra"}`,
//!   keyed by `id`;
//! - auction: `{"id","itemName","description","initialBid","reserve","dateTime","expires",
//!   "seller","category","extra"}`, keyed by `seller`;
//! - bid: `{"auction","bidder","price","channel","url","dateTime","extra"}`, keyed by
//!   `auction`.
//!
//! Keys below are decimal text. Everything goes to the first output.
//!
//! Config `query` picks the query (required). Queries that join two inputs tell them apart
//! by topic, named by config `persons`, `auctions` and `bids` (defaults: those words); a
//! record from another topic is rejected. Single-input queries read any topic. A value
//! that is not the expected JSON is rejected with the reason.
//!
//! - `q3` (persons + auctions, both keyed by the person id): local item suggestion,
//!   `SELECT P.name, P.city, P.state, A.id FROM auction A JOIN person P ON A.seller = P.id
//!   WHERE A.category = 10 AND P.state IN ('OR', 'ID', 'CA')`, as an unwindowed join:
//!   emits `{"name","city","state","id"}` (id: the auction's; key: the person id) once per
//!   matching pair, as soon as both have arrived. Kept: name, city and state of persons in
//!   those states (others as `null`, so their auctions are dropped at once), and the ids of
//!   category-10 auctions whose seller has not arrived yet.
//! - `q4-join` (auctions keyed by `id` — the `rekey` query of `nexmark-stateless` — and
//!   bids; set `auctions` to the re-keyed topic): per auction the highest price of its bids
//!   with `dateTime` in `[auction.dateTime, auction.expires]`. When the watermark passes
//!   `expires`, emits `{"auction","category","final"}` keyed by category and timestamped
//!   at `expires`, if any bid counted. Bids that come before their auction (the other input
//!   is behind) wait for it until the watermark passes them.
//! - `q4-avg` (q4-join's output): `SELECT category, AVG(final) GROUP BY category`; on every
//!   input emits `{"category","avg","sum","count"}` keyed by category, `avg` = sum / count
//!   in integer division (Flink's AVG of a BIGINT).
//! - `q5-count` (bids): hot items, stage 1: bids per auction per hopping window (config
//!   `size_ms`, default 10000; `slide_ms`, default 2000). When a window closes, emits
//!   `{"auction","num","starttime","endtime"}` keyed by `starttime`.
//! - `q5-hot` (q5-count's output): the auctions with the most bids of each window: when
//!   the watermark reaches `endtime`, emits `{"auction","num","starttime","endtime"}` for
//!   every auction whose `num` is the window's highest (all of them on a tie), keyed by
//!   auction.
//! - `q7-local` (bids): highest bid, stage 1: per tumbling window (config `size_ms`,
//!   default 10000) the bids at the window's highest price, emitted when it closes as
//!   `{"auction","price","bidder","dateTime","extra"}` keyed by the window's end.
//! - `q7-max` (q7-local's output, from any number of partitions): the bids at the highest
//!   price of each window, emitted when the watermark reaches its end, as they came and
//!   keyed by the window's end. The window's end is the record key, or else computed from
//!   `dateTime` and `size_ms` (default 10000).
//! - `q8` (persons + auctions, both keyed by the person id): new users, Flink's windowed
//!   join of persons and auctions on `P.id = A.seller` in the same tumbling window (config
//!   `size_ms`, default 10000): when a window closes, emits `{"id","name","starttime"}`
//!   keyed by id, once per person who joined in it and had an auction in it.
//!
//! Results of windows (q5-count, q5-hot, q7-local, q7-max, q8) are timestamped at the
//! window's last millisecond (end − 1, as Flink's window results): the next stage's timer
//! at the window end then fires only once every result of that window has been read.

use serde::{Deserialize, Serialize};
use sluice_sdk::window::Windows;
use sluice_sdk::{Error, OutRecord, Outcome, Record, Target, Timer, config, config_ms};

mod q3;
mod q4;
mod q5;
mod q7;
mod q8;

/// The query a deployment runs, with what it needs.
#[derive(Debug)]
enum Query {
    Q3,
    Q4Join,
    Q4Avg,
    Q5Count(Windows<u64>),
    Q5Hot,
    Q7Local(Windows<q7::MaxBids>),
    Q7Max { size: i64 },
    Q8(Windows<q8::NewUser>),
}

/// Which kind of event a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Person,
    Auction,
    Bid,
}

#[derive(Debug)]
pub struct Nexmark {
    query: Query,
    persons: String,
    auctions: String,
    bids: String,
}

const QUERIES: &str = "q3, q4-join, q4-avg, q5-count, q5-hot, q7-local, q7-max or q8";

/// The default window size of q5, q7 and q8 (Flink's Nexmark: ten seconds).
const SIZE_MS: i64 = 10_000;

impl Nexmark {
    /// The deployment's query and topics, from its config.
    pub fn from_config() -> Result<Nexmark, Error> {
        let query = config("query")
            .ok_or_else(|| Error::new(format!("config `query` is required: {QUERIES}")))?;
        let query = match query.trim() {
            "q3" => Query::Q3,
            "q4-join" => Query::Q4Join,
            "q4-avg" => Query::Q4Avg,
            "q5-count" => {
                let size = config_ms("size_ms", SIZE_MS)?;
                let slide = config_ms("slide_ms", 2_000)?;
                if slide > size {
                    return Err(Error::new(format!(
                        "slide_ms ({slide}) must not be more than size_ms ({size})"
                    )));
                }
                Query::Q5Count(Windows::hopping("q5", size, slide))
            }
            "q5-hot" => Query::Q5Hot,
            "q7-local" => Query::Q7Local(Windows::tumbling("q7", config_ms("size_ms", SIZE_MS)?)),
            "q7-max" => Query::Q7Max {
                size: config_ms("size_ms", SIZE_MS)?,
            },
            "q8" => Query::Q8(Windows::tumbling("q8", config_ms("size_ms", SIZE_MS)?)),
            other => {
                return Err(Error::new(format!(
                    "config `query` must be {QUERIES}, not {other:?}"
                )));
            }
        };
        let topic = |name: &str| config(name).unwrap_or_else(|| name.to_owned());
        let n = Nexmark {
            query,
            persons: topic("persons"),
            auctions: topic("auctions"),
            bids: topic("bids"),
        };
        if let &[a, b] = n.inputs()
            && n.topic(a) == n.topic(b)
        {
            return Err(Error::new(format!(
                "the two inputs of this query need two topics, not {:?} for both",
                n.topic(a)
            )));
        }
        Ok(n)
    }

    /// The kinds of events a query that joins two inputs reads (none for the others).
    fn inputs(&self) -> &'static [Kind] {
        match self.query {
            Query::Q3 | Query::Q8(_) => &[Kind::Person, Kind::Auction],
            Query::Q4Join => &[Kind::Auction, Kind::Bid],
            _ => &[],
        }
    }

    fn topic(&self, kind: Kind) -> &str {
        match kind {
            Kind::Person => &self.persons,
            Kind::Auction => &self.auctions,
            Kind::Bid => &self.bids,
        }
    }

    /// The kind of event a record of a two-input query is, by its topic; `Err` is the
    /// rejection of a record from another topic.
    fn kind(&self, r: &Record) -> Result<Kind, Outcome> {
        let inputs = self.inputs();
        inputs
            .iter()
            .copied()
            .find(|k| self.topic(*k) == r.topic())
            .ok_or_else(|| {
                let names: Vec<&str> = inputs.iter().map(|k| self.topic(*k)).collect();
                Outcome::reject(format!(
                    "a record from topic {:?}: this query reads {names:?}",
                    r.topic()
                ))
            })
    }
}

pub fn setup() -> Result<Nexmark, Error> {
    Nexmark::from_config()
}

/// The value of an `Ok`; an `Err` (a rejection `Outcome`) is returned from the handler.
macro_rules! or_reject {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(reject) => return Ok(reject),
        }
    };
}
pub(crate) use or_reject;

pub fn process(n: &Nexmark, r: &Record) -> Result<Outcome, Error> {
    match &n.query {
        // `kind` answers one of the query's two inputs: `_` is the other.
        Query::Q3 => match or_reject!(n.kind(r)) {
            Kind::Person => q3::person(r),
            _ => q3::auction(r),
        },
        Query::Q4Join => match or_reject!(n.kind(r)) {
            Kind::Auction => q4::auction(r),
            _ => q4::bid(r),
        },
        Query::Q4Avg => q4::average(r),
        Query::Q5Count(w) => q5::count(w, r),
        Query::Q5Hot => q5::hot(r),
        Query::Q7Local(w) => q7::local(w, r),
        Query::Q7Max { size } => q7::max(*size, r),
        Query::Q8(w) => match or_reject!(n.kind(r)) {
            Kind::Person => q8::person(w, r),
            _ => q8::auction(w, r),
        },
    }
}

pub fn fire(n: &Nexmark, t: &Timer) -> Result<Outcome, Error> {
    match &n.query {
        Query::Q4Join => q4::fire(t),
        Query::Q5Count(w) => q5::close_count(w, t),
        Query::Q5Hot => q5::fire_hot(t),
        Query::Q7Local(w) => q7::close_local(w, t),
        Query::Q7Max { .. } => q7::fire_max(t),
        Query::Q8(w) => q8::close(w, t),
        Query::Q3 | Query::Q4Avg => Ok(Outcome::drop()),
    }
}

sluice_sdk::export_transform!(process, init = setup, timers = fire);

/// The record's value parsed as `T`, or the rejection that says why it is not one.
fn parse<'a, T: Deserialize<'a>>(r: &Record<'a>, what: &str) -> Result<T, Outcome> {
    let value = r
        .value()
        .ok_or_else(|| Outcome::reject(format!("no value: expected {what} JSON")))?;
    serde_json::from_slice(value).map_err(|e| Outcome::reject(format!("invalid {what}: {e}")))
}

/// `prefix` and the decimal text of `n`: a state key (readable in the state API).
fn key(prefix: &[u8], n: i64) -> Vec<u8> {
    let mut b = itoa::Buffer::new();
    let text = b.format(n).as_bytes();
    let mut k = Vec::with_capacity(prefix.len() + text.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(text);
    k
}

/// The decimal text of `n`: a record key.
fn decimal(n: i64) -> Vec<u8> {
    key(b"", n)
}

/// The number in decimal text (a key this plugin wrote, or a record key).
fn parse_decimal(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A record with `v` as its JSON value.
fn json_record(v: &impl Serialize, key: Vec<u8>) -> Result<OutRecord, Error> {
    Ok(OutRecord::new(serde_json::to_vec(v)?).with_key(key))
}

/// Emits every record to the first output (drops when there is none).
fn emit_all(records: impl IntoIterator<Item = OutRecord>) -> Outcome {
    records
        .into_iter()
        .fold(Outcome::drop(), |o, r| o.and_emit(Target::Default, r))
}

/// A person, as q3 and q8 read it (strings borrowed from the record unless escaped).
#[derive(Debug, Deserialize)]
struct Person<'a> {
    id: i64,
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    city: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    state: std::borrow::Cow<'a, str>,
}

/// An auction, as q3, q4 and q8 read it.
#[derive(Debug, Deserialize)]
struct Auction {
    id: i64,
    seller: i64,
    category: i64,
    #[serde(rename = "dateTime")]
    date_time: i64,
    expires: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn case_table() {
        Harness::with_init(setup, process)
            .timers(fire)
            .run_suites(include_str!("../cases.json"));
    }

    #[test]
    fn bad_config_fails_init() {
        let h = || Harness::with_init(setup, process).timers(fire);
        let fails = |h: Harness<Nexmark>, part: &str| {
            let e = h.try_run(&[]).unwrap_err();
            assert!(e.contains(part), "{e}");
        };
        fails(h(), "`query` is required");
        fails(h().config("query", "q6"), "not \"q6\"");
        fails(
            h().config("query", "q7-local").config("size_ms", "0"),
            "size_ms",
        );
        let q5 = h().config("query", "q5-count").config("slide_ms", "20000");
        fails(q5, "slide_ms (20000)");
        let q3 = h().config("query", "q3").config("auctions", "persons");
        fails(q3, "two topics");
        assert!(h().config("query", "q4-avg").try_run(&[]).is_ok());
    }
}
