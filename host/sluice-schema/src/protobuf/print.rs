//! A `FileDescriptorProto` printed back as `.proto` text: the canonical form of a Protobuf schema
//! and what a descriptor registered by confluent-kafka-python is shown as to `.proto` readers
//! (kafkajs parses `schema` with protobufjs). Custom (extension) options are not kept.

use std::fmt::Write;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    ServiceDescriptorProto,
};

use crate::error::SchemaError;

/// Refuses what the printer cannot express faithfully (proto2 groups have their own wire form).
pub(super) fn check_supported(file: &FileDescriptorProto) -> Result<(), SchemaError> {
    fn message(m: &DescriptorProto) -> Result<(), SchemaError> {
        if m.field
            .iter()
            .chain(&m.extension)
            .any(|f| f.r#type() == Type::Group)
        {
            return Err(SchemaError::invalid(
                "PROTOBUF",
                "proto2 groups are not supported",
            ));
        }
        m.nested_type.iter().try_for_each(message)
    }
    if file.extension.iter().any(|f| f.r#type() == Type::Group) {
        return Err(SchemaError::invalid(
            "PROTOBUF",
            "proto2 groups are not supported",
        ));
    }
    file.message_type.iter().try_for_each(message)
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn scalar_name(t: Type) -> Option<&'static str> {
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

/// protoc's default `json_name`: lowerCamelCase of the field name.
pub(crate) fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

struct Printer<'a> {
    out: String,
    proto3: bool,
    normalize: bool,
    file: &'a FileDescriptorProto,
}

/// Prints `file`. With `normalize`, imports are sorted and fields and enum values ordered by
/// number (message declaration order is kept: message indexes depend on it).
pub(super) fn print(file: &FileDescriptorProto, normalize: bool) -> String {
    let syntax = file.syntax.as_deref().unwrap_or("proto2");
    let mut p = Printer {
        out: String::new(),
        proto3: syntax == "proto3",
        normalize,
        file,
    };
    if syntax == "editions" {
        let _ = writeln!(p.out, "edition = \"2023\";");
    } else {
        let _ = writeln!(p.out, "syntax = {};", quote(syntax));
    }
    if let Some(pkg) = file.package.as_deref().filter(|s| !s.is_empty()) {
        let _ = writeln!(p.out, "package {pkg};");
    }
    let mut imports: Vec<(usize, &String)> = file.dependency.iter().enumerate().collect();
    if normalize {
        imports.sort_by(|a, b| a.1.cmp(b.1));
        imports.dedup_by(|a, b| a.1 == b.1);
    }
    if !imports.is_empty() {
        p.out.push('\n');
    }
    for (i, dep) in imports {
        let public = file.public_dependency.contains(&(i as i32));
        let weak = file.weak_dependency.contains(&(i as i32));
        let kind = if public {
            "public "
        } else if weak {
            "weak "
        } else {
            ""
        };
        let _ = writeln!(p.out, "import {kind}{};", quote(dep));
    }
    p.file_options();
    for m in &file.message_type {
        p.out.push('\n');
        p.message(m, 0);
    }
    for e in &file.enum_type {
        p.out.push('\n');
        p.enumeration(e, 0);
    }
    for s in &file.service {
        p.out.push('\n');
        p.service(s);
    }
    p.extensions(&file.extension, 0);
    p.out
}

impl Printer<'_> {
    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn file_options(&mut self) {
        let Some(o) = &self.file.options else { return };
        let mut lines: Vec<String> = Vec::new();
        let mut s = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                lines.push(format!("option {k} = {};", quote(v)));
            }
        };
        s("java_package", &o.java_package);
        s("java_outer_classname", &o.java_outer_classname);
        s("go_package", &o.go_package);
        s("objc_class_prefix", &o.objc_class_prefix);
        s("csharp_namespace", &o.csharp_namespace);
        s("swift_prefix", &o.swift_prefix);
        s("php_class_prefix", &o.php_class_prefix);
        s("php_namespace", &o.php_namespace);
        s("php_metadata_namespace", &o.php_metadata_namespace);
        s("ruby_package", &o.ruby_package);
        let mut b = |k: &str, v: Option<bool>| {
            if let Some(v) = v {
                lines.push(format!("option {k} = {v};"));
            }
        };
        b("java_multiple_files", o.java_multiple_files);
        b("java_string_check_utf8", o.java_string_check_utf8);
        b("cc_enable_arenas", o.cc_enable_arenas);
        b("deprecated", o.deprecated);
        if let Some(opt) = o.optimize_for {
            let mode = match opt {
                2 => "CODE_SIZE",
                3 => "LITE_RUNTIME",
                _ => "SPEED",
            };
            lines.push(format!("option optimize_for = {mode};"));
        }
        if self.normalize {
            lines.sort();
        }
        if !lines.is_empty() {
            self.out.push('\n');
        }
        for l in lines {
            self.out.push_str(&l);
            self.out.push('\n');
        }
    }

    fn map_entry<'m>(
        &self,
        m: &'m DescriptorProto,
        f: &FieldDescriptorProto,
    ) -> Option<&'m DescriptorProto> {
        if f.label() != Label::Repeated || f.r#type() != Type::Message {
            return None;
        }
        let type_name = f.type_name();
        let simple = type_name.rsplit('.').next()?;
        m.nested_type
            .iter()
            .find(|n| {
                n.name() == simple && n.options.as_ref().and_then(|o| o.map_entry) == Some(true)
            })
            .filter(|_| type_name.ends_with(&format!("{}.{simple}", m.name())))
    }

    fn field_type(&self, f: &FieldDescriptorProto) -> String {
        match scalar_name(f.r#type()) {
            Some(s) => s.to_string(),
            None => f.type_name().to_string(),
        }
    }

    fn field(
        &mut self,
        m: &DescriptorProto,
        f: &FieldDescriptorProto,
        depth: usize,
        in_oneof: bool,
    ) {
        self.indent(depth);
        let ty = match self.map_entry(m, f) {
            Some(entry) => {
                let key = entry.field.iter().find(|x| x.number() == 1);
                let value = entry.field.iter().find(|x| x.number() == 2);
                match (key, value) {
                    (Some(k), Some(v)) => {
                        format!("map<{}, {}>", self.field_type(k), self.field_type(v))
                    }
                    _ => self.field_type(f),
                }
            }
            None => {
                let label = match f.label() {
                    _ if in_oneof => "",
                    Label::Repeated => "repeated ",
                    Label::Required => "required ",
                    Label::Optional if self.proto3 && !f.proto3_optional() => "",
                    Label::Optional if self.file.syntax.as_deref() == Some("editions") => "",
                    Label::Optional => "optional ",
                };
                format!("{label}{}", self.field_type(f))
            }
        };
        let _ = write!(self.out, "{ty} {} = {}", f.name(), f.number());
        let mut opts: Vec<String> = Vec::new();
        if let Some(d) = &f.default_value {
            let v = match f.r#type() {
                Type::String => quote(d),
                Type::Bytes => format!("\"{d}\""),
                _ => d.clone(),
            };
            opts.push(format!("default = {v}"));
        }
        if let Some(j) = &f.json_name
            && *j != default_json_name(f.name())
        {
            opts.push(format!("json_name = {}", quote(j)));
        }
        if let Some(o) = &f.options {
            if let Some(p) = o.packed {
                opts.push(format!("packed = {p}"));
            }
            if let Some(d) = o.deprecated {
                opts.push(format!("deprecated = {d}"));
            }
        }
        if !opts.is_empty() {
            let _ = write!(self.out, " [{}]", opts.join(", "));
        }
        self.out.push_str(";\n");
    }

    fn message(&mut self, m: &DescriptorProto, depth: usize) {
        self.indent(depth);
        let _ = writeln!(self.out, "message {} {{", m.name());
        if let Some(o) = &m.options
            && let Some(d) = o.deprecated
        {
            self.indent(depth + 1);
            let _ = writeln!(self.out, "option deprecated = {d};");
        }
        // Real oneofs only: proto3 `optional` fields sit in synthetic ones.
        let real_oneof = |f: &FieldDescriptorProto| f.oneof_index.filter(|_| !f.proto3_optional());
        let mut fields: Vec<&FieldDescriptorProto> = m.field.iter().collect();
        if self.normalize {
            fields.sort_by_key(|f| f.number());
        }
        let mut printed_oneofs = Vec::new();
        for f in &fields {
            match real_oneof(f) {
                None => self.field(m, f, depth + 1, false),
                Some(i) => {
                    if printed_oneofs.contains(&i) {
                        continue;
                    }
                    printed_oneofs.push(i);
                    let name = m.oneof_decl.get(i as usize).map_or("oneof", |o| o.name());
                    self.indent(depth + 1);
                    let _ = writeln!(self.out, "oneof {name} {{");
                    for member in fields.iter().filter(|g| real_oneof(g) == Some(i)) {
                        self.field(m, member, depth + 2, true);
                    }
                    self.indent(depth + 1);
                    self.out.push_str("}\n");
                }
            }
        }
        for n in &m.nested_type {
            if n.options.as_ref().and_then(|o| o.map_entry) == Some(true) {
                continue;
            }
            self.message(n, depth + 1);
        }
        for e in &m.enum_type {
            self.enumeration(e, depth + 1);
        }
        self.extensions(&m.extension, depth + 1);
        let ranges: Vec<String> = m
            .reserved_range
            .iter()
            .map(|r| range_text(r.start(), r.end() - 1))
            .collect();
        self.reserved(&ranges, &m.reserved_name, depth + 1);
        let ext: Vec<String> = m
            .extension_range
            .iter()
            .map(|r| range_text(r.start(), r.end() - 1))
            .collect();
        if !ext.is_empty() {
            self.indent(depth + 1);
            let _ = writeln!(self.out, "extensions {};", ext.join(", "));
        }
        self.indent(depth);
        self.out.push_str("}\n");
    }

    fn reserved(&mut self, ranges: &[String], names: &[String], depth: usize) {
        if !ranges.is_empty() {
            self.indent(depth);
            let _ = writeln!(self.out, "reserved {};", ranges.join(", "));
        }
        if !names.is_empty() {
            self.indent(depth);
            let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
            let _ = writeln!(self.out, "reserved {};", quoted.join(", "));
        }
    }

    fn enumeration(&mut self, e: &EnumDescriptorProto, depth: usize) {
        self.indent(depth);
        let _ = writeln!(self.out, "enum {} {{", e.name());
        if let Some(o) = &e.options {
            if let Some(a) = o.allow_alias {
                self.indent(depth + 1);
                let _ = writeln!(self.out, "option allow_alias = {a};");
            }
            if let Some(d) = o.deprecated {
                self.indent(depth + 1);
                let _ = writeln!(self.out, "option deprecated = {d};");
            }
        }
        let mut values: Vec<_> = e.value.iter().collect();
        if self.normalize {
            values.sort_by_key(|v| v.number());
        }
        for v in values {
            self.indent(depth + 1);
            let _ = write!(self.out, "{} = {}", v.name(), v.number());
            if let Some(true) = v.options.as_ref().and_then(|o| o.deprecated) {
                self.out.push_str(" [deprecated = true]");
            }
            self.out.push_str(";\n");
        }
        let ranges: Vec<String> = e
            .reserved_range
            .iter()
            .map(|r| range_text(r.start(), r.end()))
            .collect();
        self.reserved(&ranges, &e.reserved_name, depth + 1);
        self.indent(depth);
        self.out.push_str("}\n");
    }

    fn service(&mut self, s: &ServiceDescriptorProto) {
        let _ = writeln!(self.out, "service {} {{", s.name());
        for m in &s.method {
            let cs = if m.client_streaming() { "stream " } else { "" };
            let ss = if m.server_streaming() { "stream " } else { "" };
            let _ = writeln!(
                self.out,
                "  rpc {}({cs}{}) returns ({ss}{});",
                m.name(),
                m.input_type(),
                m.output_type()
            );
        }
        self.out.push_str("}\n");
    }

    fn extensions(&mut self, fields: &[FieldDescriptorProto], depth: usize) {
        let mut extendees: Vec<&str> = Vec::new();
        for f in fields {
            if !extendees.contains(&f.extendee()) {
                extendees.push(f.extendee());
            }
        }
        for extendee in extendees {
            self.out.push('\n');
            self.indent(depth);
            let _ = writeln!(self.out, "extend {extendee} {{");
            let holder = DescriptorProto::default();
            for f in fields.iter().filter(|f| f.extendee() == extendee) {
                self.field(&holder, f, depth + 1, false);
            }
            self.indent(depth);
            self.out.push_str("}\n");
        }
    }
}

fn range_text(start: i32, end_inclusive: i32) -> String {
    if start == end_inclusive {
        start.to_string()
    } else if end_inclusive >= 536_870_911 {
        format!("{start} to max")
    } else {
        format!("{start} to {end_inclusive}")
    }
}
