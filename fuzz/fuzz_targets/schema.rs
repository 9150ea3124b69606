//! The schema registry's inputs: schema texts of each type (Avro, Protobuf, JSON Schema)
//! as clients register them, and records framed in Confluent's wire format decoded and
//! checked against a schema. Nothing panics or hangs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_schema::{SchemaType, no_references, parse_schema, unframe};

const AVRO: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"tags","type":{"type":"array","items":"string"}},{"name":"price","type":["null","double"],"default":null}]}"#;
const PROTO: &str = "syntax = \"proto3\"; message Order { int64 id = 1; string item = 2; repeated string tags = 3; optional double price = 4; }";
const JSON: &str = r#"{"type":"object","properties":{"id":{"type":"integer"},"item":{"type":"string"}},"required":["id"]}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let kind =
        [SchemaType::Avro, SchemaType::Protobuf, SchemaType::Json][usize::from(selector % 3)];
    if selector & 0x80 != 0 {
        // A schema text as registered.
        if let Ok(text) = std::str::from_utf8(rest)
            && let Ok(s) = parse_schema(kind, text, &[], &no_references)
        {
            let _ = s.canonical();
            let _ = s.normalized();
        }
        return;
    }
    // A framed record against a fixed schema of that type.
    let text = match kind {
        SchemaType::Avro => AVRO,
        SchemaType::Protobuf => PROTO,
        SchemaType::Json => JSON,
    };
    let Ok(schema) = parse_schema(kind, text, &[], &no_references) else {
        return;
    };
    if let Ok(framed) = unframe(rest) {
        let payload = match kind {
            SchemaType::Protobuf => match framed.protobuf() {
                Ok((_, p)) => p,
                Err(_) => return,
            },
            _ => framed.payload,
        };
        let _ = schema.check_payload(payload);
        let _ = schema.decode_payload(payload);
    }
});
