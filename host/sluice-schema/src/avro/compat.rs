//! Avro compatibility: a port of Java Avro 1.12's `SchemaCompatibility`
//! (`ReaderWriterCompatibilityChecker`) over apache-avro's parsed `Schema`, with Confluent's
//! `Difference` messages. apache-avro's own checker differs from Java (no named-type aliases, no
//! `Ref` resolution, decimal precision enforced, first error only), so it is not used.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, UuidSchema};

use super::AvroSchema;

/// Java's `Schema.Type`, logical types ignored (only the underlying type counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JType {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array,
    Map,
    Union,
    Record,
    Enum,
    Fixed,
}

impl JType {
    fn of(schema: &Schema) -> JType {
        match schema {
            Schema::Null => JType::Null,
            Schema::Boolean => JType::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => JType::Int,
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => JType::Long,
            Schema::Float => JType::Float,
            Schema::Double => JType::Double,
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => JType::Bytes,
            Schema::Decimal(d) => match d.inner {
                InnerDecimalSchema::Bytes => JType::Bytes,
                InnerDecimalSchema::Fixed(_) => JType::Fixed,
            },
            Schema::String | Schema::Uuid(UuidSchema::String) => JType::String,
            Schema::Array(_) => JType::Array,
            Schema::Map(_) => JType::Map,
            Schema::Union(_) => JType::Union,
            Schema::Record(_) => JType::Record,
            Schema::Enum(_) => JType::Enum,
            Schema::Fixed(_) | Schema::Duration(_) | Schema::Uuid(UuidSchema::Fixed(_)) => {
                JType::Fixed
            }
            // Resolved before this is called; an unresolvable name reads as a record mismatch.
            Schema::Ref { .. } => JType::Record,
        }
    }

    fn name(self) -> &'static str {
        match self {
            JType::Null => "NULL",
            JType::Boolean => "BOOLEAN",
            JType::Int => "INT",
            JType::Long => "LONG",
            JType::Float => "FLOAT",
            JType::Double => "DOUBLE",
            JType::Bytes => "BYTES",
            JType::String => "STRING",
            JType::Array => "ARRAY",
            JType::Map => "MAP",
            JType::Union => "UNION",
            JType::Record => "RECORD",
            JType::Enum => "ENUM",
            JType::Fixed => "FIXED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NameMismatch,
    FixedSizeMismatch,
    MissingEnumSymbols,
    ReaderFieldMissingDefaultValue,
    TypeMismatch,
    MissingUnionBranch,
}

#[derive(Debug, Clone)]
struct Incompatibility {
    kind: Kind,
    location: String,
    message: String,
}

#[derive(Debug, Clone, Default)]
struct Outcome {
    incompatible: bool,
    found: Vec<Incompatibility>,
}

impl Outcome {
    fn merge(&mut self, other: &Outcome) {
        self.incompatible |= other.incompatible;
        self.found.extend(other.found.iter().cloned());
    }
}

/// A name, its aliases (full names) and, for fixed, its size: what the name checks read.
struct Named<'a> {
    name: &'a apache_avro::schema::Name,
    aliases: Option<&'a Vec<apache_avro::schema::Alias>>,
    size: usize,
}

fn fixed(f: &apache_avro::schema::FixedSchema) -> Named<'_> {
    Named {
        name: &f.name,
        aliases: f.aliases.as_ref(),
        size: f.size,
    }
}

fn named(schema: &Schema) -> Option<Named<'_>> {
    Some(match schema {
        Schema::Record(r) => Named {
            name: &r.name,
            aliases: r.aliases.as_ref(),
            size: 0,
        },
        Schema::Enum(e) => Named {
            name: &e.name,
            aliases: e.aliases.as_ref(),
            size: 0,
        },
        Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => fixed(f),
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Fixed(f) => fixed(f),
            InnerDecimalSchema::Bytes => return None,
        },
        _ => return None,
    })
}

struct Checker<'a> {
    reader: &'a AvroSchema,
    writer: &'a AvroSchema,
    /// Results by (reader, writer) node identity; `None` while the pair is being computed, which
    /// reads as compatible (Java's `RECURSION_IN_PROGRESS`).
    memo: HashMap<(usize, usize), Option<Outcome>>,
    error: Option<String>,
}

/// Canonical node for identity: named definitions and `Ref`s both map to the names-table entry,
/// so a recursive type meets itself as the same pair.
fn canon<'a>(ctx: &'a AvroSchema, schema: &'a Schema) -> &'a Schema {
    let full = match schema {
        Schema::Ref { name } => Some(name.fullname(None)),
        other => named(other).map(|n| n.name.fullname(None)),
    };
    match full.and_then(|f| ctx.names.get(&f)) {
        Some(def) => def,
        None => schema,
    }
}

fn location_string(location: &[String]) -> String {
    let mut s = String::from("/");
    for (i, token) in location.iter().skip(1).enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.push_str(&token.replace('~', "~0").replace('/', "~1"));
    }
    s
}

