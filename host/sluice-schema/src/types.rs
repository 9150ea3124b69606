//! The registry's small vocabulary: schema types, references, compatibility levels, modes and
//! version ids, with the parsing rules Confluent applies to each.

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// The type of a schema. Absent or null in a request means AVRO; the name is case-sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum SchemaType {
    #[default]
    #[serde(rename = "AVRO")]
    Avro,
    #[serde(rename = "PROTOBUF")]
    Protobuf,
    #[serde(rename = "JSON")]
    Json,
}

impl SchemaType {
    /// Every type the registry serves, as `/schemas/types` lists them.
    pub const ALL: [SchemaType; 3] = [SchemaType::Json, SchemaType::Protobuf, SchemaType::Avro];

    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Json => "JSON",
        }
    }

    /// Parses a type name exactly (Confluent's names are case-sensitive).
    pub fn parse(name: &str) -> Option<SchemaType> {
        match name {
            "AVRO" => Some(SchemaType::Avro),
            "PROTOBUF" => Some(SchemaType::Protobuf),
            "JSON" => Some(SchemaType::Json),
            _ => None,
        }
    }
}

impl std::fmt::Display for SchemaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference from one schema to a version of another subject: an Avro named type, a
/// Protobuf import or a JSON Schema `$ref`, by `name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SchemaReference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// A compatibility level. Parsed case-insensitively, stored and shown upper-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Parses a level in any letter case; anything else is 42203.
    pub fn parse(name: &str) -> Result<CompatibilityLevel, RegistryError> {
        Ok(match name.trim().to_ascii_uppercase().as_str() {
            "NONE" => CompatibilityLevel::None,
            "BACKWARD" => CompatibilityLevel::Backward,
            "BACKWARD_TRANSITIVE" => CompatibilityLevel::BackwardTransitive,
            "FORWARD" => CompatibilityLevel::Forward,
            "FORWARD_TRANSITIVE" => CompatibilityLevel::ForwardTransitive,
            "FULL" => CompatibilityLevel::Full,
            "FULL_TRANSITIVE" => CompatibilityLevel::FullTransitive,
            _ => return Err(RegistryError::invalid_compatibility_level()),
        })
    }

    /// Whether the level checks every earlier version rather than the latest only.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl std::fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registry mode, global or per subject (the subject's overrides the global one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    #[default]
    Readwrite,
    Readonly,
    ReadonlyOverride,
    Import,
    /// Global only: Confluent's leader forwarding. Accepted and stored, otherwise READWRITE.
    Forward,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Readwrite => "READWRITE",
            Mode::Readonly => "READONLY",
            Mode::ReadonlyOverride => "READONLY_OVERRIDE",
            Mode::Import => "IMPORT",
            Mode::Forward => "FORWARD",
        }
    }

    /// Parses a mode in any letter case; anything else is 42204.
    pub fn parse(name: &str) -> Result<Mode, RegistryError> {
        Ok(match name.trim().to_ascii_uppercase().as_str() {
            "READWRITE" => Mode::Readwrite,
            "READONLY" => Mode::Readonly,
            "READONLY_OVERRIDE" => Mode::ReadonlyOverride,
            "IMPORT" => Mode::Import,
            "FORWARD" => Mode::Forward,
            _ => {
                return Err(RegistryError::invalid_mode(
                    "Invalid mode. Valid values are READWRITE, READONLY, IMPORT and FORWARD.",
                ));
            }
        })
    }

    pub(crate) fn is_read_only(self) -> bool {
        matches!(self, Mode::Readonly | Mode::ReadonlyOverride)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `{version}` path segment: `latest` (any case, trimmed) or `-1`, or a number in
/// `[1, 2^31-1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionId {
    Latest,
    Number(i32),
}

impl VersionId {
    /// Parses a path segment; anything else is 42202 with Confluent's message.
    pub fn parse(segment: &str) -> Result<VersionId, RegistryError> {
        let trimmed = segment.trim();
        if trimmed.eq_ignore_ascii_case("latest") {
            return Ok(VersionId::Latest);
        }
        match trimmed.parse::<i32>() {
            Ok(-1) => Ok(VersionId::Latest),
            Ok(n) if n >= 1 => Ok(VersionId::Number(n)),
            _ => Err(RegistryError::invalid_version(segment)),
        }
    }

    /// The number Confluent prints in "Version %s not found." (`-1` for latest).
    pub fn as_number(self) -> i32 {
        match self {
            VersionId::Latest => -1,
            VersionId::Number(n) => n,
        }
    }
}

/// Parses a query boolean as JAX-RS does: `true` in any letter case is true, anything else false
/// (Python clients send `True`/`False`).
pub fn parse_query_bool(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Confluent's subject validity rule: not empty, no ISO control characters, not one of the
/// reserved names.
pub fn is_valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && !subject.chars().any(char::is_control)
        && subject != "__GLOBAL"
        && subject != "__EMPTY"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids() {
        assert_eq!(VersionId::parse("latest").unwrap(), VersionId::Latest);
        assert_eq!(VersionId::parse(" LATEST ").unwrap(), VersionId::Latest);
        assert_eq!(VersionId::parse("-1").unwrap(), VersionId::Latest);
        assert_eq!(VersionId::parse("7").unwrap(), VersionId::Number(7));
        for bad in ["0", "-2", "abc", "2147483648", ""] {
            let e = VersionId::parse(bad).unwrap_err();
            assert_eq!((e.status, e.error_code), (422, 42202), "{bad}");
        }
    }

    #[test]
    fn levels_and_modes_parse_case_insensitively() {
        assert_eq!(
            CompatibilityLevel::parse("full_transitive").unwrap(),
            CompatibilityLevel::FullTransitive
        );
        assert_eq!(
            CompatibilityLevel::parse("x").unwrap_err().error_code,
            42203
        );
        assert_eq!(Mode::parse("import").unwrap(), Mode::Import);
        assert_eq!(Mode::parse("nope").unwrap_err().error_code, 42204);
        assert_eq!(
            serde_json::to_string(&CompatibilityLevel::BackwardTransitive).unwrap(),
            "\"BACKWARD_TRANSITIVE\""
        );
        assert_eq!(
            serde_json::to_string(&Mode::ReadonlyOverride).unwrap(),
            "\"READONLY_OVERRIDE\""
        );
    }

    #[test]
    fn query_booleans() {
        assert!(parse_query_bool(Some("True")));
        assert!(parse_query_bool(Some("true")));
        assert!(!parse_query_bool(Some("False")));
        assert!(!parse_query_bool(Some("1")));
        assert!(!parse_query_bool(None));
    }

    #[test]
    fn subjects() {
        assert!(is_valid_subject("common/address.proto"));
        assert!(!is_valid_subject("a\u{0}b"));
        assert!(!is_valid_subject("__GLOBAL"));
        assert!(!is_valid_subject(""));
    }
}
