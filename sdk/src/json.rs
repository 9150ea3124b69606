//! Helpers for JSON record values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// The value at a dotted path (`user.address.city`) or a JSON pointer (`/user/address/city`).
pub fn path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.starts_with('/') {
        return v.pointer(path);
    }
    path.split('.').try_fold(v, |cur, part| match cur {
        Value::Object(o) => o.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A scalar as text: strings without quotes, numbers and booleans as written, null as
/// `null`; arrays and objects as their JSON text.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Copies `from`'s fields into `into`. Existing fields are kept unless `overwrite`.
pub fn merge(into: &mut Map<String, Value>, from: Map<String, Value>, overwrite: bool) {
    for (k, v) in from {
        if overwrite || !into.contains_key(&k) {
            into.insert(k, v);
        }
    }
}

/// A timestamp field's value as ms since the epoch: an integer or float number of ms, an
/// integer in a string, or an RFC 3339 date-time string (`2026-11-29T10:00:00.250Z`).
pub fn timestamp_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.parse::<i64>().ok().or_else(|| {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
        }),
        _ => None,
    }
}

/// Finds one top-level field of a JSON object without building the rest of it.
struct Seek<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Option<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut found = None;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            if found.is_none() && k == self.0 {
                found = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// The event time in a record value: the JSON field `field` (a top-level name, or a dotted
/// path or JSON pointer into nested objects) read by [`timestamp_ms`].
pub fn event_time(value: Option<&[u8]>, field: &str) -> Result<i64, String> {
    let value = value.ok_or("the record has no value to read the event time from")?;
    let found = if field.contains('.') || field.starts_with('/') {
        let v: Value = serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
        path(&v, field).cloned()
    } else {
        let mut de = serde_json::Deserializer::from_slice(value);
        Seek(field)
            .deserialize(&mut de)
            .map_err(|e| format!("not a JSON object: {e}"))?
    };
    let found = found.ok_or_else(|| format!("no event-time field {field:?}"))?;
    timestamp_ms(&found).ok_or_else(|| {
        format!("event-time field {field:?} is {found}, not ms since the epoch or an RFC 3339 time")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_pointers() {
        let v = json!({"a": {"b": [1, {"c": "x"}]}});
        assert_eq!(path(&v, "a.b.1.c"), Some(&json!("x")));
        assert_eq!(path(&v, "/a/b/0"), Some(&json!(1)));
        assert_eq!(path(&v, "a.z"), None);
        assert_eq!(text(&json!("s")), "s");
        assert_eq!(text(&json!(2.5)), "2.5");
    }

    #[test]
    fn event_times_from_numbers_strings_and_nested_fields() {
        let v = br#"{"a": [1, {"x": 2}], "ts": 1700000000123, "s": "z"}"#;
        assert_eq!(event_time(Some(v), "ts"), Ok(1_700_000_000_123));
        let v = br#"{"ts": "2023-11-14T22:13:20.5Z"}"#;
        assert_eq!(event_time(Some(v), "ts"), Ok(1_700_000_000_500));
        let v = br#"{"ts": "2023-11-14T23:13:20+01:00"}"#;
        assert_eq!(event_time(Some(v), "ts"), Ok(1_700_000_000_000));
        let v = br#"{"m": {"at": "42"}}"#;
        assert_eq!(event_time(Some(v), "m.at"), Ok(42));
        assert!(
            event_time(Some(br#"{"ts": true}"#), "ts")
                .unwrap_err()
                .contains("not ms")
        );
        assert!(
            event_time(Some(br#"{"x": 1}"#), "ts")
                .unwrap_err()
                .contains("no event-time")
        );
        assert!(event_time(Some(b"[1]"), "ts").is_err());
        assert!(event_time(None, "ts").is_err());
    }
}
