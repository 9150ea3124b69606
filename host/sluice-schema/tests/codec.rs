//! The data path: encode JSON under a subject, decode framed records to JSON, validate records
//! for schema-validated topics; for Avro, Protobuf and JSON Schema, with hostile input.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};
use sluice_schema::{
    CodecError, EncodeTarget, MemoryJournal, RegisterRequest, Registry, SchemaType, ValidationMode,
    frame, unframe,
};

fn registry() -> Registry {
    Registry::new(Arc::new(MemoryJournal::default()))
}

fn register(r: &Registry, subject: &str, t: SchemaType, text: &str) -> i32 {
    r.register(subject, &RegisterRequest::new(t, text), false, false)
        .unwrap_or_else(|e| panic!("{subject}: {e}"))
        .id
}

const ORDER_AVRO: &str = r#"{
  "type": "record", "name": "Order", "namespace": "com.acme",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
      {"name": "name", "type": "string"},
      {"name": "email", "type": ["null", "string"], "default": null},
      {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["BRONZE", "SILVER", "GOLD"]}}
    ]}},
    {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
      {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}
    ]}}},
    {"name": "tags", "type": {"type": "map", "values": "long"}},
    {"name": "note", "type": ["null", "string", "Customer"], "default": null},
    {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 4}},
    {"name": "blob", "type": "bytes"},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "big", "type": {"type": "fixed", "name": "Big", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 3}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "ratio", "type": "float"},
    {"name": "score", "type": "double"},
    {"name": "paid", "type": "boolean"},
    {"name": "nothing", "type": "null"},
    {"name": "extra", "type": "string", "default": "x"}
  ]
}"#;

fn order_value() -> Value {
    json!({
        "id": 9_007_199_254_740_993_i64,
        "customer": {"name": "Ada", "email": "ada@example.com", "tier": "GOLD"},
        "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": -7}],
        "tags": {"promo": 1, "neg": -5},
        "note": {"name": "gift", "email": null, "tier": "BRONZE"},
        "code": "ab\u{0}\u{ff}",
        "blob": "\u{1}\u{2}\u{80}",
        "price": "-12.34",
        "big": "123456.789",
        "day": 19000,
        "at": 1_700_000_000_000_i64,
        "ref": "6f1c0c1e-7a5e-4d3b-9f57-3f2d3a1b2c4d",
        "ratio": 0.5,
        "score": -1.25e10,
        "paid": true,
        "nothing": null,
        "extra": "given"
    })
}

#[test]
fn avro_round_trips_nested_records_unions_and_logical_types() {
    let r = registry();
    let id = register(&r, "orders-value", SchemaType::Avro, ORDER_AVRO);
    let value = order_value();
    let framed = r
        .encode_from_json(&EncodeTarget::Subject("orders-value".into()), &value, None)
        .unwrap();
    assert_eq!(unframe(&framed).unwrap().id, id);
    let decoded = r.decode_to_json(&framed).unwrap();
    assert_eq!(decoded.id, id);
    assert_eq!(decoded.value, value);
    // Defaults fill missing fields.
    let mut partial = value.clone();
    partial.as_object_mut().unwrap().remove("extra");
    let framed = r
        .encode_from_json(&EncodeTarget::Id(id), &partial, None)
        .unwrap();
    assert_eq!(r.decode_to_json(&framed).unwrap().value["extra"], "x");
    // Avro's wrapped union form is accepted too.
    let mut wrapped = value.clone();
    wrapped["note"] = json!({"string": "hello"});
    let framed = r
        .encode_from_json(&EncodeTarget::Id(id), &wrapped, None)
        .unwrap();
    assert_eq!(r.decode_to_json(&framed).unwrap().value["note"], "hello");
}

