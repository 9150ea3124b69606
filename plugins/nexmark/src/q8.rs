//! q8, new users: persons who joined and opened an auction in the same tumbling window.
//!
//! State: the window helper's (`q8`, per person id and window: the person's name if they
//! joined in it, whether they had an auction in it), closed by its timer at the window end.

use serde::{Deserialize, Serialize};
use sluice_sdk::window::Windows;
use sluice_sdk::{Error, Outcome, Record, Timer};

use crate::{Auction, Person, json_record, or_reject, parse, parse_decimal};

/// What a window knows of one person id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewUser {
    /// The name of the person event in the window (the first, if there were several).
    name: Option<String>,
    /// Whether an auction of this seller is in the window.
    auction: bool,
}

#[derive(Debug, Serialize)]
struct Row<'a> {
    id: i64,
    name: &'a str,
    starttime: i64,
}

pub(crate) fn person(w: &Windows<NewUser>, r: &Record) -> Result<Outcome, Error> {
    let p: Person = or_reject!(parse(r, "person"));
    let mut id = itoa::Buffer::new();
    w.add(id.format(p.id).as_bytes(), r.event_time(), |u| {
        if u.name.is_none() {
            u.name = Some(p.name.to_string());
        }
    })?;
    Ok(Outcome::drop())
}

pub(crate) fn auction(w: &Windows<NewUser>, r: &Record) -> Result<Outcome, Error> {
    let a: Auction = or_reject!(parse(r, "auction"));
    let mut seller = itoa::Buffer::new();
    w.add(seller.format(a.seller).as_bytes(), r.event_time(), |u| {
        u.auction = true
    })?;
    Ok(Outcome::drop())
}

pub(crate) fn close(w: &Windows<NewUser>, t: &Timer) -> Result<Outcome, Error> {
    let Some(c) = w.close(t)? else {
        return Ok(Outcome::drop());
    };
    let (Some(name), true, Some(id)) = (&c.value.name, c.value.auction, parse_decimal(&c.key))
    else {
        return Ok(Outcome::drop());
    };
    let row = Row {
        id,
        name,
        starttime: c.window.start,
    };
    let mut out = json_record(&row, c.key.clone())?;
    out.timestamp = Some(c.window.end.saturating_sub(1));
    Ok(Outcome::emit(out))
}
