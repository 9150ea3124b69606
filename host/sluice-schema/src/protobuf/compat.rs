//! Protobuf compatibility: a port of Confluent's `protobuf/diff` (`SchemaDiff`,
//! `MessageSchemaDiff`, `FieldSchemaDiff`, `EnumSchemaDiff`, `Context`, after DGS-24604).
//!
//! Confluent diffs Wire's AST of the `.proto` text; the descriptors are mapped back to that model
//! first: proto3 fields without a label have none, `optional` ones (synthetic oneof dropped) are
//! OPTIONAL, oneof members have none, map fields are `map<K, V>` with their entry messages gone.

use std::collections::{BTreeSet, HashMap, HashSet};

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
};

use super::ProtobufSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PLabel {
    Optional,
    Required,
    Repeated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FType {
    Scalar(&'static str),
    /// A message or enum type name as the descriptor has it (fully qualified, leading dot).
    Named(String),
    Map(Box<FType>, Box<FType>),
}

impl FType {
    fn text(&self) -> String {
        match self {
            FType::Scalar(s) => (*s).to_string(),
            FType::Named(n) => n.clone(),
            FType::Map(k, v) => format!("map<{}, {}>", k.text(), v.text()),
        }
    }
}

#[derive(Debug)]
struct PField {
    label: Option<PLabel>,
    ty: FType,
    name: String,
    tag: i32,
}

#[derive(Debug)]
struct POneof {
    name: String,
    fields: Vec<PField>,
}

#[derive(Debug)]
struct PMessage {
    name: String,
    fields: Vec<PField>,
    oneofs: Vec<POneof>,
    nested: Vec<PType>,
}

#[derive(Debug)]
struct PEnum {
    name: String,
    constants: Vec<(String, i32)>,
}

#[derive(Debug)]
enum PType {
    Message(PMessage),
    Enum(PEnum),
}

impl PType {
    fn name(&self) -> &str {
        match self {
            PType::Message(m) => &m.name,
            PType::Enum(e) => &e.name,
        }
    }
}

#[derive(Debug)]
struct PFile {
    package: Option<String>,
    types: Vec<PType>,
}

fn scalar(t: Type) -> Option<&'static str> {
    Some(match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => return None,
    })
}

fn field_type(f: &FieldDescriptorProto) -> FType {
    match scalar(f.r#type()) {
        Some(s) => FType::Scalar(s),
        None => FType::Named(f.type_name().to_string()),
    }
}

fn is_map_entry(m: &DescriptorProto) -> bool {
    m.options.as_ref().and_then(|o| o.map_entry) == Some(true)
}

fn model_message(m: &DescriptorProto, proto3: bool) -> PMessage {
    let real_oneof = |f: &FieldDescriptorProto| f.oneof_index.filter(|_| !f.proto3_optional());
    let entry_for = |f: &FieldDescriptorProto| -> Option<&DescriptorProto> {
        if f.label() != Label::Repeated || f.r#type() != Type::Message {
            return None;
        }
        let simple = f.type_name().rsplit('.').next()?;
        m.nested_type
            .iter()
            .find(|n| n.name() == simple && is_map_entry(n))
    };
    let field = |f: &FieldDescriptorProto, in_oneof: bool| -> PField {
        if let Some(entry) = entry_for(f) {
            let key = entry.field.iter().find(|x| x.number() == 1).map(field_type);
            let value = entry.field.iter().find(|x| x.number() == 2).map(field_type);
            if let (Some(k), Some(v)) = (key, value) {
                return PField {
                    label: None,
                    ty: FType::Map(Box::new(k), Box::new(v)),
                    name: f.name().to_string(),
                    tag: f.number(),
                };
            }
        }
        let label = match f.label() {
            _ if in_oneof => None,
            Label::Repeated => Some(PLabel::Repeated),
            Label::Required => Some(PLabel::Required),
            Label::Optional if proto3 && !f.proto3_optional() => None,
            Label::Optional => Some(PLabel::Optional),
        };
        PField {
            label,
            ty: field_type(f),
            name: f.name().to_string(),
            tag: f.number(),
        }
    };
    let mut fields = Vec::new();
    let mut oneofs: Vec<POneof> = Vec::new();
    let mut oneof_slots: HashMap<i32, usize> = HashMap::new();
    for f in &m.field {
        match real_oneof(f) {
            None => fields.push(field(f, false)),
            Some(i) => {
                let slot = *oneof_slots.entry(i).or_insert_with(|| {
                    oneofs.push(POneof {
                        name: m
                            .oneof_decl
                            .get(i as usize)
                            .map_or_else(String::new, |o| o.name().to_string()),
                        fields: Vec::new(),
                    });
                    oneofs.len() - 1
                });
                oneofs[slot].fields.push(field(f, true));
            }
        }
    }
    let mut nested = Vec::new();
    for n in &m.nested_type {
        if !is_map_entry(n) {
            nested.push(PType::Message(model_message(n, proto3)));
        }
    }
    for e in &m.enum_type {
        nested.push(PType::Enum(model_enum(e)));
    }
    PMessage {
        name: m.name().to_string(),
        fields,
        oneofs,
        nested,
    }
}

