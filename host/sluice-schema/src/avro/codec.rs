//! Avro binary ⇄ JSON for the data path, walking apache-avro's parsed `Schema` directly (no
//! intermediate `Value` tree), bounded on hostile input.
//!
//! JSON mapping (decode, and what encode accepts):
//! - records are objects in field order, maps are objects, arrays are arrays, enums their symbol;
//! - a union is its branch's value, unwrapped (encode tries the branches in order and also accepts
//!   Avro's `{"<type name>": value}` wrapping);
//! - `bytes` and `fixed` are strings of code points 0–255, one per byte, as Avro's JSON encoding
//!   (and Confluent's console tools) write them;
//! - `decimal` is a string of its digits (`"-12.34"`, encode also takes a number); `uuid` its
//!   string; `date`, `time-*`, `timestamp-*` their underlying number; `duration` its 12 bytes;
//! - `float`/`double` NaN and infinities are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, RecordSchema, UuidSchema};
use serde_json::{Map, Number, Value};

use super::AvroSchema;

/// Deepest nesting decoded or encoded: bounds recursion on recursive schemas and hostile data.
const MAX_DEPTH: usize = 128;

/// Decodes one Avro datum (the payload of a framed record) to JSON; trailing bytes are an error.
pub(crate) fn decode(schema: &AvroSchema, bytes: &[u8]) -> Result<Value, String> {
    let mut d = Decoder {
        schema,
        bytes,
        pos: 0,
        // Values that take no bytes (null, empty records) could otherwise be claimed in the
        // billions by a few bytes of block count: every value costs one unit of this budget.
        budget: bytes.len().saturating_mul(4).saturating_add(4096),
        path: Vec::new(),
    };
    let value = d.value(&schema.root, 0)?;
    if d.pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the record (is this the writer's schema?)",
            bytes.len() - d.pos
        ));
    }
    Ok(value)
}

/// Checks that `bytes` is one Avro datum of the schema, without building its JSON: what a
/// topic's `decode` validation needs.
pub(crate) fn check(schema: &AvroSchema, bytes: &[u8]) -> Result<(), String> {
    let mut d = Decoder {
        schema,
        bytes,
        pos: 0,
        budget: bytes.len().saturating_mul(4).saturating_add(4096),
        path: Vec::new(),
    };
    d.skip(&schema.root, 0)?;
    if d.pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the record (is this the writer's schema?)",
            bytes.len() - d.pos
        ));
    }
    Ok(())
}

struct Decoder<'a> {
    schema: &'a AvroSchema,
    bytes: &'a [u8],
    pos: usize,
    budget: usize,
    path: Vec<Seg<'a>>,
}

