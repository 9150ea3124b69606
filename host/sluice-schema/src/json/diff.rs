//! The comparison itself: a port of Confluent's `SchemaDiff` (class dispatch, the memo with its
//! in-progress set and the fixpoint over recursive schemas), `ObjectSchemaDiff`,
//! `ArraySchemaDiff` and `CombinedSchemaDiff` with maximum bipartite matching.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::context::{Ctx, Diff};
use super::keywords::{compare_counts, enum_diff, number_diff, string_diff};
use super::model::{ArraySchema, Criterion, Kind, Model, NodeId, ObjectSchema};

pub(super) const STRICT: &[&str] = &[
    "ID_CHANGED",
    "DESCRIPTION_CHANGED",
    "TITLE_CHANGED",
    "DEFAULT_CHANGED",
    "SCHEMA_REMOVED",
    "TYPE_EXTENDED",
    "MAX_LENGTH_INCREASED",
    "MAX_LENGTH_REMOVED",
    "MIN_LENGTH_DECREASED",
    "MIN_LENGTH_REMOVED",
    "PATTERN_REMOVED",
    "MAXIMUM_INCREASED",
    "MAXIMUM_REMOVED",
    "MINIMUM_DECREASED",
    "MINIMUM_REMOVED",
    "EXCLUSIVE_MAXIMUM_INCREASED",
    "EXCLUSIVE_MAXIMUM_REMOVED",
    "EXCLUSIVE_MINIMUM_DECREASED",
    "EXCLUSIVE_MINIMUM_REMOVED",
    "MULTIPLE_OF_REDUCED",
    "MULTIPLE_OF_REMOVED",
    "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED",
    "REQUIRED_ATTRIBUTE_REMOVED",
    "DEPENDENCY_ARRAY_NARROWED",
    "DEPENDENCY_ARRAY_REMOVED",
    "DEPENDENCY_SCHEMA_REMOVED",
    "MAX_PROPERTIES_INCREASED",
    "MAX_PROPERTIES_REMOVED",
    "MIN_PROPERTIES_DECREASED",
    "MIN_PROPERTIES_REMOVED",
    "ADDITIONAL_PROPERTIES_ADDED",
    "ADDITIONAL_PROPERTIES_EXTENDED",
    "UNEVALUATED_PROPERTIES_ADDED",
    "UNEVALUATED_PROPERTIES_EXTENDED",
    "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
    "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "MAX_ITEMS_INCREASED",
    "MAX_ITEMS_REMOVED",
    "MIN_ITEMS_DECREASED",
    "MIN_ITEMS_REMOVED",
    "MAX_CONTAINS_INCREASED",
    "MAX_CONTAINS_REMOVED",
    "MIN_CONTAINS_DECREASED",
    "MIN_CONTAINS_REMOVED",
    "UNIQUE_ITEMS_REMOVED",
    "ADDITIONAL_ITEMS_ADDED",
    "ADDITIONAL_ITEMS_EXTENDED",
    "UNEVALUATED_ITEMS_ADDED",
    "UNEVALUATED_ITEMS_EXTENDED",
    "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL",
    "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL",
    "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "ENUM_ARRAY_EXTENDED",
    "COMBINED_TYPE_EXTENDED",
    "PRODUCT_TYPE_NARROWED",
    "SUM_TYPE_EXTENDED",
    "NOT_TYPE_NARROWED",
];

/// What `LENIENT` (config `compatibilityPolicy`) accepts on top of `STRICT`.
pub(super) const LENIENT_EXTRA: &[&str] = &[
    "ADDITIONAL_PROPERTIES_NARROWED",
    "ADDITIONAL_PROPERTIES_REMOVED",
    "UNEVALUATED_PROPERTIES_NARROWED",
    "UNEVALUATED_PROPERTIES_REMOVED",
    "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL",
    "OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
];

/// Bounds the diff's work on adversarial schemas (combined schemas compare every pair).
const MAX_STEPS: usize = 200_000;

/// (orientation, original node, update node): `not` compares with the models swapped, and node
/// ids of the two models overlap, so the orientation is part of the key.
type Pair = (bool, NodeId, NodeId);

struct Shared<'m> {
    orig: &'m Model,
    upd: &'m Model,
    lenient: bool,
    memo: HashMap<Pair, Vec<Diff>>,
    in_progress: HashSet<Pair>,
    seed: HashMap<Pair, Vec<Diff>>,
    optimism: bool,
    steps: usize,
    error: Option<String>,
    flipped: bool,
}

