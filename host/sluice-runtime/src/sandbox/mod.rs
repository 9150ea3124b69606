//! The sandbox around one instance: WASI locked down, captured stdio, host imports, and
//! the bounds every call runs under (memory and table limits, a wall-clock deadline that
//! also covers blocking WASI calls, and the host's interrupt); `text` holds the host's
//! native text primitives, imports of the same instance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::InstanceConfig;
use crate::bindings::sluice::transform::host::{self, Level};
use crate::bindings_v2::sluice::transform as v2;
use crate::state::StateStore;
pub use crate::stop::Stop;

pub mod text;

/// Longest string a plugin can hand the host (log line, reject reason, init or batch
/// error); longer ones are cut at a character boundary and end with [`CUT_MARKER`].
pub const MAX_HOST_STRING: usize = 4096;
/// What a cut string ends with.
pub const CUT_MARKER: &str = "…[cut]";

/// Cuts a plugin-supplied string to [`MAX_HOST_STRING`] bytes.
pub fn bound_string(s: String) -> String {
    if s.len() <= MAX_HOST_STRING {
        s
    } else {
        bound_str(&s)
    }
}

/// Like [`bound_string`], for a borrowed string.
pub fn bound_str(s: &str) -> String {
    if s.len() <= MAX_HOST_STRING {
        return s.to_owned();
    }
    let cut = s.floor_char_boundary(MAX_HOST_STRING - CUT_MARKER.len());
    format!("{}{CUT_MARKER}", &s[..cut])
}

/// A flag the control plane raises to stop the call running on a partition task (pause,
/// delete, redeploy, shutdown). Checked by the epoch callback (every [`super::CHECK_TICKS`])
/// and by blocking WASI calls, so a runaway call ends within milliseconds.
#[derive(Debug, Default)]
pub struct Interrupt(AtomicBool);

impl Interrupt {
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Lets the calls of plugins that keep failing run one at a time per server, in arrival
/// order. Together with their idle CPU priority this leaves a core to everything else
/// however many misbehaving plugins there are: measured on two cores, three runaway
/// plugins running at idle priority side by side still added milliseconds to the tail
/// latency of a well-behaved transform; one at a time, a fraction of that.
#[derive(Debug, Default)]
pub struct IsolationQueue {
    state: Mutex<(std::collections::VecDeque<u64>, u64, bool)>,
    changed: std::sync::Condvar,
}

/// The right to make one isolating call; released when dropped.
#[derive(Debug)]
pub struct IsolationPermit<'a>(&'a IsolationQueue);

impl IsolationQueue {
    /// Waits for the permit, or returns `None` when `interrupt` is raised meanwhile.
    pub fn acquire<'a>(&'a self, interrupt: &Interrupt) -> Option<IsolationPermit<'a>> {
        let lock = |s: &'a Self| s.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = lock(self);
        let me = st.1;
        st.1 += 1;
        st.0.push_back(me);
        loop {
            if !st.2 && st.0.front() == Some(&me) {
                st.0.pop_front();
                st.2 = true;
                return Some(IsolationPermit(self));
            }
            if interrupt.is_raised() {
                st.0.retain(|t| *t != me);
                drop(st);
                self.changed.notify_all();
                return None;
            }
            st = self
                .changed
                .wait_timeout(st, Duration::from_millis(10))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for IsolationPermit<'_> {
    fn drop(&mut self) {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner()).2 = false;
        self.0.changed.notify_all();
    }
}

/// Table elements one instance may have (function references; real plugins use hundreds).
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The store's resource limiter: refusals are traps that carry a [`Stop`].
#[derive(Debug)]
pub struct Limiter {
    memory: usize,
    /// The largest linear memory the instance has had (bytes; creation counts as growth).
    pub peak: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            return Err(wasmtime::Error::new(Stop::Memory {
                limit: self.memory,
                desired,
            }));
        }
        self.peak = self.peak.max(desired);
        // Past the module's own declared maximum: `memory.grow` fails as in any engine.
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::new(Stop::Table {
                limit: MAX_TABLE_ELEMENTS,
                desired,
            }));
        }
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        8
    }
}

/// The wall-clock bound of the call in progress.
#[derive(Debug, Clone, Copy)]
pub struct CallBound {
    pub until: Instant,
    pub limit_ms: u64,
}

impl CallBound {
    pub fn starting_now(limit_ms: u64) -> CallBound {
        CallBound {
            until: Instant::now() + Duration::from_millis(limit_ms),
            limit_ms,
        }
    }
}

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

/// What the `text` primitives may still do in the running call (work units: one per
/// input byte, plus a fixed cost per call).
#[derive(Debug, Clone, Copy)]
pub struct Work {
    pub left: u64,
    pub limit: u64,
}

impl Work {
    pub fn of(limit: u64) -> Work {
        Work { left: limit, limit }
    }
}