#[test]
#[allow(deprecated)] // from_avro_datum/to_avro_datum: the plain single-datum API is what is compared
fn avro_matches_apache_avro_in_both_directions() {
    use apache_avro::types::{Record, Value as AvroValue};
    let text = r#"{"type":"record","name":"P","fields":[
        {"name":"a","type":"int"},{"name":"b","type":["null","string"]},
        {"name":"c","type":{"type":"array","items":"long"}},{"name":"d","type":{"type":"map","values":"double"}},
        {"name":"e","type":{"type":"enum","name":"E","symbols":["X","Y"]}}]}"#;
    let schema = apache_avro::Schema::parse_str(text).unwrap();
    let r = registry();
    let id = register(&r, "p", SchemaType::Avro, text);
    // Ours → apache-avro.
    let value =
        json!({"a": -3, "b": "s", "c": [1, 2, 300000000000_i64], "d": {"k": 1.5}, "e": "Y"});
    let framed = r
        .encode_from_json(&EncodeTarget::Id(id), &value, None)
        .unwrap();
    let read = apache_avro::from_avro_datum(&schema, &mut &framed[5..], None).unwrap();
    let AvroValue::Record(fields) = read else {
        panic!("{read:?}")
    };
    assert_eq!(fields[0], ("a".to_string(), AvroValue::Int(-3)));
    assert_eq!(
        fields[1].1,
        AvroValue::Union(1, Box::new(AvroValue::String("s".into())))
    );
    assert_eq!(fields[4].1, AvroValue::Enum(1, "Y".into()));
    // apache-avro → ours.
    let mut rec = Record::new(&schema).unwrap();
    rec.put("a", 7);
    rec.put("b", AvroValue::Union(0, Box::new(AvroValue::Null)));
    rec.put("c", AvroValue::Array(vec![AvroValue::Long(-1)]));
    rec.put(
        "d",
        AvroValue::Map(
            [("z".to_string(), AvroValue::Double(2.0))]
                .into_iter()
                .collect(),
        ),
    );
    rec.put("e", AvroValue::Enum(0, "X".into()));
    let payload = apache_avro::to_avro_datum(&schema, rec).unwrap();
    let decoded = r.decode_to_json(&frame(id, &payload)).unwrap();
    assert_eq!(
        decoded.value,
        json!({"a": 7, "b": null, "c": [-1], "d": {"z": 2.0}, "e": "X"})
    );
}

fn encode_err(r: &Registry, subject: &str, value: Value) -> String {
    match r.encode_from_json(&EncodeTarget::Subject(subject.into()), &value, None) {
        Err(CodecError::Encode(m) | CodecError::Invalid(m)) => m,
        other => panic!("expected an encode error, got {other:?}"),
    }
}

#[test]
fn avro_errors_name_the_field_and_the_expected_type() {
    let r = registry();
    register(&r, "orders-value", SchemaType::Avro, ORDER_AVRO);
    let mut v = order_value();
    v["customer"]["name"] = json!(5);
    assert_eq!(
        encode_err(&r, "orders-value", v),
        "field 'customer.name': expected string, found integer"
    );
    let mut v = order_value();
    v["lines"][1]["qty"] = json!(1.5);
    assert_eq!(
        encode_err(&r, "orders-value", v),
        "field 'lines[1].qty': expected int (32-bit integer), found number"
    );
    let mut v = order_value();
    v["customer"]["tier"] = json!("PLATINUM");
    assert!(
        encode_err(&r, "orders-value", v)
            .contains("'PLATINUM' is not a symbol of enum com.acme.Tier")
    );
    let mut v = order_value();
    v.as_object_mut().unwrap().remove("id");
    assert_eq!(
        encode_err(&r, "orders-value", v),
        "field 'id': missing (the field has no default)"
    );
    let mut v = order_value();
    v["surprise"] = json!(1);
    assert!(encode_err(&r, "orders-value", v).contains("unknown field 'surprise'"));
    let mut v = order_value();
    v["price"] = json!("1.234");
    assert!(encode_err(&r, "orders-value", v).contains("expected decimal with scale 2"));
    let mut v = order_value();
    v["note"] = json!(12);
    assert!(
        encode_err(&r, "orders-value", v)
            .contains("matches no branch of union [null, string, com.acme.Customer]")
    );
    // Decoding names where it stopped.
    let framed = r
        .encode_from_json(
            &EncodeTarget::Subject("orders-value".into()),
            &order_value(),
            None,
        )
        .unwrap();
    let Err(CodecError::Decode(m)) = r.decode_to_json(&framed[..framed.len() - 3]) else {
        panic!()
    };
    assert!(m.starts_with("cannot decode field '"), "{m}");
    let mut longer = framed.clone();
    longer.push(0);
    let Err(CodecError::Decode(m)) = r.decode_to_json(&longer) else {
        panic!()
    };
    assert!(m.contains("1 trailing bytes"), "{m}");
}

const SHOP_PROTO: &str = r#"syntax = "proto3";
package acme;
import "google/protobuf/timestamp.proto";

