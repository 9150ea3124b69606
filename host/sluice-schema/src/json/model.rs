//! The JSON Schema object model Confluent's diff runs on: a port of everit-json-schema's loader
//! decisions (which keywords make which schema class, synthetic `allOf` for mixed keywords,
//! `anyOf` for `type` arrays, `$ref` as a reference node), built from `serde_json` values into an
//! arena so identical subschemas reached through one `$ref` are one node, as in Java.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

pub(crate) type NodeId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Criterion {
    All,
    Any,
    One,
}

impl Criterion {
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            Criterion::All => "allOf",
            Criterion::Any => "anyOf",
            Criterion::One => "oneOf",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ObjectSchema {
    pub(crate) properties: Vec<(String, NodeId)>,
    pub(crate) required: Vec<String>,
    pub(crate) permits_additional: bool,
    pub(crate) additional_schema: Option<NodeId>,
    pub(crate) pattern_properties: Vec<(String, NodeId)>,
    pub(crate) property_dependencies: BTreeMap<String, Vec<String>>,
    pub(crate) schema_dependencies: BTreeMap<String, NodeId>,
    pub(crate) min_properties: Option<i64>,
    pub(crate) max_properties: Option<i64>,
    /// `unevaluatedProperties` (2019-09 and later only, as Confluent's translation has it).
    pub(crate) unevaluated: Option<NodeId>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ArraySchema {
    pub(crate) all_items: Option<NodeId>,
    pub(crate) item_schemas: Option<Vec<NodeId>>,
    pub(crate) permits_additional: bool,
    pub(crate) additional_schema: Option<NodeId>,
    pub(crate) min_items: Option<i64>,
    pub(crate) max_items: Option<i64>,
    pub(crate) unique_items: bool,
    /// `unevaluatedItems` (2019-09 and later only).
    pub(crate) unevaluated: Option<NodeId>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct NumberSchema {
    pub(crate) minimum: Option<f64>,
    pub(crate) maximum: Option<f64>,
    pub(crate) exclusive_minimum: Option<f64>,
    pub(crate) exclusive_maximum: Option<f64>,
    /// The JSON text of `multipleOf`, compared as exact decimals.
    pub(crate) multiple_of: Option<String>,
    pub(crate) requires_integer: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct StringSchema {
    pub(crate) min_length: Option<i64>,
    pub(crate) max_length: Option<i64>,
    pub(crate) pattern: Option<String>,
}

/// The Java class of an everit schema: the diff dispatches on it.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Empty,
    True,
    False,
    Null,
    Boolean,
    String(StringSchema),
    Number(NumberSchema),
    Enum(Vec<Value>),
    Const(Value),
    Object(ObjectSchema),
    Array(ArraySchema),
    Combined(Criterion, Vec<NodeId>),
    Not(NodeId),
    Conditional,
    /// A `$ref`, resolved to its target (`None` while the target is being loaded).
    Reference(Option<NodeId>),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) id: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) default: Option<Value>,
    /// Keywords no loader consumed (`connect.type`, `maxContains`, …).
    pub(crate) unprocessed: Map<String, Value>,
    /// The JSON this node was loaded from (combined-schema subschemas are deduplicated on it).
    pub(crate) raw: Value,
}

impl Node {
    fn new(kind: Kind, raw: Value) -> Node {
        Node {
            kind,
            id: None,
            title: None,
            description: None,
            default: None,
            unprocessed: Map::new(),
            raw,
        }
    }

    pub(crate) fn is_false(&self) -> bool {
        matches!(self.kind, Kind::False)
    }

    /// `instanceof EmptySchema` (TrueSchema extends it).
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self.kind, Kind::Empty | Kind::True)
    }
}

/// How drafts differ for the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Draft {
    V4,
    V6,
    V7,
    /// 2019-09 and 2020-12: `unevaluated*`, `$defs`, `prefixItems`, `dependentRequired/Schemas`.
    Modern,
}