/// The data of one instance's store.
pub struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub limits: Limiter,
    pub bound: CallBound,
    pub interrupt: Arc<Interrupt>,
    pub cfg: Arc<InstanceConfig>,
    pub partition: u32,
    pub offset: Option<i64>,
    /// The partition's keyed state (stateful deployments).
    pub state: Option<Arc<Mutex<StateStore>>>,
    /// The input records of the running `process` call (for batch-wide primitives).
    pub batch: Option<std::sync::Arc<text::CallBatch>>,
    /// The running call's budget for the `text` primitives.
    pub work: Work,
    /// Pattern sets the instance holds.
    pub patterns: usize,
    stdout: Capture,
    stderr: Capture,
    lines: usize,
    dropped: usize,
}

impl HostState {
    pub fn new(cfg: Arc<InstanceConfig>, partition: u32, interrupt: Arc<Interrupt>) -> HostState {
        let (stdout, stderr) = (Capture::default(), Capture::default());
        // No preopened directories, no environment, no arguments, no network, stdin closed.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Randomness is generated on the host: a large request is host time the
            // deadline cannot cut, so keep each one small.
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits: Limiter {
                memory: cfg.limits.memory_bytes,
                peak: 0,
            },
            bound: CallBound::starting_now(cfg.limits.init_timeout_ms),
            interrupt,
            cfg,
            partition,
            offset: None,
            state: None,
            batch: None,
            work: Work::of(super::INIT_FUEL),
            patterns: 0,
            stdout,
            stderr,
            lines: 0,
            dropped: 0,
        }
    }

    /// Why the host would stop the call now, if it would.
    pub fn should_stop(&self) -> Option<Stop> {
        if self.interrupt.is_raised() {
            return Some(Stop::Interrupted);
        }
        (Instant::now() >= self.bound.until).then_some(Stop::Deadline {
            limit_ms: self.bound.limit_ms,
            blocked: false,
        })
    }

    fn emit(&mut self, level: &str, message: String) {
        if self.lines >= MAX_LINES_PER_CALL {
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        self.cfg.logs.log(LogLine {
            level: level.to_owned(),
            message: bound_string(message),
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
                    panic = Some(bound_string(format!("panicked: {}", msg.trim())));
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

impl host::Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
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
        // Only the tables the deployment declares exist for the plugin.
        if !self.cfg.tables_allowed.contains(&table) {
            return Ok(None);
        }
        Ok(self.cfg.tables.lookup(&table, &key))
    }
}

impl crate::bindings::sluice::transform::types::Host for HostState {}

impl HostState {
    /// The partition's state, locked for one host call.
    fn state(&self) -> wasmtime::Result<std::sync::MutexGuard<'_, StateStore>> {
        let s = self.state.as_ref().ok_or_else(|| {
            wasmtime::Error::msg(
                "state is not available here (in init, or the deployment keeps no state)",
            )
        })?;
        Ok(s.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl v2::host::Host for HostState {
    fn log(&mut self, level: v2::host::Level, message: String) -> wasmtime::Result<()> {
        use v2::host::Level as L;
        let level = match level {
            L::Trace => Level::Trace,
            L::Debug => Level::Debug,
            L::Info => Level::Info,
            L::Warn => Level::Warn,
            L::Error => Level::Error,
        };
        host::Host::log(self, level, message)
    }

    fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        host::Host::config(self, key)
    }

    fn outputs(&mut self) -> wasmtime::Result<Vec<String>> {
        host::Host::outputs(self)
    }

    fn lookup(&mut self, table: String, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        host::Host::lookup(self, table, key)
    }
}

impl v2::types::Host for HostState {}

impl v2::state::Host for HostState {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.state()?.get(&key)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.state()?.put(&key, &value)
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        self.state()?.delete(&key)
    }

    fn scan(
        &mut self,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        self.state()?.scan(&prefix, start_after.as_deref(), limit)
    }

    fn set_timer(&mut self, key: Vec<u8>, at_ms: i64) -> wasmtime::Result<()> {
        self.state()?.set_timer(&key, at_ms)
    }

    fn cancel_timer(&mut self, key: Vec<u8>, at_ms: i64) -> wasmtime::Result<()> {
        self.state()?.cancel_timer(&key, at_ms)
    }

    fn apply(&mut self, ops: Vec<u8>) -> wasmtime::Result<()> {
        self.state()?.apply(&ops)
    }
}

/// Most bytes one `get-random-bytes` call may ask for.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// `wasi:io/poll` with every wait bounded by the call's deadline and the host's interrupt:
/// a plugin that sleeps (`subscribe-duration` + `block`) or polls a timer traps with
/// [`Stop::Deadline`] when its call's time is up instead of holding its partition.
pub struct BoundedPoll<'a> {
    table: &'a mut ResourceTable,
    bound: CallBound,
    interrupt: &'a Interrupt,
}

struct HasBoundedPoll;

impl HasData for HasBoundedPoll {
    type Data<'a> = BoundedPoll<'a>;
}

use wasmtime_wasi_io::bindings::wasi::io::poll::HostPollable as AsyncPollable;

/// How often a blocked WASI call looks at the interrupt.
const BLOCKED_CHECK: Duration = Duration::from_millis(10);

impl BoundedPoll<'_> {
    fn wait<F: std::future::Future>(
        bound: CallBound,
        interrupt: &Interrupt,
        fut: F,
    ) -> wasmtime::Result<F::Output> {
        wasmtime_wasi::runtime::in_tokio(async move {
            let mut fut = std::pin::pin!(fut);
            loop {
                if interrupt.is_raised() {
                    return Err(wasmtime::Error::new(Stop::Interrupted));
                }
                let now = Instant::now();
                if now >= bound.until {
                    return Err(wasmtime::Error::new(Stop::Deadline {
                        limit_ms: bound.limit_ms,
                        blocked: true,
                    }));
                }
                let step = (bound.until - now).min(BLOCKED_CHECK);
                if let Ok(v) = tokio::time::timeout(step, fut.as_mut()).await {
                    return Ok(v);
                }
            }
        })
    }
}