impl Shared<'_> {
    fn compatible_type(&self, t: &str) -> bool {
        STRICT.contains(&t) || (self.lenient && LENIENT_EXTRA.contains(&t))
    }

    fn all_compatible(&self, diffs: &[Diff]) -> bool {
        diffs.iter().all(|(t, _)| self.compatible_type(t))
    }
}

fn kind_class(k: &Kind) -> u8 {
    match k {
        Kind::Empty => 0,
        Kind::True => 1,
        Kind::False => 2,
        Kind::Null => 3,
        Kind::Boolean => 4,
        Kind::String(_) => 5,
        Kind::Number(_) => 6,
        Kind::Enum(_) => 7,
        Kind::Const(_) => 8,
        Kind::Object(_) => 9,
        Kind::Array(_) => 10,
        Kind::Combined(..) => 11,
        Kind::Not(_) => 12,
        Kind::Conditional => 13,
        Kind::Reference(_) => 14,
    }
}

impl<'m> Shared<'m> {
    /// `SchemaDiff.compare(ctx, original, update)`; `None` is a missing schema.
    fn compare(&mut self, ctx: &mut Ctx, original: Option<NodeId>, update: Option<NodeId>) {
        let (o, u) = match (original, update) {
            (None, None) => return,
            (None, Some(_)) => return ctx.add("SCHEMA_ADDED"),
            (Some(_), None) => return ctx.add("SCHEMA_REMOVED"),
            (Some(o), Some(u)) => (o, u),
        };
        let (o, u) = match (self.orig.follow(o), self.upd.follow(u)) {
            (Ok(o), Ok(u)) => (o, u),
            (Err(e), _) | (_, Err(e)) => {
                self.error.get_or_insert(e);
                return;
            }
        };
        self.steps += 1;
        if self.steps > MAX_STEPS {
            self.error
                .get_or_insert_with(|| "the schemas are too complex to compare".into());
            return;
        }
        let key = (self.flipped, o, u);
        let diffs = if let Some(cached) = self.memo.get(&key) {
            cached.clone()
        } else if !self.in_progress.insert(key) {
            match self.seed.get(&key) {
                Some(seeded) => seeded.clone(),
                None => {
                    self.optimism = true;
                    Vec::new()
                }
            }
        } else {
            let mut sub = Ctx::root();
            self.compare_types(&mut sub, o, u);
            self.memo.insert(key, sub.diffs.clone());
            self.in_progress.remove(&key);
            sub.diffs
        };
        ctx.add_rebased(&diffs);
    }