impl<'a> Checker<'a> {
    fn compat(
        &mut self,
        token: &str,
        reader: &'a Schema,
        writer: &'a Schema,
        location: &mut Vec<String>,
    ) -> Outcome {
        location.push(token.to_string());
        let reader = canon(self.reader, reader);
        let writer = canon(self.writer, writer);
        let key = (
            reader as *const Schema as usize,
            writer as *const Schema as usize,
        );
        let result = match self.memo.get(&key) {
            Some(Some(done)) => done.clone(),
            Some(None) => Outcome::default(),
            None => {
                self.memo.insert(key, None);
                let r = self.calculate(reader, writer, location);
                self.memo.insert(key, Some(r.clone()));
                r
            }
        };
        location.pop();
        result
    }

    /// Java's two-argument `getCompatibility`: a fresh location, the shared memo.
    fn compat_fresh(&mut self, reader: &'a Schema, writer: &'a Schema) -> Outcome {
        let mut location = Vec::new();
        self.compat("", reader, writer, &mut location)
    }

    fn incompatible(kind: Kind, message: String, location: &[String]) -> Outcome {
        Outcome {
            incompatible: true,
            found: vec![Incompatibility {
                kind,
                location: location_string(location),
                message,
            }],
        }
    }

    fn type_mismatch(reader: JType, writer: JType, location: &[String]) -> Outcome {
        Self::incompatible(
            Kind::TypeMismatch,
            format!(
                "reader type: {} not compatible with writer type: {}",
                reader.name(),
                writer.name()
            ),
            location,
        )
    }

    fn calculate(
        &mut self,
        reader: &'a Schema,
        writer: &'a Schema,
        location: &mut Vec<String>,
    ) -> Outcome {
        let (rt, wt) = (JType::of(reader), JType::of(writer));
        let mut result = Outcome::default();
        if rt == wt {
            match rt {
                JType::Array => {
                    if let (Schema::Array(r), Schema::Array(w)) = (reader, writer) {
                        let o = self.compat("items", &r.items, &w.items, location);
                        result.merge(&o);
                    }
                }
                JType::Map => {
                    if let (Schema::Map(r), Schema::Map(w)) = (reader, writer) {
                        let o = self.compat("values", &r.types, &w.types, location);
                        result.merge(&o);
                    }
                }
                JType::Fixed => {
                    result.merge(&self.check_names(reader, writer, location));
                    let (rs, ws) = (
                        named(reader).map_or(0, |n| n.size),
                        named(writer).map_or(0, |n| n.size),
                    );
                    if rs != ws {
                        location.push("size".into());
                        result.merge(&Self::incompatible(
                            Kind::FixedSizeMismatch,
                            format!("expected: {ws}, found: {rs}"),
                            location,
                        ));
                        location.pop();
                    }
                }
                JType::Enum => {
                    result.merge(&self.check_names(reader, writer, location));
                    if let (Schema::Enum(r), Schema::Enum(w)) = (reader, writer) {
                        location.push("symbols".into());
                        let missing: std::collections::BTreeSet<&String> = w
                            .symbols
                            .iter()
                            .filter(|s| !r.symbols.contains(s))
                            .collect();
                        let reader_default_ok =
                            r.default.as_ref().is_some_and(|d| r.symbols.contains(d));
                        if !missing.is_empty() && !reader_default_ok {
                            let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                            result.merge(&Self::incompatible(
                                Kind::MissingEnumSymbols,
                                format!("[{}]", list.join(", ")),
                                location,
                            ));
                        }
                        location.pop();
                    }
                }
                JType::Record => {
                    result.merge(&self.check_names(reader, writer, location));
                    if let (Schema::Record(_), Schema::Record(_)) = (reader, writer) {
                        let o = self.check_fields(reader, writer, location);
                        result.merge(&o);
                    }
                }
                JType::Union => {
                    if let Schema::Union(w) = writer {
                        for (i, branch) in w.variants().iter().enumerate() {
                            location.push(i.to_string());
                            let o = self.compat_fresh(reader, branch);
                            if o.incompatible {
                                let bt = JType::of(canon(self.writer, branch));
                                result.merge(&Self::incompatible(
                                    Kind::MissingUnionBranch,
                                    format!("reader union lacking writer type: {}", bt.name()),
                                    location,
                                ));
                            }
                            location.pop();
                        }
                    }
                }
                _ => {}
            }
            return result;
        }
        if let Schema::Union(w) = writer {
            for (i, branch) in w.variants().iter().enumerate() {
                let o = self.compat(&i.to_string(), reader, branch, location);
                result.merge(&o);
            }
            return result;
        }
        match rt {
            JType::Long if wt == JType::Int => result,
            JType::Float if matches!(wt, JType::Int | JType::Long) => result,
            JType::Double if matches!(wt, JType::Int | JType::Long | JType::Float) => result,
            JType::Bytes if wt == JType::String => result,
            JType::String if wt == JType::Bytes => result,
            JType::Union => {
                if let Schema::Union(r) = reader {
                    for branch in r.variants() {
                        if !self.compat_fresh(branch, writer).incompatible {
                            return result;
                        }
                    }
                }
                Self::incompatible(
                    Kind::MissingUnionBranch,
                    format!("reader union lacking writer type: {}", wt.name()),
                    location,
                )
            }
            _ => Self::type_mismatch(rt, wt, location),
        }
    }

