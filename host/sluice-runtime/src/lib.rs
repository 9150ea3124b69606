//! Runs transform plugins: validation, a compiled-artifact cache, sandboxed instances, and
//! batch execution that isolates poison records.
//!
//! Nothing here knows HTTP or topics: callers hand in the records section of a batch and
//! get one result per record back.

mod compile_cache;
mod exec;
mod sandbox;
pub mod state;
mod stop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use exec::{
    BatchInput, BatchOutput, CallKind, Early, Emitted, EmittedRecord, Executor, INIT_FUEL,
    RecordResult,
};
pub use sandbox::{
    CUT_MARKER, Interrupt, IsolationPermit, IsolationQueue, LogLine, LogSink, MAX_HOST_STRING,
    NoTables, Tables, TracingLogs, bound_str, bound_string,
};
pub use stop::Stop;

use sandbox::HostState;

/// The limits are part of the deployment contract; the runtime enforces them.
/// `MAX_MEMORY_BYTES` is also the pooling allocator's slot size.
pub use sluice_deploy::{Limits, MAX_MEMORY_BYTES, MAX_STATE_BYTES};

/// Generated bindings of the `transform` world, version 0.1 (host side).
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "transform",
        path: "../../wit/v0.1/transform.wit",
        imports: { default: trappable },
    });
}

/// Generated bindings of the `transform` world, version 0.2: state, timers, watermarks.
pub mod bindings_v2 {
    wasmtime::component::bindgen!({
        world: "transform",
        path: "../../wit/transform.wit",
        imports: { default: trappable },
        with: { "sluice:transform/text.pattern": crate::sandbox::text::Pattern },
    });
}

/// The type of every `wasi:sockets` resource: none is ever made (their functions trap).
struct NoSocket;

/// The plugin-contract version a component was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `sluice:transform@0.1.0`: `process` only.
    V0_1,
    /// `sluice:transform@0.2.x`: `process` and `on-timers`, state and timers (0.2.0), the
    /// host's `text` primitives (0.2.1).
    V0_2,
}

/// `sha256:<hex>` of a component's bytes: what names a plugin version's content.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// How long one epoch tick lasts.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Running wasm looks at its deadline and the host's interrupt every this many ticks
/// (the epoch callback), so a call ends within ~10 ms of either.
const CHECK_TICKS: u64 = 2;

/// Errors of the runtime. Display strings are meant for the operator who uploaded the plugin.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("plugin is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error("component does not implement the sluice:transform/transform world: {0}")]
    WrongWorld(String),
    #[error(
        "component imports {0}, which plugins may not use (allowed: sluice:transform/host and the \
         WASI cli, io, clocks, random and filesystem interfaces, without files or network)"
    )]
    ForbiddenImport(String),
    #[error("plugin init failed: {0}")]
    Init(String),
    #[error("could not start an instance: {0}")]
    Instantiate(String),
    #[error("compiled-code cache: {0}")]
    Cache(String),
    #[error("interrupted by the host")]
    Interrupted,
}

/// Where fuel is metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metering {
    /// Normal calls run on an engine without fuel (bounded by `timeout_ms` and the
    /// interrupt through epochs); a call that fails or times out has its records run
    /// again one at a time on a fuel-metered engine, where `fuel_per_record` is the
    /// deterministic per-record CPU limit (the default).
    #[default]
    Isolation,
    /// Every call is metered (one engine, fuel everywhere).
    Always,
    /// Never: CPU is bounded by the wall-clock deadline alone (to measure fuel's cost).
    Off,
}

/// How a runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub metering: Metering,
    /// Largest component accepted.
    pub max_plugin_bytes: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            metering: Metering::Isolation,
            max_plugin_bytes: 32 << 20,
        }
    }
}

/// Virtual address space reserved per linear memory. At 4 GiB every 32-bit address a
/// plugin can form lands inside the reservation or its guard, so Cranelift emits no bounds
/// checks; memories never move (their limit fits the reservation).
pub const MEMORY_RESERVATION: u64 = 4 << 30;
/// Guard pages after each memory: loads at a constant offset past the reservation trap.
pub const MEMORY_GUARD: u64 = 32 << 20;

// A memory limit above the reservation would make memories movable and bring bounds
// checks back into every load and store.
const _: () = assert!(MAX_MEMORY_BYTES as u64 <= MEMORY_RESERVATION);
const _: () = assert!(MEMORY_RESERVATION >= 1 << 32);
/// Everything one deployment's instances share.
#[derive(Clone)]
pub struct InstanceConfig {
    pub plugin: String,
    pub version: u32,
    pub config: BTreeMap<String, String>,
    pub outputs: Vec<String>,
    pub limits: Limits,
    pub tables: Arc<dyn Tables>,
    /// The tables this deployment declared; `lookup` of any other finds nothing.
    pub tables_allowed: Vec<String>,
    pub logs: Arc<dyn LogSink>,
    /// Recycle an instance after this many batches (bounds leaks in guest code).
    pub recycle_after: u64,
}