fn model_enum(e: &EnumDescriptorProto) -> PEnum {
    PEnum {
        name: e.name().to_string(),
        constants: e
            .value
            .iter()
            .map(|v| (v.name().to_string(), v.number()))
            .collect(),
    }
}

fn model_file(fd: &FileDescriptorProto) -> PFile {
    let proto3 = fd.syntax.as_deref() == Some("proto3");
    let mut types = Vec::new();
    for m in &fd.message_type {
        types.push(PType::Message(model_message(m, proto3)));
    }
    for e in &fd.enum_type {
        types.push(PType::Enum(model_enum(e)));
    }
    PFile {
        package: fd.package.clone().filter(|p| !p.is_empty()),
        types,
    }
}

/// Where a type comes from: `Some(("", -1))` for the schema's own file, the reference's
/// (subject, version) for a referenced file, `None` for built-in imports.
type Origin = Option<(String, i32)>;

struct TypeInfo<'m> {
    package: String,
    origin: Origin,
    ty: &'m PType,
}

/// The whole model of one side: its own file and every imported file.
struct Side {
    main: PFile,
    deps: Vec<(Origin, PFile)>,
}

fn side(schema: &ProtobufSchema) -> Side {
    let main_name = schema.file.name().to_string();
    let deps = schema
        .pool
        .files()
        .filter(|f| f.name() != main_name)
        .map(|f| {
            (
                schema.origins.get(f.name()).cloned(),
                model_file(f.file_descriptor_proto()),
            )
        })
        .collect();
    Side {
        main: model_file(schema.file.file_descriptor_proto()),
        deps,
    }
}

fn collect<'m>(side: &'m Side, table: &mut HashMap<String, TypeInfo<'m>>) {
    fn walk<'m>(
        pkg: &str,
        origin: &Origin,
        scope: &mut Vec<String>,
        types: &'m [PType],
        table: &mut HashMap<String, TypeInfo<'m>>,
    ) {
        for t in types {
            scope.push(t.name().to_string());
            let mut name = scope.join(".");
            if !pkg.is_empty() {
                name = format!("{pkg}.{name}");
            }
            table.insert(
                name,
                TypeInfo {
                    package: pkg.to_string(),
                    origin: origin.clone(),
                    ty: t,
                },
            );
            if let PType::Message(m) = t {
                walk(pkg, origin, scope, &m.nested, table);
            }
            scope.pop();
        }
    }
    for (origin, f) in &side.deps {
        walk(
            f.package.as_deref().unwrap_or(""),
            origin,
            &mut Vec::new(),
            &f.types,
            table,
        );
    }
    let main_origin = Some((String::new(), -1));
    walk(
        side.main.package.as_deref().unwrap_or(""),
        &main_origin,
        &mut Vec::new(),
        &side.main.types,
        table,
    );
}

