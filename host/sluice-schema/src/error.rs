//! Errors: Confluent's registry errors (HTTP status, error code, exact message), schema parse
//! errors and data-path codec errors.

use thiserror::Error;

/// An error as Confluent's Schema Registry reports it: the HTTP status, the `error_code` of the
/// JSON body and its `message`, with Confluent's exact texts so clients that surface them read
/// the same thing.
///
/// `Display` prints the message alone because that is what the HTTP layer puts in the body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct RegistryError {
    pub status: u16,
    pub error_code: u32,
    pub message: String,
}

impl RegistryError {
    pub fn new(status: u16, error_code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            error_code,
            message: message.into(),
        }
    }

    /// The JSON body Confluent sends: `{"error_code": ..., "message": ...}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error_code": self.error_code, "message": self.message })
    }

    pub fn subject_not_found(subject: &str) -> Self {
        Self::new(404, 40401, format!("Subject '{subject}' not found."))
    }

    pub fn version_not_found(version: i32) -> Self {
        Self::new(404, 40402, format!("Version {version} not found."))
    }

    /// 40403 for an id (`/schemas/ids/{id}`).
    pub fn schema_id_not_found(id: i32) -> Self {
        Self::new(404, 40403, format!("Schema {id} not found"))
    }

    /// 40403 for a lookup or the id listings (no id in the text).
    pub fn schema_not_found() -> Self {
        Self::new(404, 40403, "Schema not found")
    }

    pub fn subject_soft_deleted(subject: &str) -> Self {
        Self::new(
            404,
            40404,
            format!(
                "Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"
            ),
        )
    }

    pub fn subject_not_soft_deleted(subject: &str) -> Self {
        Self::new(
            404,
            40405,
            format!("Subject '{subject}' was not deleted first before being permanently deleted"),
        )
    }

    pub fn version_soft_deleted(subject: &str, version: i32) -> Self {
        Self::new(
            404,
            40406,
            format!(
                "Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently"
            ),
        )
    }

    pub fn version_not_soft_deleted(subject: &str, version: i32) -> Self {
        Self::new(
            404,
            40407,
            format!(
                "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
            ),
        )
    }

    pub fn subject_config_not_found(subject: &str) -> Self {
        Self::new(
            404,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }

    pub fn subject_mode_not_found(subject: &str) -> Self {
        Self::new(
            404,
            40409,
            format!("Subject '{subject}' does not have subject-level mode configured"),
        )
    }

    /// 409: the schema is incompatible. `error_code` is 409 as Confluent up to 8.1 sends it
    /// (40901 from 8.2); clients branch on the HTTP status only.
    pub fn incompatible(subject: &str, messages: &[String]) -> Self {
        Self::new(
            409,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                messages.join(", ")
            ),
        )
    }

    pub fn invalid_schema(message: impl Into<String>) -> Self {
        Self::new(422, 42201, message)
    }

    pub fn invalid_version(version: &str) -> Self {
        Self::new(
            422,
            42202,
            format!(
                "The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }

    pub fn invalid_compatibility_level() -> Self {
        Self::new(
            422,
            42203,
            "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive",
        )
    }

    pub fn invalid_mode(message: impl Into<String>) -> Self {
        Self::new(422, 42204, message)
    }

    pub fn not_permitted(message: impl Into<String>) -> Self {
        Self::new(422, 42205, message)
    }

    /// 42205 for a read-only subject (`<ctx>` is empty for the default context, hence two spaces).
    pub fn read_only(subject: &str) -> Self {
        Self::not_permitted(format!(
            "Subject {subject} in context  is in read-only mode"
        ))
    }

    pub fn reference_exists(subject: &str, version: i32) -> Self {
        Self::new(
            422,
            42206,
            format!(
                "One or more references exist to the schema {{magic=1,keytype=SCHEMA,subject={subject},version={version}}}."
            ),
        )
    }

    pub fn invalid_subject(subject: &str) -> Self {
        Self::new(
            422,
            42208,
            format!("The specified subject '{subject}' is not a valid."),
        )
    }

    pub fn schema_too_large() -> Self {
        Self::new(
            422,
            42209,
            "Register operation failed because schema is too large",
        )
    }

    /// 50001: the journal refused the write; nothing changed.
    pub fn store(message: impl Into<String>) -> Self {
        Self::new(500, 50001, message)
    }
}

/// Why a schema text could not be parsed or validated. Maps to 422/42201 through
/// [`SchemaError::to_registry_error`], whose message follows Confluent's
/// `Invalid schema of type <TYPE>, details: <parser message>`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaError {
    #[error("empty schema")]
    Empty,
    #[error("invalid schema type {0}")]
    InvalidType(String),
    #[error("invalid {schema_type} schema: {details}")]
    Invalid {
        schema_type: &'static str,
        details: String,
    },
    #[error("no schema reference found for subject \"{subject}\" and version {version}")]
    MissingReference { subject: String, version: i32 },
    #[error("schema is too large")]
    TooLarge,
}

impl SchemaError {
    pub(crate) fn invalid(schema_type: &'static str, details: impl Into<String>) -> Self {
        SchemaError::Invalid {
            schema_type,
            details: details.into(),
        }
    }

    /// The 422 Confluent returns for this failure, with its message texts.
    pub fn to_registry_error(&self) -> RegistryError {
        match self {
            SchemaError::Empty => RegistryError::invalid_schema("Empty schema"),
            SchemaError::InvalidType(t) => {
                RegistryError::invalid_schema(format!("Invalid schema type {t}"))
            }
            SchemaError::Invalid {
                schema_type,
                details,
            } => RegistryError::invalid_schema(format!(
                "Invalid schema of type {schema_type}, details: {details}"
            )),
            SchemaError::MissingReference { subject, version } => {
                RegistryError::invalid_schema(format!(
                    "Invalid schema, details: No schema reference found for subject \"{subject}\" and version {version}"
                ))
            }
            SchemaError::TooLarge => RegistryError::schema_too_large(),
        }
    }
}

impl From<SchemaError> for RegistryError {
    fn from(e: SchemaError) -> Self {
        e.to_registry_error()
    }
}

/// Why a record could not be decoded, validated or encoded. The text reaches users as the reason
/// a record was refused, so it names the field path and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("record is not framed: {0}")]
    Framing(String),
    #[error("schema id {0} is not registered")]
    UnknownId(i32),
    #[error("schema id {id} is not registered under subject '{subject}'")]
    WrongSubject { id: i32, subject: String },
    #[error("subject '{0}' has no schema")]
    UnknownSubject(String),
    #[error("schema {id} cannot be used: {reason}")]
    Schema { id: i32, reason: String },
    #[error("{0}")]
    Decode(String),
    #[error("{0}")]
    Encode(String),
    #[error("{0}")]
    Invalid(String),
}