impl std::fmt::Debug for InstanceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceConfig")
            .field("plugin", &self.plugin)
            .field("version", &self.version)
            .field("outputs", &self.outputs)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A component ready to instantiate, in the world it was built for.
pub(crate) enum Pre {
    V1(bindings::TransformPre<HostState>),
    V2(bindings_v2::TransformPre<HostState>),
}

/// A validated, compiled plugin, ready to instantiate.
pub struct Compiled {
    /// `sha256:<hex>` of the uploaded bytes.
    pub digest: String,
    pub size: usize,
    pre: Pre,
    /// The same component on the fuel-metered engine (none when the runtime has one
    /// engine).
    metered: Option<MeteredPre>,
    /// It imports the `state` interface: its deployments keep keyed state.
    stateful: bool,
}

/// The component on the fuel-metered engine, built once: at once when its artifact is
/// cached, else in the background after the upload (a call that isolates records is
/// rare, and compiling a 12–18 MB Python or JavaScript component for both engines before
/// answering the upload doubled its wait). The first call that needs it waits for it.
struct MeteredPre {
    cell: std::sync::OnceLock<Result<Pre, String>>,
    /// What building it takes, until it is built.
    source: std::sync::Mutex<Option<MeteredSource>>,
}

/// The runtime and the component's bytes, for a metered build not done yet.
type MeteredSource = (Arc<Runtime>, Arc<[u8]>);

impl MeteredPre {
    fn ready(pre: Pre) -> MeteredPre {
        MeteredPre {
            cell: std::sync::OnceLock::from(Ok(pre)),
            source: std::sync::Mutex::new(None),
        }
    }

    fn get(&self, digest: &str) -> Result<&Pre, RuntimeError> {
        self.cell
            .get_or_init(|| {
                let source = self.source.lock().unwrap_or_else(|p| p.into_inner()).take();
                let Some((rt, bytes)) = source else {
                    return Err("the metered build was lost".into());
                };
                let Some(set) = rt.metered.as_ref() else {
                    return Err("the runtime has no metered engine".into());
                };
                rt.compile_on(set, &bytes, digest)
                    .map(|(p, _)| p)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| RuntimeError::Instantiate(format!("on the fuel-metered engine: {e}")))
    }
}

impl Compiled {
    /// The component on the fast engine, or on the metered one (built now if it is not
    /// yet).
    pub(crate) fn pre(&self, metered: bool) -> Result<&Pre, RuntimeError> {
        match (&self.metered, metered) {
            (Some(m), true) => m.get(&self.digest),
            _ => Ok(&self.pre),
        }
    }

    pub fn world(&self) -> World {
        match self.pre {
            Pre::V1(_) => World::V0_1,
            Pre::V2(_) => World::V0_2,
        }
    }

