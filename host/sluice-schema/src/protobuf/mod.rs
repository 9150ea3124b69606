//! Protobuf schemas: `.proto` text or a base64 `FileDescriptorProto` (what confluent-kafka-python
//! sends) compiled with protox, imports resolved from the schema's references by import name and
//! from built-in well-known files; the canonical text and the serialized (base64) form.

pub(crate) mod codec;
pub(crate) mod compat;
mod print;

use std::collections::HashMap;

use base64::Engine;
use prost::Message;
use prost_reflect::{DescriptorPool, FileDescriptor};
use prost_types::FileDescriptorProto;
use protox::file::{File, FileResolver, GoogleFileResolver};

use crate::error::SchemaError;

const TYPE: &str = "PROTOBUF";

/// The name given to a schema's own file when its text does not carry one.
const MAIN_FILE: &str = "schema.proto";

/// A compiled Protobuf schema: the pool holding the schema's file and everything it imports.
#[derive(Debug)]
pub(crate) struct ProtobufSchema {
    pub(crate) pool: DescriptorPool,
    pub(crate) file: FileDescriptor,
    /// For each imported file that came from a reference: the reference's (subject, version).
    /// Confluent re-diffs a message type reached through two different references.
    pub(crate) origins: HashMap<String, (String, i32)>,
}

/// One imported file: its import name, its schema text (either form) and its origin.
#[derive(Debug, Clone)]
pub(crate) struct Import {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) subject: String,
    pub(crate) version: i32,
}

/// Well-known files Confluent bundles beyond `google/protobuf/*` (which protox provides), so
/// schemas importing them need no references (confluent-kafka-python never registers them).
const BUNDLED: &[(&str, &str)] = &[
    (
        "confluent/meta.proto",
        include_str!("wellknown/confluent_meta.proto"),
    ),
    (
        "confluent/type/decimal.proto",
        include_str!("wellknown/confluent_decimal.proto"),
    ),
    (
        "google/type/calendar_period.proto",
        include_str!("wellknown/calendar_period.proto"),
    ),
    (
        "google/type/color.proto",
        include_str!("wellknown/color.proto"),
    ),
    (
        "google/type/date.proto",
        include_str!("wellknown/date.proto"),
    ),
    (
        "google/type/datetime.proto",
        include_str!("wellknown/datetime.proto"),
    ),
    (
        "google/type/dayofweek.proto",
        include_str!("wellknown/dayofweek.proto"),
    ),
    (
        "google/type/decimal.proto",
        include_str!("wellknown/decimal.proto"),
    ),
    (
        "google/type/expr.proto",
        include_str!("wellknown/expr.proto"),
    ),
    (
        "google/type/fraction.proto",
        include_str!("wellknown/fraction.proto"),
    ),
    (
        "google/type/interval.proto",
        include_str!("wellknown/interval.proto"),
    ),
    (
        "google/type/latlng.proto",
        include_str!("wellknown/latlng.proto"),
    ),
    (
        "google/type/localized_text.proto",
        include_str!("wellknown/localized_text.proto"),
    ),
    (
        "google/type/money.proto",
        include_str!("wellknown/money.proto"),
    ),
    (
        "google/type/month.proto",
        include_str!("wellknown/month.proto"),
    ),
    (
        "google/type/phone_number.proto",
        include_str!("wellknown/phone_number.proto"),
    ),
    (
        "google/type/postal_address.proto",
        include_str!("wellknown/postal_address.proto"),
    ),
    (
        "google/type/quaternion.proto",
        include_str!("wellknown/quaternion.proto"),
    ),
    (
        "google/type/timeofday.proto",
        include_str!("wellknown/timeofday.proto"),
    ),
];

/// Whether an import name is served without a reference (google/protobuf, google/type,
/// confluent).
pub(crate) fn is_builtin_import(name: &str) -> bool {
    name.starts_with("google/protobuf/") || BUNDLED.iter().any(|(n, _)| *n == name)
}

/// Decodes a base64 `FileDescriptorProto` if `text` is one. `.proto` text always has `;` or `{`,
/// never valid base64, so the two forms cannot be confused.
fn as_descriptor(text: &str) -> Option<FileDescriptorProto> {
    let trimmed = text.trim();
    if trimmed.is_empty()
        || !trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .ok()?;
    FileDescriptorProto::decode(bytes.as_slice()).ok()
}

fn open(name: &str, text: &str) -> Result<File, protox::Error> {
    match as_descriptor(text) {
        Some(mut fd) => {
            fd.name = Some(name.to_string());
            Ok(File::from_file_descriptor_proto(fd))
        }
        None => File::from_source(name, text),
    }
}