const COMPATIBLE: [&str; 15] = [
    "MESSAGE_ADDED",
    "MESSAGE_MOVED",
    "ENUM_ADDED",
    "ENUM_REMOVED",
    "ENUM_CONST_ADDED",
    "ENUM_CONST_CHANGED",
    "ENUM_CONST_REMOVED",
    "FIELD_ADDED",
    "FIELD_REMOVED",
    "FIELD_NAME_CHANGED",
    "FIELD_STRING_OR_BYTES_LABEL_CHANGED",
    "ONEOF_ADDED",
    "ONEOF_REMOVED",
    "ONEOF_FIELD_ADDED",
    "ONEOF_FIELD_MOVED_TO_TOP_LEVEL",
];

struct Ctx<'m> {
    orig_types: &'m HashMap<String, TypeInfo<'m>>,
    upd_types: &'m HashMap<String, TypeInfo<'m>>,
    orig_pkg: String,
    upd_pkg: String,
    full_path: Vec<String>,
    full_name: Vec<String>,
    schemas: HashSet<usize>,
    diffs: Vec<(&'static str, String)>,
}

impl<'m> Ctx<'m> {
    fn sub(&self) -> Ctx<'m> {
        Ctx {
            orig_types: self.orig_types,
            upd_types: self.upd_types,
            orig_pkg: self.orig_pkg.clone(),
            upd_pkg: self.upd_pkg.clone(),
            full_path: self.full_path.clone(),
            full_name: self.full_name.clone(),
            schemas: self.schemas.clone(),
            diffs: Vec::new(),
        }
    }

    fn add(&mut self, kind: &'static str) {
        self.diffs
            .push((kind, format!("#/{}", self.full_path.join("/"))));
    }

    fn types(&self, orig: bool) -> &'m HashMap<String, TypeInfo<'m>> {
        if orig {
            self.orig_types
        } else {
            self.upd_types
        }
    }

    fn type_for_full(&self, name: &str, orig: bool) -> Option<&'m TypeInfo<'m>> {
        self.types(orig).get(name.strip_prefix('.').unwrap_or(name))
    }

    /// Confluent's `Context.resolve`: a leading dot is fully qualified; otherwise the package and
    /// enclosing scopes are tried innermost first, then the bare name.
    fn resolve(&self, name: &str, orig: bool) -> Option<String> {
        let types = self.types(orig);
        if types.is_empty() {
            return None;
        }
        if let Some(n) = name.strip_prefix('.') {
            return types.contains_key(n).then(|| n.to_string());
        }
        let pkg = if orig { &self.orig_pkg } else { &self.upd_pkg };
        let mut prefix: Vec<&str> = if pkg.is_empty() {
            Vec::new()
        } else {
            pkg.split('.').collect()
        };
        prefix.extend(self.full_name.iter().map(String::as_str));
        while !prefix.is_empty() {
            let candidate = format!("{}.{name}", prefix.join("."));
            if types.contains_key(&candidate) {
                return Some(candidate);
            }
            prefix.pop();
        }
        types.contains_key(name).then(|| name.to_string())
    }

    fn get_type(&self, name: &str, orig: bool) -> Option<&'m TypeInfo<'m>> {
        let full = self.resolve(name, orig)?;
        self.type_for_full(&full, orig)
    }

    fn compatible(&self) -> bool {
        self.diffs.iter().all(|(k, _)| COMPATIBLE.contains(k))
    }

    fn scoped(&mut self, segment: &str, f: impl FnOnce(&mut Self)) {
        self.full_path.push(segment.to_string());
        f(self);
        self.full_path.pop();
    }
}