    /// Whether the plugin uses keyed state or timers (it imports `sluice:transform/state`).
    pub fn stateful(&self) -> bool {
        self.stateful
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("digest", &self.digest)
            .field("world", &self.world())
            .field("stateful", &self.stateful)
            .finish()
    }
}

/// The wasmtime engine, linker and compiled-code cache of one server.
pub struct Runtime {
    /// Normal calls (no fuel unless `Metering::Always`).
    fast: EngineSet,
    /// Isolation calls, fuel-metered (none: the fast engine does everything).
    metered: Option<EngineSet>,
    cache_dir: PathBuf,
    max_plugin_bytes: usize,
    metering: Metering,
    stop: Arc<AtomicBool>,
    /// Calls of plugins that keep failing take turns here.
    isolation: IsolationQueue,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Interfaces a plugin may import (prefixes of import names).
const ALLOWED_IMPORTS: &[&str] = &[
    "sluice:transform/host@",
    "sluice:transform/types@",
    "sluice:transform/state@",
    "sluice:transform/text@",
    // Linked as traps (`Runtime::linker_for`): the network is never reachable.
    "wasi:sockets/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/environment@",
    "wasi:cli/exit@",
    "wasi:cli/stdin@",
    "wasi:cli/stdout@",
    "wasi:cli/stderr@",
    "wasi:cli/terminal-",
    "wasi:filesystem/types@",
    "wasi:filesystem/preopens@",
];

/// One wasmtime engine with its linker and compiled-code cache key.
struct EngineSet {
    engine: Engine,
    linker: Linker<HostState>,
    /// The engine's compatibility hash, in cached artifacts' names.
    compat: String,
    fuel: bool,
}

impl EngineSet {
    /// An engine (fuel-metered or not); `parallel`: compile on the process's shared
    /// threads (else on the calling thread alone: background builds never take them from
    /// an upload that someone waits for).
    fn new(
        fuel: bool,
        parallel: bool,
        cache: Arc<compile_cache::CompileCache>,
    ) -> Result<EngineSet, RuntimeError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(512)
            .total_core_instances(4096)
            .total_memories(1024)
            .total_tables(2048)
            .max_memory_size(MAX_MEMORY_BYTES)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(8);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // On by default, it makes every sync component call ~3x slower.
            .concurrency_support(false)
            .consume_fuel(fuel)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            // The memory layout, pinned (these are today's defaults on 64-bit hosts): no
            // bounds checks in compiled code, out-of-bounds accesses caught by guard
            // pages and signal handlers.
            .memory_reservation(MEMORY_RESERVATION)
            .memory_guard_size(MEMORY_GUARD)
            .guard_before_linear_memory(true)
            .memory_may_move(false)
            .signals_based_traps(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config.parallel_compilation(parallel);
        config
            .enable_incremental_compilation(cache)
            .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;

        // `SLUICE_WASM_PROFILE=perfmap` lets `perf` name the functions of JIT-compiled
        // plugins; `jitdump` also gives it their code, for `perf inject --jit` + annotate.
        match std::env::var("SLUICE_WASM_PROFILE").as_deref() {
            Ok("perfmap") => {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            }
            Ok("jitdump") => {
                config.profiler(wasmtime::ProfilingStrategy::JitDump);
            }
            _ => {}
        }
        let engine =
            Engine::new(&config).map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        let mut linker = Linker::<HostState>::new(&engine);
        sandbox::link_wasi(&mut linker).map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        bindings::Transform::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        bindings_v2::Transform::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        let compat = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            format!("{:016x}", h.finish())
        };
        Ok(EngineSet {
            engine,
            linker,
            compat,
            fuel,
        })
    }
}

impl Runtime {
    /// Builds the engines (pooling, no component-model concurrency; fuel per
    /// [`Metering`]) and starts the epoch ticker. Compiled artifacts are cached under
    /// `cache_dir`.
    pub fn new(cache_dir: &Path) -> Result<Arc<Runtime>, RuntimeError> {
        Self::with_options(cache_dir, RuntimeOptions::default())
    }

    /// Like `new`, with the given options.
    pub fn with_options(
        cache_dir: &Path,
        options: RuntimeOptions,
    ) -> Result<Arc<Runtime>, RuntimeError> {
        let RuntimeOptions {
            metering,
            max_plugin_bytes,
        } = options;
        // One incremental cache for both engines: rebuilt plugins compile what changed.
        let cache = Arc::new(compile_cache::CompileCache::default());
        let fast = EngineSet::new(metering == Metering::Always, true, cache.clone())?;
        let metered = match metering {
            // Built in the background after an upload: one thread, at background priority.
            Metering::Isolation => Some(EngineSet::new(true, false, cache)?),
            Metering::Always | Metering::Off => None,
        };
        std::fs::create_dir_all(cache_dir).map_err(|e| RuntimeError::Cache(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let engines: Vec<Engine> = std::iter::once(fast.engine.clone())
            .chain(metered.as_ref().map(|m| m.engine.clone()))
            .collect();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Acquire) {
                    std::thread::sleep(EPOCH_TICK);
                    for e in &engines {
                        e.increment_epoch();
                    }
                }
            })
            .map_err(|e| RuntimeError::Instantiate(e.to_string()))?;
        Ok(Arc::new(Runtime {
            fast,
            metered,
            cache_dir: cache_dir.to_path_buf(),
            max_plugin_bytes,
            metering,
            stop,
            isolation: IsolationQueue::default(),
        }))
    }

    /// Largest component `compile` accepts.
    pub fn max_plugin_bytes(&self) -> usize {
        self.max_plugin_bytes
    }

    /// The engine of normal calls.
    pub fn engine(&self) -> &Engine {
        &self.fast.engine
    }

    /// The engine of isolation calls (`metered`) or of normal ones, and whether it meters
    /// fuel.
    pub(crate) fn engine_for(&self, metered: bool) -> (&Engine, bool) {
        let set = match (&self.metered, metered) {
            (Some(m), true) => m,
            _ => &self.fast,
        };
        (&set.engine, set.fuel)
    }