    fn compare_types(&mut self, ctx: &mut Ctx, o: NodeId, u: NodeId) {
        let (orig, upd) = (self.orig, self.upd);
        let (on, un) = (orig.node(o), upd.node(u));
        match (&on.kind, &un.kind) {
            (ok, Kind::Combined(criterion, subs)) if !matches!(ok, Kind::Combined(..)) => {
                if subs.len() == 1 {
                    let mut sub = ctx.sub();
                    self.compare(&mut sub, Some(o), Some(subs[0]));
                    if self.all_compatible(&sub.diffs) {
                        ctx.diffs.extend(sub.diffs);
                        return;
                    }
                } else if matches!(criterion, Criterion::Any | Criterion::One) {
                    for &s in subs {
                        let mut sub = ctx.sub();
                        self.compare(&mut sub, Some(o), Some(s));
                        if self.all_compatible(&sub.diffs) {
                            ctx.diffs.extend(sub.diffs);
                            ctx.add("SUM_TYPE_EXTENDED");
                            return;
                        }
                    }
                }
            }
            (Kind::Combined(criterion, subs), uk) if !matches!(uk, Kind::Combined(..)) => {
                if subs.len() == 1 {
                    let mut sub = ctx.sub();
                    self.compare(&mut sub, Some(subs[0]), Some(u));
                    if self.all_compatible(&sub.diffs) {
                        ctx.diffs.extend(sub.diffs);
                        return;
                    }
                } else if *criterion == Criterion::All {
                    for &s in subs {
                        let mut sub = ctx.sub();
                        self.compare(&mut sub, Some(s), Some(u));
                        if self.all_compatible(&sub.diffs) {
                            ctx.diffs.extend(sub.diffs);
                            ctx.add("PRODUCT_TYPE_NARROWED");
                            return;
                        }
                    }
                }
            }
            _ => {}
        }
        if kind_class(&on.kind) != kind_class(&un.kind) {
            if on.is_false() || un.is_empty() {
                return;
            }
            let connect = |n: &super::model::Node| {
                n.unprocessed.get("connect.type").and_then(Value::as_str) == Some("bytes")
            };
            if connect(on) && connect(un) {
                return;
            }
            ctx.add("TYPE_CHANGED");
            return;
        }
        if on.id != un.id {
            ctx.add("ID_CHANGED");
        }
        if on.title != un.title {
            ctx.add("TITLE_CHANGED");
        }
        if on.description != un.description {
            ctx.add("DESCRIPTION_CHANGED");
        }
        if on.default != un.default {
            ctx.add("DEFAULT_CHANGED");
        }
        match (&on.kind, &un.kind) {
            (Kind::String(a), Kind::String(b)) => string_diff(ctx, a, b),
            (Kind::Number(a), Kind::Number(b)) => number_diff(ctx, a, b),
            (Kind::Const(a), Kind::Const(b)) if a != b => ctx.add_at("const", "ENUM_ARRAY_CHANGED"),
            (Kind::Enum(a), Kind::Enum(b)) => enum_diff(ctx, a, b),
            (Kind::Combined(ac, asubs), Kind::Combined(bc, bsubs)) => {
                self.combined(ctx, (*ac, asubs), (*bc, bsubs))
            }
            (Kind::Not(a), Kind::Not(b)) => {
                let (a, b) = (*a, *b);
                ctx.enter("not", |ctx| {
                    let mut sub = ctx.sub();
                    // Reversed on purpose: the update's `not` must reject at least what the
                    // original's did. The pair's models swap too.
                    self.swapped(|s| s.compare(&mut sub, Some(b), Some(a)));
                    let compatible = self.all_compatible(&sub.diffs);
                    ctx.add(if compatible {
                        "NOT_TYPE_NARROWED"
                    } else {
                        "NOT_TYPE_EXTENDED"
                    });
                });
            }
            (Kind::Object(a), Kind::Object(b)) => {
                let (a, b) = (a.clone(), b.clone());
                self.object(ctx, &a, &b);
            }
            (Kind::Array(a), Kind::Array(b)) => {
                let (a, b) = (a.clone(), b.clone());
                let (oun, uun) = (on.unprocessed.clone(), un.unprocessed.clone());
                self.array(ctx, &a, &b, &oun, &uun);
            }
            _ => {}
        }
    }

    /// Runs `f` with the two models exchanged (for `not`, whose comparison is reversed).
    fn swapped(&mut self, f: impl FnOnce(&mut Self)) {
        std::mem::swap(&mut self.orig, &mut self.upd);
        self.flipped = !self.flipped;
        f(self);
        std::mem::swap(&mut self.orig, &mut self.upd);
        self.flipped = !self.flipped;
    }

    fn combined(
        &mut self,
        ctx: &mut Ctx,
        (oc, osubs): (Criterion, &[NodeId]),
        (uc, usubs): (Criterion, &[NodeId]),
    ) {
        let singleton_o = osubs.len() == 1;
        let singleton_u = usubs.len() == 1;
        let change = if oc == uc {
            None
        } else if uc == Criterion::Any
            || (singleton_o && singleton_u)
            || (singleton_o && uc == Criterion::One)
            || (singleton_u && oc == Criterion::All)
        {
            Some("COMBINED_TYPE_EXTENDED")
        } else {
            Some("COMBINED_TYPE_CHANGED")
        };
        if let Some(c) = change {
            ctx.add(c);
            if c == "COMBINED_TYPE_CHANGED" {
                return;
            }
        }
        let dedup = |model: &Model, subs: &[NodeId]| -> Vec<NodeId> {
            let mut seen: Vec<&Value> = Vec::new();
            let mut out = Vec::new();
            for &s in subs {
                let raw = &model.node(s).raw;
                if !seen.contains(&raw) {
                    seen.push(raw);
                    out.push(s);
                }
            }
            out
        };
        let os = dedup(self.orig, osubs);
        let us = dedup(self.upd, usubs);
        if os.len() < us.len() {
            ctx.add(if uc == Criterion::All {
                "PRODUCT_TYPE_EXTENDED"
            } else {
                "SUM_TYPE_EXTENDED"
            });
        } else if os.len() > us.len() {
            ctx.add(if matches!(oc, Criterion::Any | Criterion::One) {
                "SUM_TYPE_NARROWED"
            } else {
                "PRODUCT_TYPE_NARROWED"
            });
        }
        let mut edges: HashMap<(usize, usize), Vec<Diff>> = HashMap::new();
        for (i, &o) in os.iter().enumerate() {
            ctx.enter(&format!("{}/{i}", oc.keyword()), |ctx| {
                for (j, &u) in us.iter().enumerate() {
                    let mut sub = ctx.sub();
                    self.compare(&mut sub, Some(o), Some(u));
                    if self.all_compatible(&sub.diffs) {
                        edges.insert((i, j), sub.diffs);
                    }
                }
            });
        }
        let matching = maximum_matching(os.len(), us.len(), &edges);
        for pair in &matching {
            if let Some(d) = edges.get(pair) {
                ctx.diffs.extend(d.iter().cloned());
            }
        }
        if matching.len() < os.len().min(us.len()) {
            ctx.add("COMBINED_TYPE_SUBSCHEMAS_CHANGED");
        }
    }