fn compare_type_elements<'m>(ctx: &mut Ctx<'m>, orig: &'m [PType], upd: &'m [PType]) {
    fn split(types: &[PType]) -> (Vec<&PMessage>, Vec<&PEnum>) {
        let mut messages = Vec::new();
        let mut enums = Vec::new();
        for t in types {
            match t {
                PType::Message(m) => messages.push(m),
                PType::Enum(e) => enums.push(e),
            }
        }
        (messages, enums)
    }
    let (om, oe) = split(orig);
    let (um, ue) = split(upd);
    let mut names: Vec<&str> = om.iter().map(|m| m.name.as_str()).collect();
    for m in &um {
        if !names.contains(&m.name.as_str()) {
            names.push(&m.name);
        }
    }
    for name in names {
        ctx.full_path.push(name.to_string());
        ctx.full_name.push(name.to_string());
        let oi = om.iter().position(|m| m.name == name);
        let ui = um.iter().position(|m| m.name == name);
        match (oi, ui) {
            (Some(_), None) => {
                if ctx.get_type(name, true).is_some() {
                    ctx.add("MESSAGE_REMOVED");
                }
            }
            (None, Some(_)) => {
                if ctx.get_type(name, false).is_some() {
                    ctx.add("MESSAGE_ADDED");
                }
            }
            (Some(o), Some(u)) => {
                compare_messages(ctx, om[o], um[u]);
                if o != u {
                    ctx.add("MESSAGE_MOVED");
                }
            }
            (None, None) => {}
        }
        ctx.full_path.pop();
        ctx.full_name.pop();
    }
    let mut enum_names: Vec<&str> = oe.iter().map(|e| e.name.as_str()).collect();
    for e in &ue {
        if !enum_names.contains(&e.name.as_str()) {
            enum_names.push(&e.name);
        }
    }
    for name in enum_names {
        ctx.full_path.push(name.to_string());
        ctx.full_name.push(name.to_string());
        let o = oe.iter().find(|e| e.name == name);
        let u = ue.iter().find(|e| e.name == name);
        match (o, u) {
            (Some(_), None) => ctx.add("ENUM_REMOVED"),
            (None, Some(_)) => ctx.add("ENUM_ADDED"),
            (Some(o), Some(u)) => compare_enums(ctx, o, u),
            (None, None) => {}
        }
        ctx.full_path.pop();
        ctx.full_name.pop();
    }
}

fn compare_enums(ctx: &mut Ctx<'_>, o: &PEnum, u: &PEnum) {
    let mut tags: Vec<i32> = o.constants.iter().map(|c| c.1).collect();
    for c in &u.constants {
        if !tags.contains(&c.1) {
            tags.push(c.1);
        }
    }
    for tag in tags {
        let on = o.constants.iter().find(|c| c.1 == tag).map(|c| &c.0);
        let un = u.constants.iter().find(|c| c.1 == tag).map(|c| &c.0);
        let kind = match (on, un) {
            (Some(_), None) => "ENUM_CONST_REMOVED",
            (None, Some(_)) => "ENUM_CONST_ADDED",
            (Some(a), Some(b)) if a != b => "ENUM_CONST_CHANGED",
            _ => continue,
        };
        ctx.scoped(&tag.to_string(), |c| c.add(kind));
    }
}

struct Fields<'m> {
    by_tag: HashMap<i32, &'m PField>,
    oneof_of: HashMap<i32, &'m str>,
    oneofs: HashMap<&'m str, &'m POneof>,
}

fn collect_fields(m: &PMessage) -> Fields<'_> {
    let mut f = Fields {
        by_tag: HashMap::new(),
        oneof_of: HashMap::new(),
        oneofs: HashMap::new(),
    };
    for field in &m.fields {
        f.by_tag.insert(field.tag, field);
    }
    for o in &m.oneofs {
        f.oneofs.insert(&o.name, o);
        for field in &o.fields {
            f.by_tag.insert(field.tag, field);
            f.oneof_of.insert(field.tag, &o.name);
        }
    }
    f
}