    pub fn metering(&self) -> Metering {
        self.metering
    }

    /// Where calls of plugins that keep failing take turns.
    pub fn isolation(&self) -> &IsolationQueue {
        &self.isolation
    }

    /// Validates and compiles uploaded bytes, or loads them from the cache when this engine
    /// compiled the same bytes before.
    pub fn compile(self: &Arc<Self>, bytes: &[u8]) -> Result<Arc<Compiled>, RuntimeError> {
        if bytes.len() > self.max_plugin_bytes {
            return Err(RuntimeError::TooLarge {
                size: bytes.len(),
                limit: self.max_plugin_bytes,
            });
        }
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => {}
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                return Err(RuntimeError::NotAComponent(
                    "this is a core WebAssembly module; build for wasm32-wasip2 to get a component"
                        .into(),
                ));
            }
            _ => {
                return Err(RuntimeError::NotAComponent(
                    "the bytes do not start with the WebAssembly magic number".into(),
                ));
            }
        }
        let digest = digest(bytes);
        let (pre, stateful) = self.compile_on(&self.fast, bytes, &digest)?;
        // The metered artifact: loaded now when cached, else built in the background.
        let (metered, build_later) = match &self.metered {
            None => (None, false),
            Some(set) => match Self::load_cached(&set.engine, &self.cached_path(set, &digest)) {
                Some(_) => {
                    let (p, _) = self.compile_on(set, bytes, &digest)?;
                    (Some(MeteredPre::ready(p)), false)
                }
                None => (
                    Some(MeteredPre {
                        cell: std::sync::OnceLock::new(),
                        source: std::sync::Mutex::new(Some((self.clone(), Arc::from(bytes)))),
                    }),
                    true,
                ),
            },
        };
        let compiled = Arc::new(Compiled {
            digest,
            size: bytes.len(),
            pre,
            metered,
            stateful,
        });
        if build_later {
            let c = compiled.clone();
            let spawned = std::thread::Builder::new()
                .name("sluice-compile-metered".into())
                .spawn(move || {
                    sluice_common::sched::background_priority();
                    if let Err(e) = c.pre(true) {
                        tracing::warn!(digest = %c.digest, error = %e, "metered build failed; isolation calls will fail");
                    }
                });
            if let Err(e) = spawned {
                tracing::debug!(error = %e, "no thread for the metered build: the first isolation builds it");
            }
        }
        Ok(compiled)
    }

    /// Where the artifact of `digest` compiled by `set` is cached.
    fn cached_path(&self, set: &EngineSet, digest: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{}-{}.cwasm", &digest[7..], set.compat))
    }

    /// Compiles (or loads from the cache) and links a component on one engine; whether it
    /// imports state.
    fn compile_on(
        &self,
        set: &EngineSet,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Pre, bool), RuntimeError> {
        let cached = self.cached_path(set, digest);
        let (component, fresh) = match Self::load_cached(&set.engine, &cached) {
            Some(c) => (c, false),
            None => {
                let c = Component::new(&set.engine, bytes)
                    .map_err(|e| RuntimeError::Invalid(format!("{e:#}")))?;
                (c, true)
            }
        };
        let stateful = Self::check_imports(&set.engine, &component)?;
        if fresh {
            let written = component
                .serialize()
                .map_err(|e| e.to_string())
                .and_then(|artifact| {
                    let tmp = cached.with_extension("tmp");
                    std::fs::write(&tmp, &artifact)
                        .and_then(|_| std::fs::rename(&tmp, &cached))
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = written {
                tracing::warn!(path = %cached.display(), error = %e, "could not cache compiled plugin");
            }
        }
        let pre = Self::linker_for(set, &component)?
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
        // The newest world the component's exports fit; 0.1 components keep working.
        let pre = match bindings_v2::TransformPre::new(pre.clone()) {
            Ok(p) => Pre::V2(p),
            Err(v2) => match bindings::TransformPre::new(pre) {
                Ok(p) => Pre::V1(p),
                Err(v1) => {
                    return Err(RuntimeError::WrongWorld(format!(
                        "as sluice:transform@0.2.2: {v2:#}; as sluice:transform@0.1.0: {v1:#}"
                    )));
                }
            },
        };
        if stateful && matches!(pre, Pre::V1(_)) {
            return Err(RuntimeError::WrongWorld(
                "it imports sluice:transform/state but exports the 0.1 world (no on-timers)".into(),
            ));
        }
        Ok((pre, stateful))
    }

    /// Loads a cached artifact. The cache directory is ours alone and each file is named by
    /// the digest of its source and the engine's compatibility hash; a file that fails to
    /// load is removed and recompiled.
    fn load_cached(engine: &Engine, path: &Path) -> Option<Component> {
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `Component::serialize` of an engine with the same
        // compatibility hash (it is in the name) into a directory only this server writes;
        // wasmtime still checks its header and version before using it.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping unusable cached plugin");
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    /// The engine's linker, plus — for a component that imports `wasi:sockets` (every
    /// Python component does: its standard library links them) — those imports as
    /// functions that trap with a clear reason. The network stays unreachable: a plugin
    /// that never uses it runs; one that does fails the record that made it try.
    fn linker_for<'a>(
        set: &'a EngineSet,
        component: &Component,
    ) -> Result<std::borrow::Cow<'a, Linker<HostState>>, RuntimeError> {
        use wasmtime::component::types::ComponentItem;
        let ty = component.component_type();
        let sockets: Vec<_> = ty
            .imports(&set.engine)
            .filter(|(name, _)| name.starts_with("wasi:sockets/"))
            .collect();
        if sockets.is_empty() {
            return Ok(std::borrow::Cow::Borrowed(&set.linker));
        }
        let mut linker = set.linker.clone();
        let fail = |e: wasmtime::Error| RuntimeError::Instantiate(format!("{e:#}"));
        for (name, item) in sockets {
            let ComponentItem::ComponentInstance(instance) = item.ty else {
                continue;
            };
            let mut inst = linker.instance(name).map_err(fail)?;
            for (export, item) in instance.exports(&set.engine) {
                match item.ty {
                    ComponentItem::ComponentFunc(_) => {
                        let what = format!("{name}#{export}");
                        inst.func_new(export, move |_, _, _, _| {
                            Err(wasmtime::Error::new(sandbox::Stop::Network {
                                import: what.clone(),
                            }))
                        })
                        .map_err(fail)?;
                    }
                    ComponentItem::Resource(_) => {
                        use wasmtime::component::ResourceType;
                        // The WASI io resources the sockets interfaces `use` are the ones
                        // linked already; the sockets' own exist only as types.
                        let ty = match export {
                            "pollable" => ResourceType::host::<wasmtime_wasi::p2::DynPollable>(),
                            "input-stream" => {
                                ResourceType::host::<wasmtime_wasi::p2::DynInputStream>()
                            }
                            "output-stream" => {
                                ResourceType::host::<wasmtime_wasi::p2::DynOutputStream>()
                            }
                            _ => ResourceType::host::<NoSocket>(),
                        };
                        inst.resource(export, ty, |_, _| Ok(())).map_err(fail)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(std::borrow::Cow::Owned(linker))
    }

    /// Refuses imports outside [`ALLOWED_IMPORTS`]; whether the component imports state.
    fn check_imports(engine: &Engine, c: &Component) -> Result<bool, RuntimeError> {
        let ty = c.component_type();
        let mut stateful = false;
        for (name, _) in ty.imports(engine) {
            if !ALLOWED_IMPORTS.iter().any(|p| name.starts_with(p)) {
                return Err(RuntimeError::ForbiddenImport(name.to_string()));
            }
            stateful |= name.starts_with("sluice:transform/state@");
        }
        Ok(stateful)
    }

    /// A ready executor for one partition: instantiated and `init`-ed, so a failing init
    /// shows here and not on the first batch.
    pub fn executor(
        self: &Arc<Self>,
        compiled: Arc<Compiled>,
        cfg: Arc<InstanceConfig>,
        partition: u32,
    ) -> Result<Executor, RuntimeError> {
        Executor::new(self.clone(), compiled, cfg, partition, Arc::default())
    }

    /// Like [`Runtime::executor`], with instantiation and `init` (and later calls, until
    /// [`Executor::set_interrupt`]) obeying `interrupt`.
    pub fn executor_with_interrupt(
        self: &Arc<Self>,
        compiled: Arc<Compiled>,
        cfg: Arc<InstanceConfig>,
        partition: u32,
        interrupt: Arc<Interrupt>,
    ) -> Result<Executor, RuntimeError> {
        Executor::new(self.clone(), compiled, cfg, partition, interrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_components_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(dir.path()).unwrap();
        let e = rt.compile(b"hello").unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
        let e = rt.compile(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(e.to_string().contains("core WebAssembly module"), "{e}");
        let e = rt.compile(b"\0asm\x0d\0\x01\0garbage").unwrap_err();
        assert!(matches!(e, RuntimeError::Invalid(_)), "{e}");
        let big = vec![0u8; rt.max_plugin_bytes() + 1];
        assert!(matches!(
            rt.compile(&big),
            Err(RuntimeError::TooLarge { .. })
        ));
    }
}
