//! The native stand-in for the host (the stub ABI): natively — under `cargo test` — the
//! host imports (`host`) and the state interface (`state`) are answered from a per-thread
//! environment that the test harness (`testing`) fills and reads.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::Level;

/// What the host functions see during a native run.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub config: HashMap<String, String>,
    pub tables: HashMap<String, HashMap<Vec<u8>, Vec<u8>>>,
    pub outputs: Vec<String>,
    pub logs: Vec<(Level, String)>,
    /// Keyed state (of the one partition a test runs).
    pub state: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Timers set and not fired: (at, key).
    pub timers: BTreeSet<(i64, Vec<u8>)>,
}

thread_local! {
    static ENV: RefCell<Env> = RefCell::new(Env::default());
}

/// Runs `f` on this thread's environment.
pub(crate) fn with_env<R>(f: impl FnOnce(&mut Env) -> R) -> R {
    ENV.with(|e| f(&mut e.borrow_mut()))
}