fn compare_messages<'m>(ctx: &mut Ctx<'m>, original: &'m PMessage, update: &'m PMessage) {
    let key = original as *const PMessage as usize;
    if ctx.schemas.insert(key) {
        let o = collect_fields(original);
        let u = collect_fields(update);
        let deleted: HashSet<&str> = o
            .oneofs
            .iter()
            .filter(|(name, one)| {
                !u.oneofs.contains_key(*name)
                    && !one.fields.iter().any(|f| u.by_tag.contains_key(&f.tag))
            })
            .map(|(name, _)| *name)
            .collect();
        for one in &update.oneofs {
            let mut groups: HashSet<String> = HashSet::new();
            let mut moved_in = 0;
            for f in &one.fields {
                if let Some(origin) = o.oneof_of.get(&f.tag) {
                    groups.insert(format!("oneof:{origin}"));
                } else if o.by_tag.contains_key(&f.tag) {
                    groups.insert(format!("field:{}", f.tag));
                    moved_in += 1;
                }
            }
            if groups.len() > 1 {
                let kind = if moved_in > 1 {
                    "MULTIPLE_FIELDS_MOVED_TO_ONEOF"
                } else {
                    "FIELD_MOVED_TO_EXISTING_ONEOF"
                };
                ctx.scoped(&one.name, |c| c.add(kind));
            }
        }
        let names: BTreeSet<&str> = o.oneofs.keys().chain(u.oneofs.keys()).copied().collect();
        for name in names {
            if !u.oneofs.contains_key(name) {
                ctx.scoped(name, |c| c.add("ONEOF_REMOVED"));
            } else if !o.oneofs.contains_key(name) {
                ctx.scoped(name, |c| c.add("ONEOF_ADDED"));
            }
        }
        let tags: BTreeSet<i32> = o.by_tag.keys().chain(u.by_tag.keys()).copied().collect();
        for tag in tags {
            let (of, uf) = (o.by_tag.get(&tag), u.by_tag.get(&tag));
            let (o1, u1) = (o.oneof_of.get(&tag).copied(), u.oneof_of.get(&tag).copied());
            let t = tag.to_string();
            match (of, uf) {
                (Some(of), None) => match o1 {
                    Some(one) => {
                        if !deleted.contains(one) {
                            ctx.scoped(one, |c| c.scoped(&t, |c| c.add("ONEOF_FIELD_REMOVED")));
                        }
                    }
                    None => {
                        let kind = if of.label == Some(PLabel::Required) {
                            "REQUIRED_FIELD_REMOVED"
                        } else {
                            "FIELD_REMOVED"
                        };
                        ctx.scoped(&t, |c| c.add(kind));
                    }
                },
                (None, Some(uf)) => match u1 {
                    Some(one) => ctx.scoped(one, |c| c.scoped(&t, |c| c.add("ONEOF_FIELD_ADDED"))),
                    None => {
                        let kind = if uf.label == Some(PLabel::Required) {
                            "REQUIRED_FIELD_ADDED"
                        } else {
                            "FIELD_ADDED"
                        };
                        ctx.scoped(&t, |c| c.add(kind));
                    }
                },
                (Some(of), Some(uf)) => {
                    if o1.is_some() && u1.is_none() {
                        ctx.scoped(&t, |c| c.add("ONEOF_FIELD_MOVED_TO_TOP_LEVEL"));
                    }
                    match u1 {
                        Some(one) => {
                            ctx.full_path.push(one.to_string());
                            ctx.full_path.push(t.clone());
                            compare_fields(ctx, of, uf);
                            ctx.full_path.truncate(ctx.full_path.len() - 2);
                        }
                        None => {
                            ctx.full_path.push(t.clone());
                            compare_fields(ctx, of, uf);
                            ctx.full_path.pop();
                        }
                    }
                }
                (None, None) => {}
            }
        }
        ctx.schemas.remove(&key);
    }
    compare_type_elements(ctx, &original.nested, &update.nested);
}

fn compare_fields<'m>(ctx: &mut Ctx<'m>, o: &'m PField, u: &'m PField) {
    if o.name != u.name {
        ctx.add("FIELD_NAME_CHANGED");
    }
    compare_labels_and_types(ctx, o.label, u.label, &o.ty, &u.ty);
}

#[derive(PartialEq, Eq)]
enum FieldKind {
    Scalar,
    Message,
    Map,
}

fn kind(ctx: &Ctx<'_>, t: &FType, orig: bool) -> FieldKind {
    match t {
        FType::Scalar(_) => FieldKind::Scalar,
        FType::Map(..) => FieldKind::Map,
        FType::Named(n) => match ctx.get_type(n, orig).map(|i| i.ty) {
            Some(PType::Enum(_)) => FieldKind::Scalar,
            _ => FieldKind::Message,
        },
    }
}