    fn object(&mut self, ctx: &mut Ctx, o: &ObjectSchema, u: &ObjectSchema) {
        let prop = |s: &ObjectSchema, k: &str| {
            s.properties.iter().find(|(n, _)| n == k).map(|(_, id)| *id)
        };
        // required
        ctx.enter("required", |ctx| {
            for (k, _) in &o.properties {
                if let Some(uid) = prop(u, k) {
                    let (or, ur) = (o.required.contains(k), u.required.contains(k));
                    if or && !ur {
                        ctx.add_at(k, "REQUIRED_ATTRIBUTE_REMOVED");
                    } else if !or && ur {
                        let has_default = self.upd.node(uid).default.is_some();
                        ctx.add_at(
                            k,
                            if has_default {
                                "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED"
                            } else {
                                "REQUIRED_ATTRIBUTE_ADDED"
                            },
                        );
                    }
                }
            }
        });
        // properties
        let mut keys: Vec<&String> = o
            .properties
            .iter()
            .chain(&u.properties)
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        keys.dedup();
        ctx.enter("properties", |ctx| {
            for k in keys {
                ctx.enter(k, |ctx| {
                    let (os, us) = (prop(o, k), prop(u, k));
                    match (os, us) {
                        (Some(os), None) => {
                            if is_open(u) {
                                ctx.add("PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL");
                            } else if let Some(partial) = partial_schema(self.upd, u, k) {
                                let mut sub = ctx.sub();
                                self.compare(&mut sub, Some(os), Some(partial));
                                let ok = self.all_compatible(&sub.diffs);
                                ctx.diffs.extend(sub.diffs);
                                ctx.add(if ok {
                                    "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                                } else {
                                    "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                                });
                            } else if self.orig.node(os).is_false() {
                                ctx.add("PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL");
                            } else {
                                ctx.add("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL");
                            }
                        }
                        (None, Some(us)) => {
                            let required = u.required.contains(k);
                            let has_default = self.upd.node(us).default.is_some();
                            if is_open(o) {
                                if self.upd.node(us).is_empty() {
                                    ctx.add("PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL");
                                } else if required {
                                    ctx.add(if has_default {
                                        "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL"
                                    } else {
                                        "REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
                                    });
                                } else {
                                    ctx.add("OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL");
                                }
                            } else {
                                if let Some(partial) = partial_schema(self.orig, o, k) {
                                    let mut sub = ctx.sub();
                                    self.compare(&mut sub, Some(partial), Some(us));
                                    let ok = self.all_compatible(&sub.diffs);
                                    ctx.diffs.extend(sub.diffs);
                                    ctx.add(if ok {
                                        "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                                    } else {
                                        "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                                    });
                                }
                                if required {
                                    ctx.add(if has_default {
                                        "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL"
                                    } else {
                                        "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"
                                    });
                                } else {
                                    ctx.add("OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL");
                                }
                            }
                        }
                        (Some(os), Some(us)) => self.compare(ctx, Some(os), Some(us)),
                        (None, None) => {}
                    }
                });
            }
        });
        // dependencies
        ctx.enter("dependencies", |ctx| {
            let mut keys: Vec<&String> = o
                .property_dependencies
                .keys()
                .chain(u.property_dependencies.keys())
                .collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (od, ud) = (
                    o.property_dependencies.get(k),
                    u.property_dependencies.get(k),
                );
                let t = match (od, ud) {
                    (_, None) => Some("DEPENDENCY_ARRAY_REMOVED"),
                    (None, Some(_)) => Some("DEPENDENCY_ARRAY_ADDED"),
                    (Some(a), Some(b)) => {
                        let (a, b): (HashSet<&String>, HashSet<&String>) =
                            (a.iter().collect(), b.iter().collect());
                        if a == b {
                            None
                        } else if b.is_superset(&a) {
                            Some("DEPENDENCY_ARRAY_EXTENDED")
                        } else if a.is_superset(&b) {
                            Some("DEPENDENCY_ARRAY_NARROWED")
                        } else {
                            Some("DEPENDENCY_ARRAY_CHANGED")
                        }
                    }
                };
                if let Some(t) = t {
                    ctx.add_at(k, t);
                }
            }
            let mut keys: Vec<&String> = o
                .schema_dependencies
                .keys()
                .chain(u.schema_dependencies.keys())
                .collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (od, ud) = (
                    o.schema_dependencies.get(k).copied(),
                    u.schema_dependencies.get(k).copied(),
                );
                ctx.enter(k, |ctx| match (od, ud) {
                    (_, None) => ctx.add("DEPENDENCY_SCHEMA_REMOVED"),
                    (None, Some(_)) => ctx.add("DEPENDENCY_SCHEMA_ADDED"),
                    (Some(a), Some(b)) => self.compare(ctx, Some(a), Some(b)),
                });
            }
        });
        // additionalProperties
        ctx.enter("additionalProperties", |ctx| {
            if o.permits_additional != u.permits_additional {
                ctx.add(if u.permits_additional {
                    "ADDITIONAL_PROPERTIES_ADDED"
                } else {
                    "ADDITIONAL_PROPERTIES_REMOVED"
                });
            } else if o.additional_schema.is_none() && u.additional_schema.is_some() {
                ctx.add("ADDITIONAL_PROPERTIES_NARROWED");
            } else if u.additional_schema.is_none() && o.additional_schema.is_some() {
                ctx.add("ADDITIONAL_PROPERTIES_EXTENDED");
            } else {
                self.compare(ctx, o.additional_schema, u.additional_schema);
            }
        });
        self.unevaluated(
            ctx,
            "unevaluatedProperties",
            "UNEVALUATED_PROPERTIES",
            o.unevaluated,
            u.unevaluated,
        );
        compare_counts(
            ctx,
            "maxProperties",
            o.max_properties,
            u.max_properties,
            "MAX_PROPERTIES",
        );
        compare_counts(
            ctx,
            "minProperties",
            o.min_properties,
            u.min_properties,
            "MIN_PROPERTIES",
        );
    }

    fn unevaluated(
        &mut self,
        ctx: &mut Ctx,
        keyword: &str,
        prefix: &'static str,
        o: Option<NodeId>,
        u: Option<NodeId>,
    ) {
        if o.is_none() && u.is_none() {
            return;
        }
        let t = |suffix: &str| -> &'static str {
            match (prefix, suffix) {
                ("UNEVALUATED_PROPERTIES", "ADDED") => "UNEVALUATED_PROPERTIES_ADDED",
                ("UNEVALUATED_PROPERTIES", "REMOVED") => "UNEVALUATED_PROPERTIES_REMOVED",
                ("UNEVALUATED_PROPERTIES", "NARROWED") => "UNEVALUATED_PROPERTIES_NARROWED",
                ("UNEVALUATED_PROPERTIES", _) => "UNEVALUATED_PROPERTIES_EXTENDED",
                (_, "ADDED") => "UNEVALUATED_ITEMS_ADDED",
                (_, "REMOVED") => "UNEVALUATED_ITEMS_REMOVED",
                (_, "NARROWED") => "UNEVALUATED_ITEMS_NARROWED",
                _ => "UNEVALUATED_ITEMS_EXTENDED",
            }
        };
        let of = o.is_some_and(|n| self.orig.node(n).is_false());
        let uf = u.is_some_and(|n| self.upd.node(n).is_false());
        let oe = o.is_some_and(|n| self.orig.node(n).is_empty());
        let ue = u.is_some_and(|n| self.upd.node(n).is_empty());
        ctx.enter(keyword, |ctx| match (o, u) {
            (None, Some(_)) => ctx.add(t(if uf { "REMOVED" } else { "NARROWED" })),
            (Some(_), None) => ctx.add(t(if of { "ADDED" } else { "EXTENDED" })),
            _ if of && !uf => ctx.add(t("ADDED")),
            _ if !of && uf => ctx.add(t("REMOVED")),
            _ if oe && !ue => ctx.add(t("NARROWED")),
            _ if !oe && ue => ctx.add(t("EXTENDED")),
            _ => self.compare(ctx, o, u),
        });
    }

    fn array(
        &mut self,
        ctx: &mut Ctx,
        o: &ArraySchema,
        u: &ArraySchema,
        o_unprocessed: &serde_json::Map<String, Value>,
        u_unprocessed: &serde_json::Map<String, Value>,
    ) {
        ctx.enter("items", |ctx| self.compare(ctx, o.all_items, u.all_items));
        let empty = Vec::new();
        let (ot, ut) = (
            o.item_schemas.as_ref().unwrap_or(&empty),
            u.item_schemas.as_ref().unwrap_or(&empty),
        );
        let common = ot.len().min(ut.len());
        for i in 0..common {
            ctx.enter(&format!("items/{i}"), |ctx| {
                self.compare(ctx, Some(ot[i]), Some(ut[i]))
            });
        }
        for (i, &os) in ot.iter().enumerate().skip(common) {
            ctx.enter(&format!("items/{i}"), |ctx| {
                if array_open(self.upd, u) {
                    ctx.add("ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL");
                } else if let Some(partial) = array_partial(self.upd, u) {
                    let mut sub = ctx.sub();
                    self.compare(&mut sub, Some(os), Some(partial));
                    let ok = self.all_compatible(&sub.diffs);
                    ctx.diffs.extend(sub.diffs);
                    ctx.add(if ok {
                        "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                    } else {
                        "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                    });
                } else if self.orig.node(os).is_false() {
                    ctx.add("ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL");
                } else {
                    ctx.add("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL");
                }
            });
        }
        for (i, &us) in ut.iter().enumerate().skip(common) {
            ctx.enter(&format!("items/{i}"), |ctx| {
                if array_open(self.orig, o) {
                    ctx.add(if self.upd.node(us).is_empty() {
                        "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
                    } else {
                        "ITEM_ADDED_TO_OPEN_CONTENT_MODEL"
                    });
                } else if let Some(partial) = array_partial(self.orig, o) {
                    let mut sub = ctx.sub();
                    self.compare(&mut sub, Some(partial), Some(us));
                    let ok = self.all_compatible(&sub.diffs);
                    ctx.diffs.extend(sub.diffs);
                    ctx.add(if ok {
                        "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                    } else {
                        "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                    });
                } else {
                    ctx.add("ITEM_ADDED_TO_CLOSED_CONTENT_MODEL");
                }
            });
        }
        ctx.enter("additionalItems", |ctx| {
            if o.permits_additional != u.permits_additional {
                ctx.add(if o.permits_additional {
                    "ADDITIONAL_ITEMS_REMOVED"
                } else {
                    "ADDITIONAL_ITEMS_ADDED"
                });
            } else if o.additional_schema.is_none() && u.additional_schema.is_some() {
                ctx.add("ADDITIONAL_ITEMS_NARROWED");
            } else if u.additional_schema.is_none() && o.additional_schema.is_some() {
                ctx.add("ADDITIONAL_ITEMS_EXTENDED");
            } else {
                self.compare(ctx, o.additional_schema, u.additional_schema);
            }
        });
        self.unevaluated(
            ctx,
            "unevaluatedItems",
            "UNEVALUATED_ITEMS",
            o.unevaluated,
            u.unevaluated,
        );
        compare_counts(ctx, "maxItems", o.max_items, u.max_items, "MAX_ITEMS");
        compare_counts(ctx, "minItems", o.min_items, u.min_items, "MIN_ITEMS");
        if o.unique_items != u.unique_items {
            ctx.add_at(
                "uniqueItems",
                if o.unique_items {
                    "UNIQUE_ITEMS_REMOVED"
                } else {
                    "UNIQUE_ITEMS_ADDED"
                },
            );
        }
        let contains = |m: &serde_json::Map<String, Value>, k: &str| {
            m.get(k).and_then(Value::as_f64).map(|f| f as i64)
        };
        compare_counts(
            ctx,
            "maxContains",
            contains(o_unprocessed, "maxContains"),
            contains(u_unprocessed, "maxContains"),
            "MAX_CONTAINS",
        );
        compare_counts(
            ctx,
            "minContains",
            contains(o_unprocessed, "minContains"),
            contains(u_unprocessed, "minContains"),
            "MIN_CONTAINS",
        );
    }
}

/// "Open" = permits additional properties with no schema for them, no pattern properties, and
/// `unevaluatedProperties` absent or `true`.
fn is_open(o: &ObjectSchema) -> bool {
    o.permits_additional
        && o.additional_schema.is_none()
        && o.pattern_properties.is_empty()
        && o.unevaluated.is_none()
}

fn partial_schema(model: &Model, o: &ObjectSchema, key: &str) -> Option<NodeId> {
    for (pattern, id) in &o.pattern_properties {
        if regex::Regex::new(pattern).is_ok_and(|r| r.is_match(key)) {
            return Some(*id);
        }
    }
    if o.additional_schema.is_some() {
        return o.additional_schema;
    }
    if o.permits_additional
        && let Some(u) = o.unevaluated
        && !model.node(u).is_false()
        && !model.node(u).is_empty()
    {
        return Some(u);
    }
    None
}

fn array_open(model: &Model, a: &ArraySchema) -> bool {
    a.permits_additional
        && a.additional_schema.is_none()
        && a.unevaluated.is_none_or(|u| model.node(u).is_empty())
}

fn array_partial(model: &Model, a: &ArraySchema) -> Option<NodeId> {
    if a.additional_schema.is_some() {
        return a.additional_schema;
    }
    if a.permits_additional
        && let Some(u) = a.unevaluated
        && !model.node(u).is_false()
        && !model.node(u).is_empty()
    {
        return Some(u);
    }
    None
}

/// Hopcroft–Karp is overkill for the handful of subschemas a combined schema has: augmenting
/// paths (Kuhn's algorithm) find the same maximum cardinality. Among maximum matchings the
/// verdict is the same (every edge is a compatible pair); trying the pairs with the fewest
/// differences first picks identical subschemas for each other, as Confluent's tests expect.
fn maximum_matching(
    left: usize,
    right: usize,
    edges: &HashMap<(usize, usize), Vec<Diff>>,
) -> Vec<(usize, usize)> {
    fn augment(
        i: usize,
        right: usize,
        edges: &HashMap<(usize, usize), Vec<Diff>>,
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        let mut neighbours: Vec<usize> = (0..right)
            .filter(|j| edges.contains_key(&(i, *j)))
            .collect();
        neighbours.sort_by_key(|j| (edges.get(&(i, *j)).map_or(0, Vec::len), *j));
        for j in neighbours {
            if !seen[j] {
                seen[j] = true;
                if owner[j].is_none_or(|k| augment(k, right, edges, seen, owner)) {
                    owner[j] = Some(i);
                    return true;
                }
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; right];
    for i in 0..left {
        let mut seen = vec![false; right];
        augment(i, right, edges, &mut seen, &mut owner);
    }
    owner
        .iter()
        .enumerate()
        .filter_map(|(j, o)| o.map(|i| (i, j)))
        .collect()
}

/// `SchemaDiff.compare(original, update)` with the fixpoint over recursive schemas.
pub(super) fn differences(
    original: &Model,
    update: &Model,
    lenient: bool,
) -> Result<Vec<Diff>, String> {
    let mut seed: HashMap<Pair, Vec<Diff>> = HashMap::new();
    loop {
        let mut shared = Shared {
            orig: original,
            upd: update,
            lenient,
            memo: HashMap::new(),
            in_progress: HashSet::new(),
            seed: seed.clone(),
            optimism: false,
            steps: 0,
            error: None,
            flipped: false,
        };
        let mut ctx = Ctx::root();
        shared.compare(&mut ctx, Some(original.root), Some(update.root));
        if let Some(e) = shared.error {
            return Err(e);
        }
        let incompatible: HashMap<Pair, Vec<Diff>> = shared
            .memo
            .iter()
            .filter(|(_, d)| !shared.all_compatible(d))
            .map(|(k, d)| (*k, d.clone()))
            .collect();
        let same: bool = {
            let a: HashSet<&Pair> = incompatible.keys().collect();
            let b: HashSet<&Pair> = seed.keys().collect();
            a == b
        };
        if !shared.optimism || same {
            return Ok(ctx.diffs);
        }
        seed = incompatible;
    }
}