message Order {
  message Line {
    string sku = 1;
    int32 qty = 2;
  }
  enum Status { NEW = 0; PAID = 1; SHIPPED = 2; }
  int64 id = 1;
  repeated Line lines = 2;
  map<string, int64> tags = 3;
  Status status = 4;
  oneof payment {
    string card = 5;
    string iban = 6;
  }
  google.protobuf.Timestamp at = 7;
  optional string note = 8;
  bytes blob = 9;
}

message Refund {
  int64 order_id = 1;
}
"#;

#[test]
fn protobuf_round_trips_through_message_indexes() {
    let r = registry();
    let id = register(&r, "shop-value", SchemaType::Protobuf, SHOP_PROTO);
    let value = json!({
        "id": "42",
        "lines": [{"sku": "A", "qty": 2}, {"sku": "B"}],
        "tags": {"k": "7"},
        "status": "PAID",
        "iban": "DE00",
        "at": "2024-01-02T03:04:05Z",
        "note": "",
        "blob": "AQI="
    });
    let framed = r
        .encode_from_json(&EncodeTarget::Subject("shop-value".into()), &value, None)
        .unwrap();
    assert_eq!(framed[5], 0, "[0] is the single byte 0");
    let decoded = r.decode_to_json(&framed).unwrap();
    assert_eq!(decoded.id, id);
    assert_eq!(decoded.value, value);
    // The second top-level message and a nested one, picked by name; indexes [1] and [0, 0].
    let refund = r
        .encode_from_json(
            &EncodeTarget::Id(id),
            &json!({"orderId": "5"}),
            Some("acme.Refund"),
        )
        .unwrap();
    assert_eq!(&refund[5..7], &[2, 2]);
    assert_eq!(
        r.decode_to_json(&refund).unwrap().value,
        json!({"orderId": "5"})
    );
    let line = r
        .encode_from_json(
            &EncodeTarget::Id(id),
            &json!({"sku": "Z", "qty": 1}),
            Some(".acme.Order.Line"),
        )
        .unwrap();
    assert_eq!(&line[5..8], &[4, 0, 0]);
    assert_eq!(
        r.decode_to_json(&line).unwrap().value,
        json!({"sku": "Z", "qty": 1})
    );
    let err = r
        .encode_from_json(&EncodeTarget::Id(id), &json!({"nope": 1}), None)
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    // An index path outside the file is an error, not a panic.
    let bad = [&framed[..5], &[2, 20][..], &framed[6..]].concat();
    assert!(r.decode_to_json(&bad).is_err());
}

#[test]
fn protobuf_descriptors_from_python_and_text_from_javascript_are_one_schema() {
    let r = registry();
    let id = register(&r, "shop-value", SchemaType::Protobuf, SHOP_PROTO);
    let serialized = r
        .schema_by_id(id, None, Some("serialized"), false)
        .unwrap()
        .schema;
    assert!(
        base64::engine::general_purpose::STANDARD
            .decode(&serialized)
            .is_ok()
    );
    // Registering the base64 descriptor (as confluent-kafka-python does) finds the same id, and
    // the response echoes the base64 text.
    let resp = r
        .register(
            "shop-value",
            &RegisterRequest::new(SchemaType::Protobuf, serialized.clone()),
            false,
            false,
        )
        .unwrap();
    assert_eq!((resp.id, resp.version), (id, 1));
    assert_eq!(resp.schema, serialized);
    // Without format, `.proto` text (for protobufjs).
    let text = r
        .get_version("shop-value", sluice_schema::VersionId::Latest, false, None)
        .unwrap()
        .schema;
    assert!(text.contains("message Order {"), "{text}");
    assert!(text.contains("map<string, int64> tags = 3;"), "{text}");
    assert!(text.contains("oneof payment {"), "{text}");
    let by_version = r
        .get_version(
            "shop-value",
            sluice_schema::VersionId::Latest,
            false,
            Some("serialized"),
        )
        .unwrap()
        .schema;
    assert_eq!(by_version, serialized);
}