fn scalar_kind(ctx: &Ctx<'_>, t: &FType, orig: bool) -> &'static str {
    match t {
        FType::Scalar(s) => match *s {
            "int32" | "int64" | "uint32" | "uint64" | "bool" => "GENERAL_NUMBER",
            "sint32" | "sint64" => "SIGNED_NUMBER",
            "string" | "bytes" => "STRING_OR_BYTES",
            "fixed32" | "sfixed32" => "FIXED32",
            "fixed64" | "sfixed64" => "FIXED64",
            "float" => "FLOAT",
            _ => "DOUBLE",
        },
        FType::Named(n) => match ctx.get_type(n, orig).map(|i| i.ty) {
            Some(PType::Enum(_)) => "GENERAL_NUMBER",
            _ => "MESSAGE",
        },
        FType::Map(..) => "MAP",
    }
}

fn compare_labels_and_types<'m>(
    ctx: &mut Ctx<'m>,
    ol: Option<PLabel>,
    ul: Option<PLabel>,
    ot: &FType,
    ut: &FType,
) {
    let (ok, uk) = (kind(ctx, ot, true), kind(ctx, ut, false));
    if ok != uk {
        ctx.add("FIELD_KIND_CHANGED");
        return;
    }
    match (ok, ot, ut) {
        (FieldKind::Scalar, _, _) => {
            let (os, us) = (scalar_kind(ctx, ot, true), scalar_kind(ctx, ut, false));
            if os != us {
                ctx.add("FIELD_SCALAR_KIND_CHANGED");
            } else if let (Some(a), Some(b)) = (ol, ul)
                && a != b
            {
                ctx.add(if os == "STRING_OR_BYTES" {
                    "FIELD_STRING_OR_BYTES_LABEL_CHANGED"
                } else {
                    "FIELD_NUMERIC_LABEL_CHANGED"
                });
            }
        }
        (FieldKind::Message, _, _) => compare_message_types(ctx, &ot.text(), &ut.text()),
        (FieldKind::Map, FType::Map(ok_, ov), FType::Map(uk_, uv)) => {
            compare_labels_and_types(ctx, None, None, ok_, uk_);
            compare_labels_and_types(ctx, None, None, ov, uv);
        }
        _ => {}
    }
}

fn local_name(full: &str, package: &str) -> String {
    match full.strip_prefix(package).and_then(|r| r.strip_prefix('.')) {
        Some(rest) if !package.is_empty() => rest.to_string(),
        _ => full.to_string(),
    }
}

fn compare_message_types<'m>(ctx: &mut Ctx<'m>, o: &str, u: &str) {
    let (ofn, ufn) = (ctx.resolve(o, true), ctx.resolve(u, false));
    let (Some(ofn), Some(ufn)) = (ofn, ufn) else {
        if o != u {
            ctx.add("FIELD_NAMED_TYPE_CHANGED");
        }
        return;
    };
    let (Some(oti), Some(uti)) = (
        ctx.type_for_full(&ofn, true),
        ctx.type_for_full(&ufn, false),
    ) else {
        return;
    };
    let (oln, uln) = (
        local_name(&ofn, &oti.package),
        local_name(&ufn, &uti.package),
    );
    if oln != uln {
        ctx.add("FIELD_NAMED_TYPE_CHANGED");
        return;
    }
    let same_origin = matches!((&oti.origin, &uti.origin), (Some(a), Some(b)) if a == b);
    if !same_origin && let (PType::Message(om), PType::Message(um)) = (oti.ty, uti.ty) {
        let mut sub = ctx.sub();
        sub.orig_pkg = oti.package.clone();
        sub.upd_pkg = uti.package.clone();
        sub.full_path = oln.split('.').map(String::from).collect();
        sub.full_name = sub.full_path.clone();
        compare_messages(&mut sub, om, um);
        let compatible = sub.compatible();
        ctx.diffs.extend(sub.diffs);
        if !compatible {
            ctx.add("FIELD_NAMED_TYPE_CHANGED");
        }
    }
}

