//! The stateless queries of the Nexmark benchmark (as in Flink's Nexmark), over events as
//! JSON record values with Flink's field names; times are epoch milliseconds.
//!
//! Config `query` picks the query (required; init fails without a known one):
//! - `q0` — pass-through: every record is kept unchanged (it need not be JSON).
//! - `q1` — currency conversion of bids: emits
//!   `{"auction","bidder","price","dateTime","extra"}` with `price` = 0.908 × the bid's
//!   price (a JSON number, not an integer), keeping the record's key, headers and timestamp.
//! - `q2` — selection: bids whose `auction` is a multiple of 123 become
//!   `{"auction","price"}` (key, headers and timestamp kept); other bids are dropped.
//! - `rekey` — config `field` (required): the name of a top-level JSON field. The record
//!   passes with its value unchanged, keyed by that field's value — an integer as its
//!   decimal text, a string as it is — with its headers and timestamp. Used to repartition
//!   auctions (keyed by seller) by `id`: `{"query": "rekey", "field": "id"}`.
//!
//! These queries read any input topic (one kind of event each). A value that is not the
//! expected JSON (not JSON, a needed field missing or of another type) is rejected with
//! the reason. The crate uses no state, so it builds as a stateless component.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use sluice_sdk::{Error, OutRecord, Outcome, Record, config};

/// The query a deployment runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// q0: every record passes unchanged.
    PassThrough,
    /// q1: bid prices converted to another currency.
    Currency,
    /// q2: the bids of every 123rd auction.
    Selection,
    /// The record keyed by the text of a top-level JSON field.
    Rekey { field: String },
}

impl Query {
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Result<Query, Error> {
        let query = get("query")
            .ok_or_else(|| Error::new("config `query` is required: q0, q1, q2 or rekey"))?;
        Ok(match query.trim() {
            "q0" => Query::PassThrough,
            "q1" => Query::Currency,
            "q2" => Query::Selection,
            "rekey" => Query::Rekey {
                field: get("field").filter(|f| !f.is_empty()).ok_or_else(|| {
                    Error::new("config `field` is required for query rekey (e.g. \"id\")")
                })?,
            },
            other => {
                return Err(Error::new(format!(
                    "config `query` must be q0, q1, q2 or rekey, not {other:?}"
                )));
            }
        })
    }
}

pub fn setup() -> Result<Query, Error> {
    Query::from_config(config)
}

pub fn transform(q: &Query, r: &Record) -> Result<Outcome, Error> {
    Ok(match q {
        Query::PassThrough => Outcome::keep(),
        Query::Currency => currency(r),
        Query::Selection => selection(r),
        Query::Rekey { field } => rekey(r, field),
    })
}

sluice_sdk::export_transform!(transform, init = setup);

/// A bid as q1 reads it (strings borrowed from the record unless they have escapes).
#[derive(Debug, Deserialize)]
struct Bid<'a> {
    auction: i64,
    bidder: i64,
    price: i64,
    #[serde(rename = "dateTime")]
    date_time: i64,
    #[serde(borrow, default)]
    extra: Cow<'a, str>,
}

#[derive(Debug, Serialize)]
struct Converted<'a> {
    auction: i64,
    bidder: i64,
    price: f64,
    #[serde(rename = "dateTime")]
    date_time: i64,
    extra: &'a str,
}

/// What q2 reads of a bid, and what it writes.
#[derive(Debug, Deserialize, Serialize)]
struct AuctionPrice {
    auction: i64,
    price: i64,
}

/// The record's value parsed as `T`, or the rejection that says why it is not one.
fn parse<'a, T: Deserialize<'a>>(r: &Record<'a>, what: &str) -> Result<T, Outcome> {
    let value = r
        .value()
        .ok_or_else(|| Outcome::reject(format!("no value: expected {what} JSON")))?;
    serde_json::from_slice(value).map_err(|e| Outcome::reject(format!("invalid {what}: {e}")))
}

/// Keeps the input's key, headers and timestamp with `v` as its JSON value, written into
/// the SDK's reused buffer (no allocation per record). Serializing these plain structs
/// into a `Vec` cannot fail, so the input is never passed on unconverted.
fn rewrite(v: &impl Serialize) -> Outcome {
    Outcome::keep_rewritten(|buf| serde_json::to_writer(buf, v).is_ok())
}

fn currency(r: &Record) -> Outcome {
    let bid: Bid = match parse(r, "bid") {
        Ok(b) => b,
        Err(reject) => return reject,
    };
    rewrite(&Converted {
        auction: bid.auction,
        bidder: bid.bidder,
        price: 0.908 * bid.price as f64,
        date_time: bid.date_time,
        extra: &bid.extra,
    })
}

fn selection(r: &Record) -> Outcome {
    let bid: AuctionPrice = match parse(r, "bid") {
        Ok(b) => b,
        Err(reject) => return reject,
    };
    if bid.auction % 123 == 0 {
        rewrite(&bid)
    } else {
        Outcome::drop()
    }
}

fn rekey(r: &Record, field: &str) -> Outcome {
    let Some(value) = r.value() else {
        return Outcome::reject("no value to key by");
    };
    let key = match field_text(value, field) {
        Ok(Some(k)) => k,
        Ok(None) => return Outcome::reject(format!("no field {field:?} to key by")),
        Err(e) => return Outcome::reject(format!("not a JSON object: {e}")),
    };
    Outcome::emit(OutRecord {
        key: Some(key),
        value: Some(value.to_vec()),
        headers: r
            .headers()
            .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
            .collect(),
        // `None` keeps the input's timestamp.
        timestamp: None,
    })
}

