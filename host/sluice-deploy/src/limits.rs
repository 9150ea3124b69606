//! The resource limits of one deployment's plugin instances, and their bounds.

use serde::{Deserialize, Serialize};

/// Largest memory limit a deployment may ask for. The runtime reserves address space for
/// it (and asserts at compile time that the reservation covers it).
pub const MAX_MEMORY_BYTES: usize = 1 << 30;
/// Largest state limit of a deployment whose state is held in memory.
pub const MAX_STATE_BYTES: u64 = 16 << 30;
/// Largest state limit of a deployment whose state is on disk (`"state_store": "disk"`).
pub const MAX_DISK_STATE_BYTES: u64 = 1 << 40;
/// Bounds of `state_cache_bytes`.
pub const MIN_STATE_CACHE_BYTES: u64 = 16 << 20;
/// Largest `timeout_ms` and `init_timeout_ms`.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// Resource limits of one deployment's instances.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// wasmtime fuel per input record in fuel-metered calls: those that isolate suspect
    /// records after a failed or timed-out call (a metered call of n records gets n times
    /// this). Normal calls are bounded by `timeout_ms`.
    pub fuel_per_record: u64,
    /// Linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// Wall-clock bound on one `process` call, blocking WASI calls included.
    pub timeout_ms: u64,
    /// Wall-clock bound on instantiating an instance and its `init` call.
    pub init_timeout_ms: u64,
    /// Emit entries one input record may produce.
    pub max_outputs_per_record: u32,
    /// Output bytes one batch may return.
    pub max_output_bytes: usize,
    /// Keyed state the deployment may hold over all its partitions (values and timers,
    /// with a per-entry overhead); a write past it traps the call. Up to 16 GiB in
    /// memory, 1 TiB with `"state_store": "disk"`.
    pub state_bytes: u64,
    /// `"state_store": "disk"`: the memory the state may use over all partitions (cached
    /// values, changes not yet on disk, the disk store's block cache and memtables).
    pub state_cache_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // ~10-50 ms of CPU: far above what real transforms use per record (mask: ~60k),
            // small enough that a runaway record is cut off quickly.
            fuel_per_record: 50_000_000,
            memory_bytes: 64 << 20,
            timeout_ms: 5_000,
            init_timeout_ms: 10_000,
            max_outputs_per_record: 100,
            max_output_bytes: 64 << 20,
            state_bytes: 256 << 20,
            state_cache_bytes: 256 << 20,
        }
    }
}

impl Limits {
    /// The first limit out of its bounds, said as the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.fuel_per_record == 0 {
            return Err("limits.fuel_per_record must be positive".into());
        }
        if self.memory_bytes < (1 << 20) || self.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "limits.memory_bytes must be 1 MiB..={MAX_MEMORY_BYTES}"
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!("limits.timeout_ms must be 1..={MAX_TIMEOUT_MS}"));
        }
        if self.init_timeout_ms == 0 || self.init_timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!(
                "limits.init_timeout_ms must be 1..={MAX_TIMEOUT_MS}"
            ));
        }
        if self.max_outputs_per_record == 0 || self.max_output_bytes == 0 {
            return Err(
                "limits.max_outputs_per_record and limits.max_output_bytes must be positive".into(),
            );
        }
        if self.state_bytes < (1 << 20) || self.state_bytes > MAX_DISK_STATE_BYTES {
            return Err(format!(
                "limits.state_bytes must be 1 MiB..={MAX_DISK_STATE_BYTES}"
            ));
        }
        if self.state_cache_bytes < MIN_STATE_CACHE_BYTES
            || self.state_cache_bytes > MAX_STATE_BYTES
        {
            return Err(format!(
                "limits.state_cache_bytes must be {MIN_STATE_CACHE_BYTES}..={MAX_STATE_BYTES}"
            ));
        }
        Ok(())
    }
}
