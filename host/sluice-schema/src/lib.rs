//! Sluice's schema registry core: Confluent-compatible schemas, compatibility rules, registry
//! state, the wire format and the data-path codecs, as pure logic (no network, no files).
//!
//! The HTTP layer (`sluice-api`) maps each endpoint of Confluent's REST API v1 to one method of
//! [`Registry`]; the server hands the registry a [`Journal`] that appends to the compacted
//! `_schemas` topic and replays that topic into it at start. Everything the registry writes uses
//! Confluent's own `_schemas` record format, so the topic stays readable by Confluent's tools.
//!
//! # Layout
//! - [`types`]: schema types, references, compatibility levels, modes, version ids.
//! - [`error`]: [`RegistryError`] (Confluent's status/code/message), [`SchemaError`], [`CodecError`].
//! - [`schema`]: parsing a schema text of any type with its references resolved, canonical and
//!   normalized forms, identity.
//! - `avro`, `protobuf`, `json`: per-type parsing, compatibility checkers (ports of Confluent's
//!   and Java Avro's rules) and data codecs.
//! - [`compat`]: compatibility levels over the per-type checkers, with Confluent's messages.
//! - [`wire`]: Confluent's wire framing (magic byte, schema id, Protobuf message indexes).
//! - [`codec`]: the data path's validation modes and JSON mappings (the codecs are
//!   [`ParsedSchema`] methods, reached through [`Registry`]'s cache of parsed schemas by id).
//! - [`registry`]: the registry state machine, its `_schemas` records and the journal contract.

pub mod codec;
pub mod compat;
pub mod error;
pub mod registry;
pub mod schema;
pub mod types;
pub mod wire;

mod avro;
mod json;
mod protobuf;

pub use codec::ValidationMode;
pub use compat::{Policy, PreviousSchema, can_read, check, check_with_policy};
pub use error::{CodecError, RegistryError, SchemaError};
pub use registry::{
    ApplyOutcome, Journal, JournalRecord, MemoryJournal, Registry, RegistryOptions, ReplayStats,
    api::{
        CompatibilityResponse, ConfigResponse, ConfigUpdate, Decoded, EncodeTarget, ModeResponse,
        ModeUpdate, ReferenceRequest, RegisterRequest, RegisterResponse, SchemaResponse,
        SchemaStringResponse, SubjectVersion,
    },
};
pub use schema::{ParsedSchema, ReferenceResolver, ResolvedReference, no_references, parse_schema};
pub use types::{
    CompatibilityLevel, Mode, SchemaReference, SchemaType, VersionId, is_valid_subject,
    parse_query_bool,
};
pub use wire::{Framed, frame, frame_with_indexes, unframe};