/// Confluent's `SchemaDiff.compare(original, update)`: every difference as (type, path).
fn differences(original: &ProtobufSchema, update: &ProtobufSchema) -> Vec<(&'static str, String)> {
    let (os, us) = (side(original), side(update));
    let mut ot = HashMap::new();
    let mut ut = HashMap::new();
    collect(&os, &mut ot);
    collect(&us, &mut ut);
    let mut ctx = Ctx {
        orig_types: &ot,
        upd_types: &ut,
        orig_pkg: os.main.package.clone().unwrap_or_default(),
        upd_pkg: us.main.package.clone().unwrap_or_default(),
        full_path: Vec::new(),
        full_name: Vec::new(),
        schemas: HashSet::new(),
        diffs: Vec::new(),
    };
    if os.main.package != us.main.package {
        ctx.add("PACKAGE_CHANGED");
    }
    compare_type_elements(&mut ctx, &os.main.types, &us.main.types);
    ctx.diffs
}

fn describe(kind: &str, path: &str, reader: &str, writer: &str) -> String {
    let d = match kind {
        "PACKAGE_CHANGED" => {
            format!(
                "The package at '{path}' in the {reader} schema does not match the package in the {writer} schema"
            )
        }
        "MESSAGE_REMOVED" => {
            format!(
                "The {reader} schema is missing a MESSAGE type at path '{path}' in the {writer} schema"
            )
        }
        "FIELD_KIND_CHANGED" => {
            format!(
                "The type of a field at path '{path}' in the {reader} schema does not match the {writer} schema"
            )
        }
        "FIELD_SCALAR_KIND_CHANGED" => format!(
            "The kind of a SCALAR field at path '{path}' in the {reader} schema does not match its kind in the {writer} schema"
        ),
        "FIELD_NAMED_TYPE_CHANGED" => format!(
            "The type of a MESSAGE field at path '{path}' in the {reader} schema does not match its type in the {writer} schema"
        ),
        "FIELD_NUMERIC_LABEL_CHANGED" => format!(
            "The label for a NUMERIC field at path '{path}' in the {reader} schema does not match its label in the {writer} schema"
        ),
        "REQUIRED_FIELD_ADDED" => {
            format!(
                "A required field  at path '{path}' in the {reader} schema is missing in the {writer} schema"
            )
        }
        "REQUIRED_FIELD_REMOVED" => {
            format!(
                "The {reader} schema is missing a required field at path: '{path}' in the {writer} schema"
            )
        }
        "ONEOF_FIELD_REMOVED" => {
            format!(
                "The {reader} schema is missing a oneof field at path '{path}' in the {writer} schema"
            )
        }
        "ONEOF_FIELD_MOVED_TO_TOP_LEVEL" => format!(
            "The oneof field at path '{path}' in the {reader} schema was moved out of its oneof to a top-level field in the {writer} schema"
        ),
        "MULTIPLE_FIELDS_MOVED_TO_ONEOF" => format!(
            "Multiple fields in the oneof at path '{path}' in the {reader} schema are outside a oneof in the {writer} schema"
        ),
        "FIELD_MOVED_TO_EXISTING_ONEOF" => format!(
            "A field in the oneof at path '{path}' in the {reader} schema is outside an existing oneof in the {writer} schema"
        ),
        _ => String::new(),
    };
    format!("{{errorType:\"{kind}\", description:\"{d}\"}}")
}

/// Whether `reader` can read data written with `writer` (Confluent's
/// `ProtobufSchema.isBackwardCompatible`: the diff from writer to reader, incompatible changes
/// only), one message each.
pub(crate) fn check(
    reader: &ProtobufSchema,
    writer: &ProtobufSchema,
    reader_label: &str,
    writer_label: &str,
) -> Vec<String> {
    differences(writer, reader)
        .into_iter()
        .filter(|(k, _)| !COMPATIBLE.contains(k))
        .map(|(k, p)| describe(k, &p, reader_label, writer_label))
        .collect()
}

/// Every difference, compatible or not, as `"TYPE #/path"` (Confluent's test notation).
#[cfg(test)]
pub(crate) fn difference_list(original: &ProtobufSchema, update: &ProtobufSchema) -> Vec<String> {
    differences(original, update)
        .into_iter()
        .map(|(k, p)| format!("{k} {p}"))
        .collect()
}