pub(crate) fn draft_of(doc: &Value) -> Draft {
    match doc.get("$schema").and_then(Value::as_str) {
        Some(s) if s.contains("draft-04") => Draft::V4,
        Some(s) if s.contains("draft-06") => Draft::V6,
        Some(s) if s.contains("2019-09") || s.contains("2020-12") => Draft::Modern,
        _ => Draft::V7,
    }
}

#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) nodes: Vec<Node>,
    pub(crate) root: NodeId,
}

impl Model {
    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Follows references to the schema they name (bounded: a chain longer than the arena is a
    /// cycle of references, which everit rejects too).
    pub(crate) fn follow(&self, mut id: NodeId) -> Result<NodeId, String> {
        for _ in 0..=self.nodes.len() {
            match self.nodes[id].kind {
                Kind::Reference(Some(target)) => id = target,
                Kind::Reference(None) => return Err("unresolved $ref".into()),
                _ => return Ok(id),
            }
        }
        Err("a $ref cycle refers to itself".into())
    }
}

const MAX_DEPTH: usize = 256;

struct Loader<'a> {
    docs: &'a [(String, Value)],
    draft: Draft,
    nodes: Vec<Node>,
    /// (document, JSON pointer) of every `$ref` target loaded, so each is loaded once.
    targets: HashMap<(usize, String), NodeId>,
}

/// Loads `root` (document 0 of `docs`; the others are the schema's references by name).
pub(crate) fn load(docs: &[(String, Value)]) -> Result<Model, String> {
    let root_doc = &docs.first().ok_or("no schema")?.1;
    let draft = draft_of(root_doc);
    let mut loader = Loader {
        docs,
        draft,
        nodes: Vec::new(),
        targets: HashMap::new(),
    };
    let root = loader.load(0, root_doc, 0)?;
    Ok(Model {
        nodes: loader.nodes,
        root,
    })
}

fn array_keywords(d: Draft) -> &'static [&'static str] {
    match d {
        Draft::V4 => &[
            "items",
            "additionalItems",
            "minItems",
            "maxItems",
            "uniqueItems",
        ],
        Draft::Modern => &[
            "items",
            "prefixItems",
            "additionalItems",
            "minItems",
            "maxItems",
            "uniqueItems",
            "contains",
            "unevaluatedItems",
            "minContains",
            "maxContains",
        ],
        _ => &[
            "items",
            "additionalItems",
            "minItems",
            "maxItems",
            "uniqueItems",
            "contains",
        ],
    }
}

fn object_keywords(d: Draft) -> &'static [&'static str] {
    match d {
        Draft::V4 => &[
            "properties",
            "required",
            "minProperties",
            "maxProperties",
            "dependencies",
            "patternProperties",
            "additionalProperties",
        ],
        Draft::Modern => &[
            "properties",
            "required",
            "minProperties",
            "maxProperties",
            "dependencies",
            "dependentRequired",
            "dependentSchemas",
            "patternProperties",
            "additionalProperties",
            "propertyNames",
            "unevaluatedProperties",
        ],
        _ => &[
            "properties",
            "required",
            "minProperties",
            "maxProperties",
            "dependencies",
            "patternProperties",
            "additionalProperties",
            "propertyNames",
        ],
    }
}

const NUMBER_KEYWORDS: [&str; 5] = [
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];
const STRING_KEYWORDS: [&str; 4] = ["minLength", "maxLength", "pattern", "format"];