/// One step of the path to a value, for error messages only: borrowed where it can be, so
/// walking a record costs no allocation per field.
#[derive(Debug, Clone)]
enum Seg<'a> {
    Field(&'a str),
    Index(usize),
    Key(std::borrow::Cow<'a, str>),
}

fn path_string(path: &[Seg<'_>]) -> String {
    use std::fmt::Write;
    if path.is_empty() {
        return "the record".to_string();
    }
    let mut s = String::from("field '");
    for (i, p) in path.iter().enumerate() {
        match p {
            Seg::Field(name) => {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(name);
            }
            Seg::Index(n) => {
                let _ = write!(s, "[{n}]");
            }
            Seg::Key(k) => {
                let _ = write!(s, "[{k:?}]");
            }
        }
    }
    s.push('\'');
    s
}

impl<'a> Decoder<'a> {
    fn err(&self, what: impl std::fmt::Display) -> String {
        format!(
            "cannot decode {} at byte {}: {what}",
            path_string(&self.path),
            self.pos
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.err(format!(
                "needs {n} bytes, {} left",
                self.bytes.len() - self.pos
            ))),
        }
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(self.err("varint overflows 64 bits"))
    }

    fn int(&mut self) -> Result<i32, String> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| self.err(format!("{v} is out of range for int")))
    }

    fn len(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| self.err(format!("negative length {n}")))?;
        if n > self.bytes.len() - self.pos {
            return Err(self.err(format!(
                "length {n} exceeds the {} bytes left",
                self.bytes.len() - self.pos
            )));
        }
        Ok(n)
    }

    fn spend(&mut self) -> Result<(), String> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| self.err("too many values for the input size"))?;
        Ok(())
    }

    fn value(&mut self, schema: &'a Schema, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.spend()?;
        let schema = self.schema.resolve(schema);
        Ok(match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => match self.take(1)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("invalid boolean byte {b}"))),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => Value::from(self.int()?),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Value::from(self.long()?),
            Schema::Float => {
                let b = self.take(4)?;
                float_json(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            Schema::Double => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                float_json(f64::from_le_bytes(a))
            }
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => {
                let n = self.len()?;
                Value::String(latin1(self.take(n)?))
            }
            Schema::String | Schema::Uuid(UuidSchema::String) => {
                let n = self.len()?;
                let raw = self.take(n)?;
                match std::str::from_utf8(raw) {
                    Ok(s) => Value::String(s.to_string()),
                    Err(_) => return Err(self.err("string is not valid UTF-8")),
                }
            }
            Schema::Fixed(f) | Schema::Duration(f) => Value::String(latin1(self.take(f.size)?)),
            Schema::Uuid(UuidSchema::Fixed(f)) => Value::String(uuid_text(self.take(f.size)?)),
            Schema::Decimal(d) => {
                let raw = match &d.inner {
                    InnerDecimalSchema::Bytes => {
                        let n = self.len()?;
                        self.take(n)?
                    }
                    InnerDecimalSchema::Fixed(f) => self.take(f.size)?,
                };
                match decimal_text(raw, d.scale) {
                    Some(s) => Value::String(s),
                    None => Value::String(latin1(raw)),
                }
            }
            Schema::Enum(e) => {
                let i = self.int()?;
                match usize::try_from(i).ok().and_then(|i| e.symbols.get(i)) {
                    Some(s) => Value::String(s.clone()),
                    None => return Err(self.err(format!("enum index {i} out of range"))),
                }
            }
            Schema::Union(u) => {
                let i = self.long()?;
                match usize::try_from(i).ok().and_then(|i| u.variants().get(i)) {
                    Some(branch) => self.value(branch, depth + 1)?,
                    None => return Err(self.err(format!("union branch {i} out of range"))),
                }
            }
            Schema::Array(a) => {
                let mut out = Vec::new();
                self.blocks(|d, i| {
                    d.path.push(Seg::Index(i));
                    let v = d.value(&a.items, depth + 1);
                    d.path.pop();
                    out.push(v?);
                    Ok(())
                })?;
                Value::Array(out)
            }
            Schema::Map(m) => {
                let mut out = Map::new();
                self.blocks(|d, _| {
                    let n = d.len()?;
                    let key = std::str::from_utf8(d.take(n)?)
                        .map_err(|_| d.err("map key is not valid UTF-8"))?;
                    d.path.push(Seg::Key(key.into()));
                    let v = d.value(&m.types, depth + 1);
                    d.path.pop();
                    out.insert(key.to_string(), v?);
                    Ok(())
                })?;
                Value::Object(out)
            }
            Schema::Record(r) => {
                let mut out = Map::with_capacity(r.fields.len());
                for f in &r.fields {
                    self.path.push(Seg::Field(&f.name));
                    let v = self.value(&f.schema, depth + 1);
                    self.path.pop();
                    out.insert(f.name.clone(), v?);
                }
                Value::Object(out)
            }
            Schema::Ref { name } => {
                return Err(self.err(format!("unknown named type {}", name.fullname(None))));
            }
        })
    }

    /// Walks a value as `value` does, checking it, building nothing.
    fn skip(&mut self, schema: &'a Schema, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.spend()?;
        let schema = self.schema.resolve(schema);
        match schema {
            Schema::Null => {}
            Schema::Boolean => {
                let b = self.take(1)?[0];
                if b > 1 {
                    return Err(self.err(format!("invalid boolean byte {b}")));
                }
            }
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                self.int()?;
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                self.long()?;
            }
            Schema::Float => {
                self.take(4)?;
            }
            Schema::Double => {
                self.take(8)?;
            }
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => {
                let n = self.len()?;
                self.take(n)?;
            }
            Schema::String | Schema::Uuid(UuidSchema::String) => {
                let n = self.len()?;
                if std::str::from_utf8(self.take(n)?).is_err() {
                    return Err(self.err("string is not valid UTF-8"));
                }
            }
            Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => {
                self.take(f.size)?;
            }
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => {
                    let n = self.len()?;
                    self.take(n)?;
                }
                InnerDecimalSchema::Fixed(f) => {
                    self.take(f.size)?;
                }
            },
            Schema::Enum(e) => {
                let i = self.int()?;
                if usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .is_none()
                {
                    return Err(self.err(format!("enum index {i} out of range")));
                }
            }
            Schema::Union(u) => {
                let i = self.long()?;
                match usize::try_from(i).ok().and_then(|i| u.variants().get(i)) {
                    Some(branch) => self.skip(branch, depth + 1)?,
                    None => return Err(self.err(format!("union branch {i} out of range"))),
                }
            }
            Schema::Array(a) => {
                self.blocks(|d, i| {
                    d.path.push(Seg::Index(i));
                    let r = d.skip(&a.items, depth + 1);
                    d.path.pop();
                    r
                })?;
            }
            Schema::Map(m) => {
                self.blocks(|d, _| {
                    let n = d.len()?;
                    let key = std::str::from_utf8(d.take(n)?)
                        .map_err(|_| d.err("map key is not valid UTF-8"))?;
                    d.path.push(Seg::Key(key.into()));
                    let r = d.skip(&m.types, depth + 1);
                    d.path.pop();
                    r
                })?;
            }
            Schema::Record(r) => {
                for f in &r.fields {
                    self.path.push(Seg::Field(&f.name));
                    let v = self.skip(&f.schema, depth + 1);
                    self.path.pop();
                    v?;
                }
            }
            Schema::Ref { name } => {
                return Err(self.err(format!("unknown named type {}", name.fullname(None))));
            }
        }
        Ok(())
    }

    /// Array and map blocks: a count (negative: its absolute value, then the block's byte size),
    /// zero ends the list.
    fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut index = 0usize;
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                let _block_size = self.long()?;
            }
            let count = count.unsigned_abs();
            if count > self.budget as u64 {
                return Err(self.err(format!(
                    "block of {count} items exceeds what the input can hold"
                )));
            }
            for _ in 0..count {
                item(self, index)?;
                index += 1;
            }
        }
    }
}

