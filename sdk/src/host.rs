//! What the host offers plugins: logging, config, outputs and lookup tables.
//!
//! In a wasm build these call the host imports; natively they read the test environment
//! that [`crate::testing`] sets up, so the same transform code runs under `cargo test`.

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::__bindings::sluice::transform::host as h;

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => h::Level::Trace,
            Level::Debug => h::Level::Debug,
            Level::Info => h::Level::Info,
            Level::Warn => h::Level::Warn,
            Level::Error => h::Level::Error,
        };
        h::log(level, message);
    }

    pub fn config(key: &str) -> Option<String> {
        h::config(key)
    }

    pub fn outputs() -> Vec<String> {
        h::outputs()
    }

    pub fn lookup(table: &str, key: &[u8]) -> Option<Vec<u8>> {
        h::lookup(table, key)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Level;
    use crate::native::with_env;

    pub fn log(level: Level, message: &str) {
        with_env(|e| e.logs.push((level, message.to_owned())));
    }

    pub fn config(key: &str) -> Option<String> {
        with_env(|e| e.config.get(key).cloned())
    }

    pub fn outputs() -> Vec<String> {
        with_env(|e| e.outputs.clone())
    }

    pub fn lookup(table: &str, key: &[u8]) -> Option<Vec<u8>> {
        with_env(|e| e.tables.get(table).and_then(|t| t.get(key)).cloned())
    }
}

/// Writes a log line; the host tags it with plugin, version, partition and offset.
pub fn log(level: Level, message: &str) {
    imp::log(level, message)
}

/// A value from the deployment's config map.
pub fn config(key: &str) -> Option<String> {
    imp::config(key)
}

/// The deployment's output topics, in order (index 0 is the default output).
pub fn outputs() -> Vec<String> {
    imp::outputs()
}

/// The latest value for `key` in a lookup table (a compacted topic), if any.
pub fn lookup(table: &str, key: &[u8]) -> Option<Vec<u8>> {
    imp::lookup(table, key)
}
