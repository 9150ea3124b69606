//! The keyword-level diffs: lengths, counts, numeric limits, `multipleOf` as exact decimals,
//! patterns and enums (Confluent's `StringSchemaDiff`, `NumberSchemaDiff`, `EnumSchemaDiff` and
//! the count comparisons of the object and array diffs).

use serde_json::Value;

use super::context::Ctx;
use super::model::{NumberSchema, StringSchema};

fn count_type(prefix: &'static str, suffix: &str) -> &'static str {
    match (prefix, suffix) {
        ("MAX_PROPERTIES", "ADDED") => "MAX_PROPERTIES_ADDED",
        ("MAX_PROPERTIES", "REMOVED") => "MAX_PROPERTIES_REMOVED",
        ("MAX_PROPERTIES", "INCREASED") => "MAX_PROPERTIES_INCREASED",
        ("MAX_PROPERTIES", _) => "MAX_PROPERTIES_DECREASED",
        ("MIN_PROPERTIES", "ADDED") => "MIN_PROPERTIES_ADDED",
        ("MIN_PROPERTIES", "REMOVED") => "MIN_PROPERTIES_REMOVED",
        ("MIN_PROPERTIES", "INCREASED") => "MIN_PROPERTIES_INCREASED",
        ("MIN_PROPERTIES", _) => "MIN_PROPERTIES_DECREASED",
        ("MAX_ITEMS", "ADDED") => "MAX_ITEMS_ADDED",
        ("MAX_ITEMS", "REMOVED") => "MAX_ITEMS_REMOVED",
        ("MAX_ITEMS", "INCREASED") => "MAX_ITEMS_INCREASED",
        ("MAX_ITEMS", _) => "MAX_ITEMS_DECREASED",
        ("MIN_ITEMS", "ADDED") => "MIN_ITEMS_ADDED",
        ("MIN_ITEMS", "REMOVED") => "MIN_ITEMS_REMOVED",
        ("MIN_ITEMS", "INCREASED") => "MIN_ITEMS_INCREASED",
        ("MIN_ITEMS", _) => "MIN_ITEMS_DECREASED",
        ("MAX_CONTAINS", "ADDED") => "MAX_CONTAINS_ADDED",
        ("MAX_CONTAINS", "REMOVED") => "MAX_CONTAINS_REMOVED",
        ("MAX_CONTAINS", "INCREASED") => "MAX_CONTAINS_INCREASED",
        ("MAX_CONTAINS", _) => "MAX_CONTAINS_DECREASED",
        ("MIN_CONTAINS", "ADDED") => "MIN_CONTAINS_ADDED",
        ("MIN_CONTAINS", "REMOVED") => "MIN_CONTAINS_REMOVED",
        ("MIN_CONTAINS", "INCREASED") => "MIN_CONTAINS_INCREASED",
        ("MIN_CONTAINS", _) => "MIN_CONTAINS_DECREASED",
        ("MAX_LENGTH", "ADDED") => "MAX_LENGTH_ADDED",
        ("MAX_LENGTH", "REMOVED") => "MAX_LENGTH_REMOVED",
        ("MAX_LENGTH", "INCREASED") => "MAX_LENGTH_INCREASED",
        ("MAX_LENGTH", _) => "MAX_LENGTH_DECREASED",
        ("MIN_LENGTH", "ADDED") => "MIN_LENGTH_ADDED",
        ("MIN_LENGTH", "REMOVED") => "MIN_LENGTH_REMOVED",
        ("MIN_LENGTH", "INCREASED") => "MIN_LENGTH_INCREASED",
        _ => "MIN_LENGTH_DECREASED",
    }
}

pub(super) fn compare_counts(
    ctx: &mut Ctx,
    keyword: &str,
    o: Option<i64>,
    u: Option<i64>,
    prefix: &'static str,
) {
    let suffix = match (o, u) {
        (None, Some(_)) => "ADDED",
        (Some(_), None) => "REMOVED",
        (Some(a), Some(b)) if a < b => "INCREASED",
        (Some(a), Some(b)) if a > b => "DECREASED",
        _ => return,
    };
    ctx.add_at(keyword, count_type(prefix, suffix));
}

pub(super) fn string_diff(ctx: &mut Ctx, o: &StringSchema, u: &StringSchema) {
    compare_counts(ctx, "maxLength", o.max_length, u.max_length, "MAX_LENGTH");
    compare_counts(ctx, "minLength", o.min_length, u.min_length, "MIN_LENGTH");
    match (&o.pattern, &u.pattern) {
        (None, Some(_)) => ctx.add_at("pattern", "PATTERN_ADDED"),
        (Some(_), None) => ctx.add_at("pattern", "PATTERN_REMOVED"),
        (Some(a), Some(b)) if a != b => ctx.add_at("pattern", "PATTERN_CHANGED"),
        _ => {}
    }
}

fn limit(ctx: &mut Ctx, keyword: &str, o: Option<f64>, u: Option<f64>, types: [&'static str; 4]) {
    let t = match (o, u) {
        (None, Some(_)) => types[0],
        (Some(_), None) => types[1],
        (Some(a), Some(b)) if a < b => types[2],
        (Some(a), Some(b)) if a > b => types[3],
        _ => return,
    };
    ctx.add_at(keyword, t);
}

/// An exact decimal from a JSON number's text: (unscaled, scale).
fn decimal(text: &str) -> Option<(i128, u32)> {
    let text = text.trim();
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let mut value: i128 = digits.parse().ok()?;
    let mut scale = i32::try_from(frac.len()).ok()? - exp;
    while scale < 0 {
        value = value.checked_mul(10)?;
        scale += 1;
    }
    Some((value, u32::try_from(scale).ok()?))
}

/// `a % b == 0` exactly, for decimals (`None` if out of exact range).
fn divisible(a: &str, b: &str) -> Option<bool> {
    let ((av, as_), (bv, bs)) = (decimal(a)?, decimal(b)?);
    let s = as_.max(bs);
    let av = av.checked_mul(10i128.checked_pow(s - as_)?)?;
    let bv = bv.checked_mul(10i128.checked_pow(s - bs)?)?;
    if bv == 0 {
        return Some(false);
    }
    Some(av % bv == 0)
}

pub(super) fn number_diff(ctx: &mut Ctx, o: &NumberSchema, u: &NumberSchema) {
    limit(
        ctx,
        "maximum",
        o.maximum,
        u.maximum,
        [
            "MAXIMUM_ADDED",
            "MAXIMUM_REMOVED",
            "MAXIMUM_INCREASED",
            "MAXIMUM_DECREASED",
        ],
    );
    limit(
        ctx,
        "minimum",
        o.minimum,
        u.minimum,
        [
            "MINIMUM_ADDED",
            "MINIMUM_REMOVED",
            "MINIMUM_INCREASED",
            "MINIMUM_DECREASED",
        ],
    );
    // Confluent compares a decreased exclusiveMaximum against the update's `maximum` (a bug that
    // fails with a NullPointerException when it is absent); the intended comparison is used here.
    limit(
        ctx,
        "exclusiveMaximum",
        o.exclusive_maximum,
        u.exclusive_maximum,
        [
            "EXCLUSIVE_MAXIMUM_ADDED",
            "EXCLUSIVE_MAXIMUM_REMOVED",
            "EXCLUSIVE_MAXIMUM_INCREASED",
            "EXCLUSIVE_MAXIMUM_DECREASED",
        ],
    );
    limit(
        ctx,
        "exclusiveMinimum",
        o.exclusive_minimum,
        u.exclusive_minimum,
        [
            "EXCLUSIVE_MINIMUM_ADDED",
            "EXCLUSIVE_MINIMUM_REMOVED",
            "EXCLUSIVE_MINIMUM_INCREASED",
            "EXCLUSIVE_MINIMUM_DECREASED",
        ],
    );
    let equal = match (&o.multiple_of, &u.multiple_of) {
        (None, None) => true,
        (Some(a), Some(b)) => match (divisible(a, b), divisible(b, a)) {
            (Some(x), Some(y)) => x && y,
            _ => a.parse::<f64>().ok() == b.parse::<f64>().ok(),
        },
        _ => false,
    };
    if !equal {
        let t = match (&o.multiple_of, &u.multiple_of) {
            (None, _) => "MULTIPLE_OF_ADDED",
            (_, None) => "MULTIPLE_OF_REMOVED",
            (Some(a), Some(b)) => {
                if divisible(b, a) == Some(true) {
                    "MULTIPLE_OF_EXPANDED"
                } else if divisible(a, b) == Some(true) {
                    "MULTIPLE_OF_REDUCED"
                } else {
                    "MULTIPLE_OF_CHANGED"
                }
            }
        };
        ctx.add_at("multipleOf", t);
    }
    if o.requires_integer != u.requires_integer {
        ctx.add(if o.requires_integer {
            "TYPE_EXTENDED"
        } else {
            "TYPE_NARROWED"
        });
    }
}

pub(super) fn enum_diff(ctx: &mut Ctx, o: &[Value], u: &[Value]) {
    let contains_all = |a: &[Value], b: &[Value]| b.iter().all(|x| a.contains(x));
    let (u_has_o, o_has_u) = (contains_all(u, o), contains_all(o, u));
    if u_has_o && o_has_u {
        return;
    }
    ctx.add_at(
        "enum",
        if u_has_o {
            "ENUM_ARRAY_EXTENDED"
        } else if o_has_u {
            "ENUM_ARRAY_NARROWED"
        } else {
            "ENUM_ARRAY_CHANGED"
        },
    );
}