fn float_json(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn uuid_text(b: &[u8]) -> String {
    if b.len() != 16 {
        return latin1(b);
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The decimal digits of a two's-complement big-endian unscaled value with `scale`, for values
/// that fit 128 bits (`None` otherwise: the caller falls back to the raw bytes).
fn decimal_text(raw: &[u8], scale: usize) -> Option<String> {
    if raw.is_empty() || raw.len() > 16 {
        return None;
    }
    let negative = raw[0] & 0x80 != 0;
    let mut v: i128 = if negative { -1 } else { 0 };
    for &b in raw {
        v = (v << 8) | i128::from(b);
    }
    let digits = v.unsigned_abs().to_string();
    let sign = if v < 0 { "-" } else { "" };
    if scale == 0 {
        return Some(format!("{sign}{digits}"));
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    Some(format!("{sign}{int}.{frac}"))
}

/// Encodes JSON as one Avro datum under `schema`; the error names the field and what it expected.
pub(crate) fn encode(schema: &AvroSchema, value: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut e = Encoder {
        schema,
        path: Vec::new(),
    };
    e.value(&schema.root, value, &mut out, 0)?;
    Ok(out)
}

struct Encoder<'a> {
    schema: &'a AvroSchema,
    path: Vec<Seg<'a>>,
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn type_label(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Enum(e) => format!("enum {}", e.name.fullname(None)),
        Schema::Fixed(f) => format!("fixed {}", f.name.fullname(None)),
        Schema::Union(_) => "union".into(),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Decimal(_) => "decimal".into(),
        Schema::Uuid(_) => "uuid".into(),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

/// The name a branch goes by in Avro's JSON union wrapping (`{"string": "x"}`).
fn branch_name(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => r.name.fullname(None),
        Schema::Enum(e) => e.name.fullname(None),
        Schema::Fixed(f) | Schema::Duration(f) => f.name.fullname(None),
        Schema::Ref { name } => name.fullname(None),
        other => {
            let label = type_label(other);
            match label.as_str() {
                "decimal" | "uuid" => "bytes".into(),
                _ => label,
            }
        }
    }
}

impl<'a> Encoder<'a> {
    fn mismatch(&self, expected: &str, value: &Value) -> String {
        format!(
            "{}: expected {expected}, found {}",
            path_string(&self.path),
            json_kind(value)
        )
    }

    fn value(
        &mut self,
        schema: &'a Schema,
        value: &Value,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("{}: nesting too deep", path_string(&self.path)));
        }
        let schema = self.schema.resolve(schema);
        match schema {
            Schema::Null => {
                if !value.is_null() {
                    return Err(self.mismatch("null", value));
                }
            }
            Schema::Boolean => match value {
                Value::Bool(b) => out.push(u8::from(*b)),
                _ => return Err(self.mismatch("boolean", value)),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                let v = value
                    .as_i64()
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| self.mismatch("int (32-bit integer)", value))?;
                write_long(out, i64::from(v));
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                let v = value
                    .as_i64()
                    .ok_or_else(|| self.mismatch("long (64-bit integer)", value))?;
                write_long(out, v);
            }
            Schema::Float => {
                let f = float_of(value).ok_or_else(|| self.mismatch("float", value))?;
                out.extend_from_slice(&(f as f32).to_le_bytes());
            }
            Schema::Double => {
                let f = float_of(value).ok_or_else(|| self.mismatch("double", value))?;
                out.extend_from_slice(&f.to_le_bytes());
            }
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => {
                let b = self.latin1_bytes(value)?;
                write_long(out, b.len() as i64);
                out.extend_from_slice(&b);
            }
            Schema::String | Schema::Uuid(UuidSchema::String) => match value {
                Value::String(s) => {
                    write_long(out, s.len() as i64);
                    out.extend_from_slice(s.as_bytes());
                }
                _ => return Err(self.mismatch("string", value)),
            },
            Schema::Fixed(f) | Schema::Duration(f) => {
                let b = self.latin1_bytes(value)?;
                if b.len() != f.size {
                    return Err(format!(
                        "{}: expected {} bytes for fixed {}, found {}",
                        path_string(&self.path),
                        f.size,
                        f.name.fullname(None),
                        b.len()
                    ));
                }
                out.extend_from_slice(&b);
            }
            Schema::Uuid(UuidSchema::Fixed(f)) => {
                let s = value
                    .as_str()
                    .ok_or_else(|| self.mismatch("uuid string", value))?;
                let hex: String = s.chars().filter(|c| *c != '-').collect();
                let bytes: Option<Vec<u8>> = (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    })
                    .collect();
                match bytes {
                    Some(b) if b.len() == f.size => out.extend_from_slice(&b),
                    _ => return Err(format!("{}: '{s}' is not a uuid", path_string(&self.path))),
                }
            }
            Schema::Decimal(d) => {
                let unscaled = decimal_unscaled(value, d.scale).ok_or_else(|| {
                    self.mismatch(&format!("decimal with scale {}", d.scale), value)
                })?;
                let full = unscaled.to_be_bytes();
                match &d.inner {
                    InnerDecimalSchema::Bytes => {
                        let b = minimal_twos_complement(&full);
                        write_long(out, b.len() as i64);
                        out.extend_from_slice(b);
                    }
                    InnerDecimalSchema::Fixed(f) => {
                        let b = minimal_twos_complement(&full);
                        if b.len() > f.size {
                            return Err(format!(
                                "{}: decimal does not fit {} bytes",
                                path_string(&self.path),
                                f.size
                            ));
                        }
                        let fill = if unscaled < 0 { 0xff } else { 0 };
                        out.extend(std::iter::repeat_n(fill, f.size - b.len()));
                        out.extend_from_slice(b);
                    }
                }
            }
            Schema::Enum(e) => {
                let s = value
                    .as_str()
                    .ok_or_else(|| self.mismatch("enum symbol string", value))?;
                match e.symbols.iter().position(|x| x == s) {
                    Some(i) => write_long(out, i as i64),
                    None => {
                        return Err(format!(
                            "{}: '{s}' is not a symbol of enum {} ({})",
                            path_string(&self.path),
                            e.name.fullname(None),
                            e.symbols.join(", ")
                        ));
                    }
                }
            }
            Schema::Union(u) => return self.union(u.variants(), value, out, depth),
            Schema::Array(a) => {
                let items = value
                    .as_array()
                    .ok_or_else(|| self.mismatch("array", value))?;
                if !items.is_empty() {
                    write_long(out, items.len() as i64);
                    for (i, item) in items.iter().enumerate() {
                        self.path.push(Seg::Index(i));
                        let r = self.value(&a.items, item, out, depth + 1);
                        self.path.pop();
                        r?;
                    }
                }
                out.push(0);
            }
            Schema::Map(m) => {
                let entries = value
                    .as_object()
                    .ok_or_else(|| self.mismatch("map (object)", value))?;
                if !entries.is_empty() {
                    write_long(out, entries.len() as i64);
                    for (k, v) in entries {
                        write_long(out, k.len() as i64);
                        out.extend_from_slice(k.as_bytes());
                        self.path.push(Seg::Key(k.clone().into()));
                        let r = self.value(&m.types, v, out, depth + 1);
                        self.path.pop();
                        r?;
                    }
                }
                out.push(0);
            }
            Schema::Record(r) => self.record(r, value, out, depth)?,
            Schema::Ref { name } => {
                return Err(format!(
                    "{}: unknown named type {}",
                    path_string(&self.path),
                    name.fullname(None)
                ));
            }
        }
        Ok(())
    }

    fn record(
        &mut self,
        r: &'a RecordSchema,
        value: &Value,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), String> {
        let obj = value.as_object().ok_or_else(|| {
            self.mismatch(&format!("record {} (object)", r.name.fullname(None)), value)
        })?;
        if let Some(unknown) = obj.keys().find(|k| !r.fields.iter().any(|f| f.name == **k)) {
            return Err(format!(
                "{}: unknown field '{unknown}' for record {}",
                path_string(&self.path),
                r.name.fullname(None)
            ));
        }
        for f in &r.fields {
            self.path.push(Seg::Field(&f.name));
            let result = match (obj.get(&f.name), &f.default) {
                (Some(v), _) => self.value(&f.schema, v, out, depth + 1),
                // Defaults are JSON in Avro's encoding; for a union Java Avro 1.11+ (and so
                // Confluent) accepts a value of any branch, so they encode like any value.
                (None, Some(default)) => self.value(&f.schema, default, out, depth + 1),
                (None, None) => Err(format!(
                    "{}: missing (the field has no default)",
                    path_string(&self.path)
                )),
            };
            self.path.pop();
            result?;
        }
        Ok(())
    }

    fn union(
        &mut self,
        branches: &'a [Schema],
        value: &Value,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), String> {
        let mut first_error = None;
        for (i, branch) in branches.iter().enumerate() {
            let mut buf = Vec::new();
            write_long(&mut buf, i as i64);
            match self.value(branch, value, &mut buf, depth + 1) {
                Ok(()) => {
                    out.extend_from_slice(&buf);
                    return Ok(());
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // Avro's JSON encoding wraps a non-null union value as {"<branch type>": value}.
        if let Value::Object(obj) = value
            && obj.len() == 1
            && let Some((key, inner)) = obj.iter().next()
        {
            for (i, branch) in branches.iter().enumerate() {
                if branch_name(self.schema.resolve(branch)) == *key || branch_name(branch) == *key {
                    write_long(out, i as i64);
                    return self.value(branch, inner, out, depth + 1);
                }
            }
        }
        let names: Vec<String> = branches
            .iter()
            .map(|b| branch_name(self.schema.resolve(b)))
            .collect();
        Err(format!(
            "{}: {} matches no branch of union [{}] ({})",
            path_string(&self.path),
            json_kind(value),
            names.join(", "),
            first_error.unwrap_or_default()
        ))
    }

    fn latin1_bytes(&self, value: &Value) -> Result<Vec<u8>, String> {
        let s = value
            .as_str()
            .ok_or_else(|| self.mismatch("bytes (string of code points 0-255)", value))?;
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| {
                format!(
                    "{}: bytes string has a code point above 255",
                    path_string(&self.path)
                )
            })
    }
}

fn float_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// A decimal's unscaled value from a JSON number or a string of digits, exact at `scale` (more
/// fraction digits than the scale are refused rather than rounded).
fn decimal_unscaled(value: &Value, scale: usize) -> Option<i128> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, text.strip_prefix('+').unwrap_or(&text).to_string()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((&digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale {
        return None;
    }
    let combined = format!("{int}{frac:0<scale$}");
    let v: i128 = if combined.is_empty() {
        0
    } else {
        combined.parse().ok()?
    };
    Some(if negative { -v } else { v })
}

fn minimal_twos_complement(full: &[u8; 16]) -> &[u8] {
    let mut start = 0;
    while start < 15 {
        let (b, next) = (full[start], full[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    &full[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_render_and_parse() {
        assert_eq!(decimal_text(&[0x04, 0xd2], 2).as_deref(), Some("12.34"));
        assert_eq!(decimal_text(&[0xfb, 0x2e], 2).as_deref(), Some("-12.34"));
        assert_eq!(decimal_text(&[0x05], 3).as_deref(), Some("0.005"));
        assert_eq!(
            decimal_unscaled(&Value::String("12.34".into()), 2),
            Some(1234)
        );
        assert_eq!(decimal_unscaled(&serde_json::json!(-12.3), 2), Some(-1230));
        assert_eq!(decimal_unscaled(&Value::String("1.234".into()), 2), None);
        assert_eq!(
            minimal_twos_complement(&1234i128.to_be_bytes()),
            &[0x04, 0xd2]
        );
        assert_eq!(
            minimal_twos_complement(&(-1234i128).to_be_bytes()),
            &[0xfb, 0x2e]
        );
        assert_eq!(minimal_twos_complement(&0i128.to_be_bytes()), &[0]);
    }
}
