//! The sandbox around one instance: WASI locked down, captured stdio, host imports.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::InstanceConfig;
use super::bindings::sluice::transform::host::{self, Level};

/// Lookup tables for the `lookup` import (materialised compacted topics).
pub trait Tables: Send + Sync {
    fn lookup(&self, table: &str, key: &[u8]) -> Option<Vec<u8>>;
}

/// No tables at all.
#[derive(Debug, Default)]
pub struct NoTables;

impl Tables for NoTables {
    fn lookup(&self, _: &str, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// One line a plugin logged (through `log` or its stdout/stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: String,
    pub message: String,
    pub plugin: String,
    pub version: u32,
    pub partition: u32,
    /// First offset of the batch being processed (none during init).
    pub offset: Option<i64>,
}

/// Where plugin log lines go.
pub trait LogSink: Send + Sync {
    fn log(&self, line: LogLine);
}

/// Sends plugin log lines to the server's own log.
#[derive(Debug, Default)]
pub struct TracingLogs;

impl LogSink for TracingLogs {
    fn log(&self, l: LogLine) {
        tracing::info!(target: "sluice::plugin", plugin = %l.plugin, version = l.version,
            partition = l.partition, offset = ?l.offset, level = %l.level, "{}", l.message);
    }
}

/// Most log lines one call may write; the rest are counted and summarised.
const MAX_LINES_PER_CALL: usize = 100;
/// Most stdout/stderr bytes kept per call.
const MAX_CAPTURE_BYTES: usize = 64 * 1024;

/// A stdout/stderr that keeps the first bytes of each call and accepts (and drops) the
/// rest, so a chatty plugin is neither blocked nor able to fill the host's memory.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = MAX_CAPTURE_BYTES.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

/// The data of one instance's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: StoreLimits,
    pub cfg: Arc<InstanceConfig>,
    pub partition: u32,
    pub offset: Option<i64>,
    stdout: Capture,
    stderr: Capture,
    lines: usize,
    dropped: usize,
}

impl HostState {
    pub fn new(cfg: Arc<InstanceConfig>, partition: u32) -> HostState {
        let (stdout, stderr) = (Capture::default(), Capture::default());
        // No preopened directories, no environment, no arguments, no network, stdin closed.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(cfg.limits.memory_bytes)
            .table_elements(100_000)
            .instances(64)
            .tables(32)
            .memories(8)
            .trap_on_grow_failure(true)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits,
            cfg,
            partition,
            offset: None,
            stdout,
            stderr,
            lines: 0,
            dropped: 0,
        }
    }

    fn emit(&mut self, level: &str, message: String) {
        if self.lines >= MAX_LINES_PER_CALL {
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        self.cfg.logs.log(LogLine {
            level: level.to_owned(),
            message,
            plugin: self.cfg.plugin.clone(),
            version: self.cfg.version,
            partition: self.partition,
            offset: self.offset,
        });
    }

    /// Turns what the plugin printed during the last call into log lines and resets the
    /// per-call budget. Returns the panic message, if the plugin printed one.
    pub fn end_call(&mut self) -> Option<String> {
        let mut panic = None;
        for (cap, level) in [
            (self.stdout.clone(), "stdout"),
            (self.stderr.clone(), "stderr"),
        ] {
            let bytes = cap.take();
            let text = String::from_utf8_lossy(&bytes);
            let mut lines = text.lines().peekable();
            while let Some(line) = lines.next() {
                if line.trim().is_empty() {
                    continue;
                }
                if level == "stderr" && line.contains("panicked at") {
                    // Rust prints the location line, then the message on the next line.
                    let msg = lines.peek().map_or(line, |m| *m);
                    panic = Some(format!("panicked: {}", msg.trim()));
                }
                self.emit(level, line.to_owned());
            }
        }
        if self.dropped > 0 {
            let n = self.dropped;
            self.lines = 0;
            self.emit(
                "warn",
                format!("{n} more log lines dropped (limit {MAX_LINES_PER_CALL} per batch)"),
            );
        }
        self.lines = 0;
        self.dropped = 0;
        panic
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Longest log message kept (longer ones are cut).
const MAX_LOG_MESSAGE: usize = 4096;

impl host::Host for HostState {
    fn log(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.emit(level, message);
        Ok(())
    }

    fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.cfg.config.get(&key).cloned())
    }

    fn outputs(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.cfg.outputs.clone())
    }

    fn lookup(&mut self, table: String, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.cfg.tables.lookup(&table, &key))
    }
}

impl super::bindings::sluice::transform::types::Host for HostState {}
