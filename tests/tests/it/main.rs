//! End-to-end tests against the real `sluice` binary.
#![allow(clippy::unwrap_used)]

mod alerts;
mod common;
mod connectors;
mod console;
mod disk;
mod encryption;
mod groups;
mod hostile;
mod kafka;
mod languages;
mod layers;
mod lineage;
mod log_http;
mod nexmark;
mod pipeline;
mod recovery;
mod runtime;
mod runtime_entries;
mod runtime_stream;
mod schemas;
mod security;
mod shadow;
mod state_disk;
mod stateful;
mod tier;
mod walkthrough;
mod worker;
mod worker_records;
mod worker_stateful;