/// protox wants an owned (`'static`) resolver: the texts are copied in.
struct Resolver {
    main: (String, String),
    imports: Vec<Import>,
    google: GoogleFileResolver,
}

impl FileResolver for Resolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == self.main.0 {
            return open(name, &self.main.1);
        }
        if let Some(i) = self.imports.iter().find(|i| i.name == name) {
            return open(name, &i.text);
        }
        if let Some((_, text)) = BUNDLED.iter().find(|(n, _)| *n == name) {
            return File::from_source(name, text);
        }
        self.google.open_file(name)
    }
}

/// Compiles a schema (text or base64 descriptor) with its imports.
pub(crate) fn parse(text: &str, imports: &[Import]) -> Result<ProtobufSchema, SchemaError> {
    let described = as_descriptor(text);
    let main_name = described
        .as_ref()
        .and_then(|d| d.name.clone())
        .filter(|n| !n.is_empty() && !imports.iter().any(|i| i.name == *n) && !is_builtin_import(n))
        .unwrap_or_else(|| MAIN_FILE.to_string());
    let resolver = Resolver {
        main: (main_name.clone(), text.to_string()),
        imports: imports.to_vec(),
        google: GoogleFileResolver::new(),
    };
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(false);
    compiler
        .open_file(&main_name)
        .map_err(|e| SchemaError::invalid(TYPE, e.to_string()))?;
    let pool = compiler.descriptor_pool();
    let file = pool
        .get_file_by_name(&main_name)
        .ok_or_else(|| SchemaError::invalid(TYPE, "the compiled schema has no file"))?;
    print::check_supported(file.file_descriptor_proto())?;
    let origins = imports
        .iter()
        .map(|i| (i.name.clone(), (i.subject.clone(), i.version)))
        .collect();
    Ok(ProtobufSchema {
        pool,
        file,
        origins,
    })
}

impl ProtobufSchema {
    /// The canonical `.proto` text, printed from the compiled descriptor (type names fully
    /// qualified), so a base64 descriptor and the text it was compiled from are the same schema.
    pub(crate) fn canonical(&self) -> String {
        print::print(self.file.file_descriptor_proto(), false)
    }

    /// The normalized text: imports sorted, fields by number, enum values by number.
    pub(crate) fn normalized(&self) -> String {
        print::print(self.file.file_descriptor_proto(), true)
    }

    /// `format=serialized`: the standard base64 of the file's `FileDescriptorProto`, imports listed
    /// by import name, as confluent-kafka-python's deserializer reads it.
    pub(crate) fn serialized(&self) -> String {
        let mut fd = self.file.file_descriptor_proto().clone();
        fd.source_code_info = None;
        base64::engine::general_purpose::STANDARD.encode(fd.encode_to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_descriptor_are_the_same_schema() {
        let text = "syntax = \"proto3\";\npackage acme;\nimport \"google/protobuf/timestamp.proto\";\nmessage Order { string id = 1; google.protobuf.Timestamp at = 2; map<string, int64> qty = 3; oneof pay { string card = 4; string iban = 5; } optional int32 n = 6; }\n";
        let a = parse(text, &[]).unwrap();
        let b = parse(&a.serialized(), &[]).unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let c = parse(&a.canonical(), &[]).unwrap();
        assert_eq!(a.canonical(), c.canonical(), "{}", a.canonical());
    }

    #[test]
    fn imports_resolve_from_references_and_builtins() {
        let address = Import {
            name: "common/address.proto".into(),
            text: "syntax = \"proto3\";\npackage common;\nmessage Address { string zip = 1; }"
                .into(),
            subject: "common/address.proto".into(),
            version: 1,
        };
        let user = "syntax = \"proto3\";\nimport \"common/address.proto\";\nimport \"google/type/date.proto\";\nmessage User { common.Address home = 1; google.type.Date born = 2; }";
        let parsed = parse(user, &[address]).unwrap();
        assert!(parsed.pool.get_message_by_name("common.Address").is_some());
        assert!(parse(user, &[]).is_err());
        for (name, _) in BUNDLED {
            let text =
                format!("syntax = \"proto3\";\nimport \"{name}\";\nmessage M {{ int32 a = 1; }}");
            parse(&text, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn invalid_text_is_an_error() {
        assert!(parse("syntax = \"proto3\"; message {", &[]).is_err());
        assert!(parse("syntax = \"proto3\"; message A { Missing m = 1; }", &[]).is_err());
    }
}