impl wasmtime_wasi::p2::bindings::sync::io::poll::Host for BoundedPoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        use wasmtime_wasi_io::bindings::wasi::io::poll::Host as AsyncPoll;
        let (bound, interrupt) = (self.bound, self.interrupt);
        Self::wait(bound, interrupt, AsyncPoll::poll(self.table, pollables))?
    }
}

impl wasmtime_wasi::p2::bindings::sync::io::poll::HostPollable for BoundedPoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        let (bound, interrupt) = (self.bound, self.interrupt);
        Self::wait(bound, interrupt, AsyncPollable::ready(self.table, pollable))?
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let (bound, interrupt) = (self.bound, self.interrupt);
        Self::wait(bound, interrupt, AsyncPollable::block(self.table, pollable))?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        AsyncPollable::drop(self.table, pollable)
    }
}

/// Links the WASI interfaces plugins may use: what `wasmtime_wasi::p2::add_to_linker_sync`
/// links, minus sockets (never granted) and with `wasi:io/poll` replaced by
/// [`BoundedPoll`]. Streams cannot block: stdin is closed, stdout/stderr are [`Capture`]s,
/// and there are no files.
pub fn link_wasi(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
    clocks::wall_clock::add_to_linker::<_, WasiClocks>(l, HostState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(l, HostState::clocks)?;
    filesystem::preopens::add_to_linker::<_, WasiFilesystem>(l, HostState::filesystem)?;
    random::random::add_to_linker::<_, WasiRandom>(l, HostState::random)?;
    random::insecure::add_to_linker::<_, WasiRandom>(l, HostState::random)?;
    random::insecure_seed::add_to_linker::<_, WasiRandom>(l, HostState::random)?;
    cli::exit::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::environment::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::stdin::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::stdout::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::stderr::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    sync::filesystem::types::add_to_linker::<_, WasiFilesystem>(l, HostState::filesystem)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<_, HasTable>(l, |s| &mut s.table)?;
    sync::io::streams::add_to_linker::<_, HasTable>(l, |s| &mut s.table)?;
    sync::io::poll::add_to_linker::<_, HasBoundedPoll>(l, |s| BoundedPoll {
        table: &mut s.table,
        bound: s.bound,
        interrupt: &s.interrupt,
    })?;
    Ok(())
}

struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_permits_go_in_arrival_order_and_waiting_ends_on_interrupt() {
        let q = Arc::new(IsolationQueue::default());
        let first = q.acquire(&Interrupt::default()).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..3 {
            let (q, order) = (q.clone(), order.clone());
            waiters.push(std::thread::spawn(move || {
                let _p = q.acquire(&Interrupt::default()).unwrap();
                order.lock().unwrap().push(i);
            }));
            std::thread::sleep(Duration::from_millis(30));
        }
        let interrupt = Arc::new(Interrupt::default());
        let late = {
            let (q, interrupt) = (q.clone(), interrupt.clone());
            std::thread::spawn(move || q.acquire(&interrupt).is_none())
        };
        std::thread::sleep(Duration::from_millis(30));
        interrupt.raise();
        assert!(late.join().unwrap(), "an interrupted wait gives up");
        drop(first);
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
    }

    #[test]
    fn plugin_strings_are_cut_at_a_character_boundary_with_a_marker() {
        let s = bound_string("é".repeat(5000));
        assert!(s.len() <= MAX_HOST_STRING && s.ends_with(CUT_MARKER));
        assert_eq!(bound_string("short".into()), "short");
        assert_eq!(bound_str(&"x".repeat(10_000)).len(), MAX_HOST_STRING);
    }
}