    fn check_names(&self, reader: &Schema, writer: &Schema, location: &mut Vec<String>) -> Outcome {
        let (Some(r), Some(w)) = (named(reader), named(writer)) else {
            return Outcome::default();
        };
        let writer_full = w.name.fullname(None);
        let equal = r.name.name() == w.name.name()
            || r.aliases
                .is_some_and(|a| a.iter().any(|a| a.fullname(None) == writer_full));
        if equal {
            return Outcome::default();
        }
        location.push("name".into());
        let o = Self::incompatible(
            Kind::NameMismatch,
            format!("expected: {writer_full}"),
            location,
        );
        location.pop();
        o
    }

    fn check_fields(
        &mut self,
        reader: &'a Schema,
        writer: &'a Schema,
        location: &mut Vec<String>,
    ) -> Outcome {
        let (Schema::Record(r), Schema::Record(w)) = (reader, writer) else {
            return Outcome::default();
        };
        let mut result = Outcome::default();
        location.push("fields".into());
        for (pos, rf) in r.fields.iter().enumerate() {
            location.push(pos.to_string());
            // Java's `getField` finds by name only (apache-avro's `lookup` also holds aliases).
            let by_name = |name: &str| w.fields.iter().find(|f| f.name == name);
            let mut matches: Vec<&'a apache_avro::schema::RecordField> = Vec::new();
            matches.extend(by_name(&rf.name));
            for alias in &rf.aliases {
                matches.extend(by_name(alias));
            }
            match matches.as_slice() {
                [] => {
                    if rf.default.is_none() {
                        let field_schema = canon(self.reader, &rf.schema);
                        let enum_default =
                            matches!(field_schema, Schema::Enum(e) if e.default.is_some());
                        if enum_default {
                            let o = self.compat("type", &rf.schema, writer, location);
                            result.merge(&o);
                        } else {
                            result.merge(&Self::incompatible(
                                Kind::ReaderFieldMissingDefaultValue,
                                rf.name.clone(),
                                location,
                            ));
                        }
                    }
                }
                [wf] => {
                    let o = self.compat("type", &rf.schema, &wf.schema, location);
                    result.merge(&o);
                }
                _ => {
                    if self.error.is_none() {
                        self.error = Some(format!(
                            "Reader record field {} matches multiple fields in writer record schema {}",
                            rf.name,
                            w.name.fullname(None)
                        ));
                    }
                }
            }
            location.pop();
        }
        location.pop();
        result
    }
}

fn describe(inc: &Incompatibility, reader_label: &str, writer_label: &str) -> String {
    let p = &inc.location;
    let (error_type, description) = match inc.kind {
        Kind::FixedSizeMismatch => (
            "FIXED_SIZE_MISMATCH",
            format!(
                "The size of FIXED type field at path '{p}' in the {reader_label} schema does not match with the {writer_label} schema"
            ),
        ),
        Kind::TypeMismatch => (
            "TYPE_MISMATCH",
            format!(
                "The type (path '{p}') of a field in the {reader_label} schema does not match with the {writer_label} schema"
            ),
        ),
        Kind::NameMismatch => (
            "NAME_MISMATCH",
            format!("The name of the schema has changed (path '{p}')"),
        ),
        Kind::MissingEnumSymbols => (
            "MISSING_ENUM_SYMBOLS",
            format!(
                "The {reader_label} schema is missing enum symbols '{}' at path '{p}' in the {writer_label} schema",
                inc.message
            ),
        ),
        Kind::MissingUnionBranch => (
            "MISSING_UNION_BRANCH",
            format!(
                "The {reader_label} schema is missing a type inside a union field at path '{p}' in the {writer_label} schema"
            ),
        ),
        Kind::ReaderFieldMissingDefaultValue => (
            "READER_FIELD_MISSING_DEFAULT_VALUE",
            format!(
                "The field '{}' at path '{p}' in the {reader_label} schema has no default value and is missing in the {writer_label} schema",
                inc.message
            ),
        ),
    };
    format!(
        "{{errorType:'{error_type}', description:'{description}', additionalInfo:'{}'}}",
        inc.message
    )
}

/// Whether `reader` can read data written with `writer`: Confluent's
/// `AvroSchema.isBackwardCompatible`, one message per incompatibility (empty = compatible).
pub(crate) fn check(
    reader: &AvroSchema,
    writer: &AvroSchema,
    reader_label: &str,
    writer_label: &str,
) -> Vec<String> {
    let mut checker = Checker {
        reader,
        writer,
        memo: HashMap::new(),
        error: None,
    };
    let mut location = Vec::new();
    let outcome = checker.compat("", &reader.root, &writer.root, &mut location);
    if let Some(e) = checker.error {
        return vec![format!(
            "Unexpected exception during compatibility check: {e}"
        )];
    }
    outcome
        .found
        .iter()
        .map(|i| describe(i, reader_label, writer_label))
        .collect()
}
