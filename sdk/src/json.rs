//! Helpers for JSON record values.

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
}