#[test]
fn protobuf_imports_resolve_through_references() {
    let r = registry();
    let address = "syntax = \"proto3\";\npackage common;\nmessage Address { string zip = 1; }\n";
    register(&r, "common/address.proto", SchemaType::Protobuf, address);
    let user = "syntax = \"proto3\";\nimport \"common/address.proto\";\nmessage User { string name = 1; common.Address home = 2; }\n";
    let req = RegisterRequest::new(SchemaType::Protobuf, user).with_reference(
        "common/address.proto",
        "common/address.proto",
        1,
    );
    let id = r.register("users-value", &req, false, false).unwrap().id;
    let framed = r
        .encode_from_json(
            &EncodeTarget::Id(id),
            &json!({"name": "n", "home": {"zip": "1000"}}),
            None,
        )
        .unwrap();
    assert_eq!(
        r.decode_to_json(&framed).unwrap().value,
        json!({"name": "n", "home": {"zip": "1000"}})
    );
    // Changing the imported message incompatibly under a new reference version is caught.
    let address2 = "syntax = \"proto3\";\npackage common;\nmessage Address { int32 zip = 1; }\n";
    r.register(
        "common/address.proto",
        &RegisterRequest::new(SchemaType::Protobuf, address2),
        false,
        true,
    )
    .unwrap();
    let req2 = RegisterRequest::new(SchemaType::Protobuf, user).with_reference(
        "common/address.proto",
        "common/address.proto",
        2,
    );
    let e = r.register("users-value", &req2, false, false).unwrap_err();
    assert_eq!(e.status, 409, "{}", e.message);
    assert!(
        e.message.contains("FIELD_NAMED_TYPE_CHANGED"),
        "{}",
        e.message
    );
}

const PERSON_JSON: &str = r##"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1},
    "age": {"type": "integer", "minimum": 0},
    "emails": {"type": "array", "items": {"type": "string", "format": "email"}},
    "kind": {"enum": ["a", "b"]},
    "address": {"$ref": "#/definitions/Address"},
    "contact": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
  },
  "required": ["name"],
  "definitions": {"Address": {"type": "object", "properties": {"zip": {"type": "string"}}, "required": ["zip"]}}
}"##;

#[test]
fn json_schema_validates_and_round_trips() {
    let r = registry();
    let id = register(&r, "people-value", SchemaType::Json, PERSON_JSON);
    let value = json!({"name": "Ada", "age": 36, "emails": ["a@b.c"], "kind": "a", "address": {"zip": "1"}, "contact": 5});
    let framed = r
        .encode_from_json(&EncodeTarget::Subject("people-value".into()), &value, None)
        .unwrap();
    assert_eq!(&framed[5..], serde_json::to_vec(&value).unwrap().as_slice());
    assert_eq!(r.decode_to_json(&framed).unwrap().value, value);
    let m = encode_err(&r, "people-value", json!({"name": "Ada", "address": {}}));
    assert!(m.contains("/address") && m.contains("zip"), "{m}");
    let m = encode_err(&r, "people-value", json!({"age": -1}));
    assert!(m.contains("name") && m.contains("/age"), "{m}");
    assert_eq!(
        r.validate("people-value", &framed, ValidationMode::Decode)
            .unwrap(),
        id
    );
    let bad = frame(id, br#"{"age": "old"}"#);
    assert!(matches!(
        r.validate("people-value", &bad, ValidationMode::Decode),
        Err(CodecError::Invalid(_))
    ));
    assert_eq!(
        r.validate("people-value", &bad, ValidationMode::Id)
            .unwrap(),
        id,
        "id mode does not decode"
    );
    let not_json = frame(id, b"{oops");
    assert!(matches!(
        r.validate("people-value", &not_json, ValidationMode::Decode),
        Err(CodecError::Decode(_))
    ));
}

#[test]
fn validation_refuses_unframed_foreign_and_undecodable_records() {
    let r = registry();
    let id = register(&r, "orders-value", SchemaType::Avro, ORDER_AVRO);
    let other = register(
        &r,
        "other",
        SchemaType::Avro,
        r#"{"type":"record","name":"O","fields":[]}"#,
    );
    let good = r
        .encode_from_json(&EncodeTarget::Id(id), &order_value(), None)
        .unwrap();
    assert_eq!(
        r.validate("orders-value", &good, ValidationMode::Id)
            .unwrap(),
        id
    );
    assert_eq!(
        r.validate("orders-value", &good, ValidationMode::Decode)
            .unwrap(),
        id
    );
    assert!(matches!(
        r.validate("orders-value", b"{\"plain\":1}", ValidationMode::Id),
        Err(CodecError::Framing(_))
    ));
    assert!(matches!(
        r.validate("orders-value", &frame(999, b""), ValidationMode::Id),
        Err(CodecError::UnknownId(999))
    ));
    let foreign = frame(other, b"");
    let e = r
        .validate("orders-value", &foreign, ValidationMode::Id)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("schema id {other} is not registered under subject 'orders-value'")
    );
    assert!(matches!(
        r.validate("nobody", &good, ValidationMode::Id),
        Err(CodecError::UnknownSubject(_))
    ));
    let truncated = &good[..good.len() / 2];
    assert_eq!(
        r.validate("orders-value", truncated, ValidationMode::Id)
            .unwrap(),
        id
    );
    assert!(matches!(
        r.validate("orders-value", truncated, ValidationMode::Decode),
        Err(CodecError::Decode(_))
    ));
    // A soft-deleted version's id no longer validates for the subject, but still decodes.
    r.register(
        "orders-value",
        &RegisterRequest::new(
            SchemaType::Avro,
            r#"{"type":"record","name":"X","fields":[]}"#,
        ),
        false,
        true,
    )
    .unwrap();
    r.delete_version("orders-value", sluice_schema::VersionId::Number(1), false)
        .unwrap();
    assert!(
        r.validate("orders-value", &good, ValidationMode::Id)
            .is_err()
    );
    assert!(r.decode_to_json(&good).is_ok());
}

