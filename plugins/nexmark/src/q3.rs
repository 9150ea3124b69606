//! q3, local item suggestion: an unwindowed join of persons in OR, ID or CA with their
//! category-10 auctions, emitting each pair once, when its second half arrives.
//!
//! State (per person id): `p/<id>` holds the person's name, city and state, or `null` for
//! a person in another state (their auctions are then dropped at once instead of waiting
//! forever); `a/<id>` holds the ids of category-10 auctions waiting for that seller.

use serde::{Deserialize, Serialize};
use sluice_sdk::{Error, Outcome, Record, state};

use crate::{Auction, Person, decimal, emit_all, json_record, key, or_reject, parse};

const PERSON: &[u8] = b"p/";
const WAITING: &[u8] = b"a/";

/// The only category whose auctions are suggested.
const CATEGORY: i64 = 10;

/// What is kept of a person in one of the states.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seller {
    name: String,
    city: String,
    state: String,
}

/// A result row.
#[derive(Debug, Serialize)]
struct Suggestion<'a> {
    name: &'a str,
    city: &'a str,
    state: &'a str,
    id: i64,
}

fn is_local(state: &str) -> bool {
    matches!(state, "OR" | "ID" | "CA")
}

pub(crate) fn person(r: &Record) -> Result<Outcome, Error> {
    let p: Person = or_reject!(parse(r, "person"));
    let waiting: Option<Vec<i64>> = state::take_json(&key(WAITING, p.id))?;
    if !is_local(&p.state) {
        state::put_json::<Option<Seller>>(&key(PERSON, p.id), None)?;
        return Ok(Outcome::drop());
    }
    let rows = waiting.unwrap_or_default().into_iter().map(|id| {
        let row = Suggestion {
            name: &p.name,
            city: &p.city,
            state: &p.state,
            id,
        };
        json_record(&row, decimal(p.id))
    });
    let out = emit_all(rows.collect::<Result<Vec<_>, _>>()?);
    let seller = Seller {
        name: p.name.into_owned(),
        city: p.city.into_owned(),
        state: p.state.into_owned(),
    };
    state::put_json(&key(PERSON, p.id), Some(seller))?;
    Ok(out)
}

pub(crate) fn auction(r: &Record) -> Result<Outcome, Error> {
    let a: Auction = or_reject!(parse(r, "auction"));
    if a.category != CATEGORY {
        return Ok(Outcome::drop());
    }
    // None: the seller has not arrived; Some(None): the seller is not local.
    let seller: Option<Option<Seller>> = state::get_json(&key(PERSON, a.seller))?;
    match seller {
        Some(Some(s)) => {
            let row = Suggestion {
                name: &s.name,
                city: &s.city,
                state: &s.state,
                id: a.id,
            };
            Ok(Outcome::emit(json_record(&row, decimal(a.seller))?))
        }
        Some(None) => Ok(Outcome::drop()),
        None => {
            state::update(&key(WAITING, a.seller), |w: &mut Option<Vec<i64>>| {
                w.get_or_insert_with(Vec::new).push(a.id)
            })?;
            Ok(Outcome::drop())
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{fire, process, setup};
    use serde_json::json;
    use sluice_sdk::testing::{Harness, TestRecord};

    fn rec(topic: &str, v: serde_json::Value) -> TestRecord {
        TestRecord::json(&v).with_topic(topic)
    }

    #[test]
    fn state_keeps_only_what_the_join_still_needs() {
        let h = Harness::with_init(setup, process)
            .config("query", "q3")
            .timers(fire);
        let mut s = h.stream().unwrap();
        let auction = |id: i64, seller: i64| {
            let a =
                json!({"id": id, "seller": seller, "category": 10, "dateTime": 1, "expires": 2});
            rec("auctions", a)
        };
        let person = |id: i64, st: &str| {
            rec(
                "persons",
                json!({"id": id, "name": "n", "city": "c", "state": st}),
            )
        };
        s.push(&[auction(1, 7), auction(2, 7), auction(3, 8)])
            .unwrap();
        assert_eq!(s.get(b"a/7"), Some(&b"[1,2]"[..]));
        let p = s.push(&[person(7, "CA"), person(8, "NY")]).unwrap();
        assert_eq!(p.outcomes[0].values().len(), 2);
        // Waiting auctions are gone; the local person is kept, the other as null.
        let keys: Vec<&[u8]> = s.state().keys().map(Vec::as_slice).collect();
        assert_eq!(keys, [&b"p/7"[..], b"p/8"]);
        assert_eq!(s.get(b"p/8"), Some(&b"null"[..]));
        let p = s.push(&[auction(4, 8), auction(5, 7)]).unwrap();
        assert!(p.outcomes[0].values().is_empty());
        assert_eq!(p.outcomes[1].values().len(), 1);
        assert_eq!(s.state().len(), 2, "matched auctions are not kept");
    }
}