/// The part of a schema object that made one extracted schema (its own keywords).
fn subset(obj: &Map<String, Value>, keys: &[&str]) -> Value {
    let mut out = Map::new();
    for k in keys {
        if let Some(v) = obj.get(*k) {
            out.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

fn int_of(v: Option<&Value>) -> Option<i64> {
    v.and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
    })
}

impl Loader<'_> {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn load(&mut self, doc: usize, value: &Value, depth: usize) -> Result<NodeId, String> {
        if depth > MAX_DEPTH {
            return Err("schema nesting too deep".into());
        }
        match value {
            Value::Bool(true) => Ok(self.push(Node::new(Kind::True, value.clone()))),
            Value::Bool(false) => Ok(self.push(Node::new(Kind::False, value.clone()))),
            Value::Object(obj) => self.load_object(doc, obj, value, depth),
            other => Err(format!(
                "a schema must be an object or a boolean, found {other}"
            )),
        }
    }

    fn load_object(
        &mut self,
        doc: usize,
        obj: &Map<String, Value>,
        raw: &Value,
        depth: usize,
    ) -> Result<NodeId, String> {
        let mut remaining = obj.clone();
        let mut extracted: Vec<NodeId> = Vec::new();
        if let Some(r) = remaining.remove("$ref") {
            let target = r.as_str().ok_or("$ref must be a string")?.to_string();
            let id = self.push(Node::new(Kind::Reference(None), raw.clone()));
            let resolved = self.resolve_ref(doc, &target, depth)?;
            self.nodes[id].kind = Kind::Reference(Some(resolved));
            extracted.push(id);
        } else {
            if let Some(e) = remaining.remove("enum") {
                let values = e.as_array().ok_or("enum must be an array")?.clone();
                extracted.push(self.push(Node::new(Kind::Enum(values), subset(obj, &["enum"]))));
            }
            for c in [Criterion::All, Criterion::Any, Criterion::One] {
                if let Some(list) = remaining.remove(c.keyword()) {
                    let items = list
                        .as_array()
                        .ok_or_else(|| format!("{} must be an array", c.keyword()))?;
                    let subs = items
                        .iter()
                        .map(|s| self.load(doc, s, depth + 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    extracted.push(self.push(Node::new(
                        Kind::Combined(c, subs),
                        subset(obj, &[c.keyword()]),
                    )));
                }
            }
            if let Some(n) = remaining.remove("not") {
                let inner = self.load(doc, &n, depth + 1)?;
                extracted.push(self.push(Node::new(Kind::Not(inner), subset(obj, &["not"]))));
            }
            if self.draft != Draft::V4
                && let Some(c) = remaining.remove("const")
            {
                extracted.push(self.push(Node::new(Kind::Const(c), subset(obj, &["const"]))));
            }
            if let Some(t) = remaining.get("type").cloned() {
                remaining.remove("type");
                let id = match &t {
                    Value::String(name) => {
                        self.explicit_type(doc, name, obj, &mut remaining, raw, depth)?
                    }
                    Value::Array(names) => {
                        let mut subs = Vec::new();
                        for n in names {
                            let name = n.as_str().ok_or("type entries must be strings")?;
                            subs.push(self.explicit_type(
                                doc,
                                name,
                                obj,
                                &mut remaining,
                                raw,
                                depth,
                            )?);
                        }
                        self.push(Node::new(
                            Kind::Combined(Criterion::Any, subs),
                            subset(obj, &["type"]),
                        ))
                    }
                    _ => return Err("type must be a string or an array".into()),
                };
                extracted.push(id);
            }
            // Keywords of a type the `type` keyword did not name still make schemas of their own.
            let draft = self.draft;
            if array_keywords(draft)
                .iter()
                .any(|k| remaining.contains_key(*k))
            {
                let a = self.array(doc, obj, &mut remaining, depth)?;
                extracted.push(self.push(Node::new(
                    Kind::Array(a),
                    subset(obj, array_keywords(draft)),
                )));
            }
            if object_keywords(draft)
                .iter()
                .any(|k| remaining.contains_key(*k))
            {
                let o = self.object(doc, obj, &mut remaining, depth)?;
                extracted.push(self.push(Node::new(
                    Kind::Object(o),
                    subset(obj, object_keywords(draft)),
                )));
            }
            if NUMBER_KEYWORDS.iter().any(|k| remaining.contains_key(*k)) {
                let n = self.number(obj, &mut remaining, false)?;
                extracted
                    .push(self.push(Node::new(Kind::Number(n), subset(obj, &NUMBER_KEYWORDS))));
            }
            if STRING_KEYWORDS.iter().any(|k| remaining.contains_key(*k)) {
                let s = self.string(obj, &mut remaining);
                extracted
                    .push(self.push(Node::new(Kind::String(s), subset(obj, &STRING_KEYWORDS))));
            }
            if self.draft != Draft::V4
                && ["if", "then", "else"]
                    .iter()
                    .any(|k| remaining.contains_key(*k))
            {
                for k in ["if", "then", "else"] {
                    if let Some(s) = remaining.remove(k) {
                        self.load(doc, &s, depth + 1)?;
                    }
                }
                extracted.push(self.push(Node::new(
                    Kind::Conditional,
                    subset(obj, &["if", "then", "else"]),
                )));
            }
        }
        let id = match extracted.len() {
            0 => self.push(Node::new(Kind::Empty, raw.clone())),
            1 => {
                // The schema is the object itself: dedup of combined subschemas compares this.
                self.nodes[extracted[0]].raw = raw.clone();
                extracted[0]
            }
            _ => self.push(Node::new(
                Kind::Combined(Criterion::All, extracted),
                raw.clone(),
            )),
        };
        let id_keyword = if self.draft == Draft::V4 { "id" } else { "$id" };
        let node = &mut self.nodes[id];
        node.id = remaining
            .remove(id_keyword)
            .and_then(|v| v.as_str().map(String::from));
        node.title = remaining
            .remove("title")
            .and_then(|v| v.as_str().map(String::from));
        node.description = remaining
            .remove("description")
            .and_then(|v| v.as_str().map(String::from));
        if self.draft == Draft::V7 {
            remaining.remove("readOnly");
            remaining.remove("writeOnly");
        }
        node.default = remaining.remove("default");
        node.unprocessed = remaining;
        Ok(id)
    }

    fn explicit_type(
        &mut self,
        doc: usize,
        name: &str,
        obj: &Map<String, Value>,
        remaining: &mut Map<String, Value>,
        raw: &Value,
        depth: usize,
    ) -> Result<NodeId, String> {
        let draft = self.draft;
        let (kind, keywords): (Kind, &[&str]) = match name {
            "string" => (Kind::String(self.string(obj, remaining)), &STRING_KEYWORDS),
            "integer" => (
                Kind::Number(self.number(obj, remaining, true)?),
                &NUMBER_KEYWORDS,
            ),
            "number" => (
                Kind::Number(self.number(obj, remaining, false)?),
                &NUMBER_KEYWORDS,
            ),
            "boolean" => (Kind::Boolean, &[]),
            "null" => (Kind::Null, &[]),
            "array" => (
                Kind::Array(self.array(doc, obj, remaining, depth)?),
                array_keywords(draft),
            ),
            "object" => (
                Kind::Object(self.object(doc, obj, remaining, depth)?),
                object_keywords(draft),
            ),
            other => return Err(format!("unknown type: [{other}]")),
        };
        let _ = raw;
        let mut own = subset(obj, keywords);
        if let Value::Object(o) = &mut own {
            o.insert("type".into(), Value::String(name.to_string()));
        }
        Ok(self.push(Node::new(kind, own)))
    }

    fn string(
        &mut self,
        obj: &Map<String, Value>,
        remaining: &mut Map<String, Value>,
    ) -> StringSchema {
        for k in STRING_KEYWORDS {
            remaining.remove(k);
        }
        StringSchema {
            min_length: int_of(obj.get("minLength")),
            max_length: int_of(obj.get("maxLength")),
            pattern: obj.get("pattern").and_then(Value::as_str).map(String::from),
        }
    }

    fn number(
        &mut self,
        obj: &Map<String, Value>,
        remaining: &mut Map<String, Value>,
        integer: bool,
    ) -> Result<NumberSchema, String> {
        for k in NUMBER_KEYWORDS {
            remaining.remove(k);
        }
        let num = |k: &str| obj.get(k).and_then(Value::as_f64);
        let (exclusive_minimum, exclusive_maximum) = if self.draft == Draft::V4 {
            (None, None)
        } else {
            (num("exclusiveMinimum"), num("exclusiveMaximum"))
        };
        let multiple_of = match obj.get("multipleOf") {
            Some(Value::Number(n)) => {
                if n.as_f64() == Some(0.0) {
                    return Err("multipleOf should not be 0".into());
                }
                Some(n.to_string())
            }
            Some(_) => return Err("multipleOf must be a number".into()),
            None => None,
        };
        Ok(NumberSchema {
            minimum: num("minimum"),
            maximum: num("maximum"),
            exclusive_minimum,
            exclusive_maximum,
            multiple_of,
            requires_integer: integer,
        })
    }

    fn array(
        &mut self,
        doc: usize,
        obj: &Map<String, Value>,
        remaining: &mut Map<String, Value>,
        depth: usize,
    ) -> Result<ArraySchema, String> {
        for k in array_keywords(self.draft) {
            if !matches!(*k, "minContains" | "maxContains" | "unevaluatedItems") {
                remaining.remove(*k);
            }
        }
        let mut a = ArraySchema {
            permits_additional: true,
            min_items: int_of(obj.get("minItems")),
            max_items: int_of(obj.get("maxItems")),
            unique_items: obj
                .get("uniqueItems")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ..ArraySchema::default()
        };
        let prefix = if self.draft == Draft::Modern {
            obj.get("prefixItems").and_then(Value::as_array)
        } else {
            None
        };
        let (tuple, rest) = match (prefix, obj.get("items")) {
            (Some(p), items) => (Some(p), items),
            (None, Some(Value::Array(items))) => (Some(items), obj.get("additionalItems")),
            (None, Some(all @ (Value::Object(_) | Value::Bool(_)))) => {
                a.all_items = Some(self.load(doc, all, depth + 1)?);
                (None, None)
            }
            (None, _) => (None, obj.get("additionalItems")),
        };
        if let Some(items) = tuple {
            let subs = items
                .iter()
                .map(|s| self.load(doc, s, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            a.item_schemas = Some(subs);
        }
        match rest {
            Some(Value::Bool(b)) => a.permits_additional = *b,
            Some(v @ Value::Object(_)) => {
                a.additional_schema = Some(self.load(doc, v, depth + 1)?)
            }
            _ => {}
        }
        if self.draft == Draft::Modern
            && let Some(u) = remaining.remove("unevaluatedItems")
        {
            a.unevaluated = Some(self.load(doc, &u, depth + 1)?);
        }
        if let Some(c) = obj.get("contains") {
            self.load(doc, c, depth + 1)?;
        }
        Ok(a)
    }

    fn object(
        &mut self,
        doc: usize,
        obj: &Map<String, Value>,
        remaining: &mut Map<String, Value>,
        depth: usize,
    ) -> Result<ObjectSchema, String> {
        for k in object_keywords(self.draft) {
            if *k != "unevaluatedProperties" {
                remaining.remove(*k);
            }
        }
        let mut o = ObjectSchema {
            permits_additional: true,
            min_properties: int_of(obj.get("minProperties")),
            max_properties: int_of(obj.get("maxProperties")),
            ..ObjectSchema::default()
        };
        if let Some(props) = obj.get("properties") {
            let props = props.as_object().ok_or("properties must be an object")?;
            for (k, v) in props {
                let id = self.load(doc, v, depth + 1)?;
                o.properties.push((k.clone(), id));
            }
        }
        match obj.get("additionalProperties") {
            Some(Value::Bool(b)) => o.permits_additional = *b,
            Some(v @ Value::Object(_)) => {
                o.additional_schema = Some(self.load(doc, v, depth + 1)?)
            }
            Some(_) => return Err("additionalProperties must be a boolean or a schema".into()),
            None => {}
        }
        if let Some(req) = obj.get("required") {
            let req = req.as_array().ok_or("required must be an array")?;
            for r in req {
                o.required.push(
                    r.as_str()
                        .ok_or("required entries must be strings")?
                        .to_string(),
                );
            }
        }
        if let Some(pp) = obj.get("patternProperties") {
            let pp = pp
                .as_object()
                .ok_or("patternProperties must be an object")?;
            for (k, v) in pp {
                let id = self.load(doc, v, depth + 1)?;
                o.pattern_properties.push((k.clone(), id));
            }
        }
        let mut deps: Vec<(&String, &Value)> = Vec::new();
        for key in ["dependencies", "dependentRequired", "dependentSchemas"] {
            if let Some(d) = obj.get(key) {
                deps.extend(
                    d.as_object()
                        .ok_or_else(|| format!("{key} must be an object"))?
                        .iter(),
                );
            }
        }
        for (k, v) in deps {
            match v {
                Value::Array(names) => {
                    let list = o.property_dependencies.entry(k.clone()).or_default();
                    for n in names {
                        list.push(
                            n.as_str()
                                .ok_or("dependency entries must be strings")?
                                .to_string(),
                        );
                    }
                }
                other => {
                    let id = self.load(doc, other, depth + 1)?;
                    o.schema_dependencies.insert(k.clone(), id);
                }
            }
        }
        if let Some(pn) = obj.get("propertyNames") {
            self.load(doc, pn, depth + 1)?;
        }
        if self.draft == Draft::Modern
            && let Some(u) = remaining.remove("unevaluatedProperties")
        {
            o.unevaluated = Some(self.load(doc, &u, depth + 1)?);
        }
        Ok(o)
    }

    /// Resolves a `$ref` to a node: `#...` points into the current document, anything else names
    /// a reference (by its name, its last path segment or its `$id`), then its fragment.
    fn resolve_ref(&mut self, doc: usize, target: &str, depth: usize) -> Result<NodeId, String> {
        let (base, fragment) = target.split_once('#').unwrap_or((target, ""));
        let doc = if base.is_empty() {
            doc
        } else {
            self.find_doc(base)
                .ok_or_else(|| format!("unresolved $ref '{target}'"))?
        };
        let key = (doc, fragment.to_string());
        if let Some(&id) = self.targets.get(&key) {
            return Ok(id);
        }
        let docs = self.docs;
        let root = &docs[doc].1;
        let value = if fragment.is_empty() {
            Some(root)
        } else if fragment.starts_with('/') {
            root.pointer(&fragment.replace("%25", "%"))
        } else {
            find_anchor(root, fragment)
        }
        .ok_or_else(|| format!("unresolved $ref '{target}'"))?;
        // A placeholder first, so a reference cycle resolves to the node being loaded.
        let placeholder = self.push(Node::new(Kind::Reference(None), value.clone()));
        self.targets.insert(key, placeholder);
        let loaded = self.load(doc, value, depth + 1)?;
        self.nodes[placeholder].kind = Kind::Reference(Some(loaded));
        Ok(placeholder)
    }

    fn find_doc(&self, base: &str) -> Option<usize> {
        let last = |s: &str| s.rsplit('/').next().map(String::from);
        self.docs
            .iter()
            .position(|(name, _)| name == base)
            .or_else(|| {
                self.docs.iter().position(|(name, v)| {
                    v.get("$id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id == base || id.trim_end_matches('#') == base)
                        || last(name) == last(base)
                })
            })
    }
}

fn find_anchor<'v>(root: &'v Value, anchor: &str) -> Option<&'v Value> {
    match root {
        Value::Object(o) => {
            let hit = o.get("$anchor").and_then(Value::as_str) == Some(anchor)
                || o.get("$id").and_then(Value::as_str) == Some(&format!("#{anchor}"));
            if hit {
                return Some(root);
            }
            o.values().find_map(|v| find_anchor(v, anchor))
        }
        Value::Array(a) => a.iter().find_map(|v| find_anchor(v, anchor)),
        _ => None,
    }
}
