//! Sluice: a durable partitioned log that runs sandboxed WebAssembly transforms over every
//! record, with an HTTP API and the Kafka wire protocol.
//!
//! # Layout
//! - [`log`]: storage — topics, partitions, segments of Kafka v2 record batches.
//! - [`api`]: the HTTP API (the only module that knows HTTP/JSON).
//! - [`auth`]: identities, roles and the access decisions of HTTP and Kafka.
//! - [`kafka`]: the Kafka wire protocol in front of the log.
//! - [`runtime`]: wasmtime — validation, sandbox, limits, batch execution.
//! - [`pipeline`]: transforms between topics, the plugin store and lookup tables.
//! - [`connect`]: connectors — `http-pull` sources and `http-sink` / `postgres-sink` sinks.
//! - [`server`]: wires the pieces together and runs them until shutdown.
//! - [`telemetry`]: latency histograms of HTTP, Kafka and transform batches.
//! - [`tls`]: rustls for the HTTP and Kafka listeners.
//! - [`cli`]: the `sluice` command line, a client of the HTTP API.
//! - [`config`]: the server's settings (flags and the TOML file).
//! - [`fs`]: file-system helpers (the data directory's lock).
//! - [`demo`]: `sluice demo`, the main job end to end.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connect;
pub mod demo;
pub mod fs;
pub mod kafka;
pub mod log;
pub mod pipeline;
pub mod plugins;
pub mod runtime;
pub mod server;
pub mod telemetry;
pub mod tls;