/// The text of the top-level field `name` of a JSON object (an integer as decimal text, a
/// string as it is; the first if the name repeats), found in one pass without building the
/// document: other fields are skipped as they are read. `None` when the object has no
/// such field; an error when `json` is not an object or the field is another kind of value.
pub fn field_text(json: &[u8], name: &str) -> Result<Option<Vec<u8>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let found = FindField(name).deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

struct FindField<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for FindField<'_> {
    type Value = Option<Vec<u8>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FindField<'_> {
    type Value = Option<Vec<u8>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_it) = map.next_key_seed(IsName(self.0))? {
            if is_it && found.is_none() {
                found = Some(map.next_value::<KeyText>()?.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Whether an object key is the one looked for (compared without copying it).
struct IsName<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for IsName<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsName<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

/// A record key from a JSON integer (its decimal text) or string (its text).
struct KeyText(Vec<u8>);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeyTextVisitor)
    }
}

struct KeyTextVisitor;

impl<'de> Visitor<'de> for KeyTextVisitor {
    type Value = KeyText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string to key by")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<KeyText, E> {
        Ok(KeyText(itoa::Buffer::new().format(v).as_bytes().to_vec()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<KeyText, E> {
        Ok(KeyText(itoa::Buffer::new().format(v).as_bytes().to_vec()))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KeyText, E> {
        Ok(KeyText(v.as_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, TestOutcome, TestRecord};

    #[test]
    fn case_table() {
        Harness::with_init(setup, transform).run_suites(include_str!("../cases.json"));
    }

    #[test]
    fn a_missing_or_unknown_query_fails_init() {
        let h = || Harness::with_init(setup, transform);
        let e = h().try_run(&[]).unwrap_err();
        assert!(e.contains("`query` is required"), "{e}");
        let e = h().config("query", "q9").try_run(&[]).unwrap_err();
        assert!(e.contains("not \"q9\""), "{e}");
        let e = h().config("query", "rekey").try_run(&[]).unwrap_err();
        assert!(e.contains("`field`"), "{e}");
    }

    #[test]
    fn rekey_keeps_the_value_headers_and_timestamp() {
        let h = Harness::with_init(setup, transform)
            .config("query", "rekey")
            .config("field", "id");
        let auction = r#"{"id":1001,"itemName":"a \"b\"","seller":7,"dateTime":5}"#;
        let older = TestRecord {
            timestamp: 1_000,
            ..TestRecord::value(r#"{"id":1}"#)
        };
        let input = TestRecord {
            timestamp: 1_234,
            ..TestRecord::value(auction)
                .with_key("7")
                .with_header("h", "v")
        };
        let out = h.run(&[older, input]);
        let TestOutcome::Emitted(e) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(e[0].key.as_deref(), Some(&b"1001"[..]));
        assert_eq!(e[0].value_str(), auction);
        assert_eq!(e[0].headers, [("h".to_string(), Some(b"v".to_vec()))]);
        assert_eq!(e[0].timestamp, 1_234);
    }

    #[test]
    fn q1_and_q2_keep_the_key_and_timestamp() {
        let bid = r#"{"auction":246,"bidder":3,"price":1000,"channel":"c","url":"u","dateTime":9,"extra":""}"#;
        let input = TestRecord {
            timestamp: 1_234,
            ..TestRecord::value(bid).with_key("246")
        };
        for q in ["q1", "q2"] {
            let h = Harness::with_init(setup, transform).config("query", q);
            let out = h.run(std::slice::from_ref(&input));
            let TestOutcome::Emitted(e) = &out[0] else {
                panic!("{out:?}")
            };
            assert_eq!(
                (e[0].key.as_deref(), e[0].timestamp),
                (Some(&b"246"[..]), 1_234)
            );
        }
    }

    #[test]
    fn field_text_finds_top_level_fields_only() {
        let text = |json: &str, name: &str| {
            field_text(json.as_bytes(), name).map(|k| k.map(|k| String::from_utf8(k).unwrap()))
        };
        let doc = r#"{"a": {"id": 1}, "list": [{"id": 2}], "i\u0064": -42, "id": 7}"#;
        assert_eq!(
            text(doc, "id").unwrap().as_deref(),
            Some("-42"),
            "the first id"
        );
        assert_eq!(text(doc, "b").unwrap(), None);
        assert_eq!(
            text(r#"{"id": "x\"y"}"#, "id").unwrap().as_deref(),
            Some("x\"y")
        );
        assert_eq!(
            text(r#"{"id": 18446744073709551615}"#, "id")
                .unwrap()
                .as_deref(),
            Some("18446744073709551615")
        );
        for bad in [
            r#"{"id": 1.5}"#,
            r#"{"id": null}"#,
            "[1]",
            r#"{"id": 1"#,
            r#"{"id": 1} x"#,
        ] {
            assert!(text(bad, "id").is_err(), "{bad}");
        }
        assert!(
            text(r#"{"x": [}"#, "id").is_err(),
            "skipped fields are checked"
        );
    }
}
