//! Sluice: a durable partitioned log that runs sandboxed WebAssembly transforms over every
//! record, with an HTTP API and the Kafka wire protocol. This crate assembles the layers
//! (one crate each, see ARCHITECTURE.md) into the `sluice` binary.
//!
//! # Layout
//! - [`server`]: wires the layers together and runs them until shutdown.
//! - [`config`]: the resolved settings (flags over the TOML file over defaults).
//! - [`cli`]: the `sluice` command line, a client of the HTTP API.
//! - [`demo`]: `sluice demo`, the main job end to end.
//! - [`plugins`]: the example plugins, built to components and embedded.

pub mod cli;
pub mod config;
pub mod demo;
pub mod plugins;
pub mod server;
pub mod worker;