/// Random and mutated input never panics any decoder (a small xorshift PRNG keeps it
/// reproducible).
#[test]
fn decoders_never_panic_on_random_bytes() {
    let r = registry();
    let avro = register(&r, "a", SchemaType::Avro, ORDER_AVRO);
    let recursive = register(
        &r,
        "list",
        SchemaType::Avro,
        r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"null"},{"name":"next","type":["null","Node"]},{"name":"many","type":{"type":"array","items":"null"}}]}"#,
    );
    let proto = register(&r, "p", SchemaType::Protobuf, SHOP_PROTO);
    let json_id = register(&r, "j", SchemaType::Json, PERSON_JSON);
    let seeds: Vec<Vec<u8>> = vec![
        r.encode_from_json(&EncodeTarget::Id(avro), &order_value(), None)
            .unwrap(),
        r.encode_from_json(
            &EncodeTarget::Id(proto),
            &json!({"id": "1", "lines": [{"sku": "x"}], "tags": {"a": "1"}}),
            None,
        )
        .unwrap(),
        r.encode_from_json(&EncodeTarget::Id(json_id), &json!({"name": "n"}), None)
            .unwrap(),
        frame(recursive, &[0, 2, 0, 2, 0, 0]),
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let ids = [avro, recursive, proto, json_id];
    for i in 0..20_000u32 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            let mut b = seeds[(next() % seeds.len() as u64) as usize].clone();
            for _ in 0..(1 + next() % 4) {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
            if next() % 3 == 0 {
                b.truncate((next() % (b.len() as u64 + 1)) as usize);
            }
            b
        } else {
            let len = (next() % 48) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 5 && next() % 2 == 0 {
                b[0] = 0;
                b[1..5].copy_from_slice(&ids[(next() % 4) as usize].to_be_bytes());
            }
            b
        };
        let _ = unframe(&bytes).map(|f| f.protobuf());
        let _ = r.decode_to_json(&bytes);
        for subject in ["a", "list", "p", "j"] {
            let _ = r.validate(subject, &bytes, ValidationMode::Decode);
        }
    }
    // Block counts claiming billions of zero-byte items stop at the input-size budget.
    let hostile = frame(recursive, &[0, 0xfe, 0xff, 0xff, 0xff, 0x0f]);
    let e = r.decode_to_json(&hostile).unwrap_err();
    assert!(
        e.to_string().contains("exceeds what the input can hold"),
        "{e}"
    );
    // Deep recursion is bounded.
    let deep = vec![2u8; 1000];
    let e = r.decode_to_json(&frame(recursive, &deep)).unwrap_err();
    assert!(e.to_string().contains("nesting too deep"), "{e}");
    // Protobuf: 10,000 levels of a recursive message stop at prost's recursion limit.
    let node = register(
        &r,
        "node",
        SchemaType::Protobuf,
        "syntax = \"proto3\";\nmessage Node { Node next = 1; int32 v = 2; }\n",
    );
    let mut body: Vec<u8> = vec![0x10, 0x01];
    for _ in 0..10_000 {
        let mut outer = vec![0x0a];
        let mut len = body.len();
        while len >= 0x80 {
            outer.push((len as u8) | 0x80);
            len >>= 7;
        }
        outer.push(len as u8);
        outer.extend_from_slice(&body);
        body = outer;
    }
    let framed = [&frame(node, &[0])[..], &body[..]].concat();
    assert!(r.decode_to_json(&framed).is_err());
    assert!(r.validate("node", &framed, ValidationMode::Decode).is_err());
}
