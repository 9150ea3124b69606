//! What every layer of Sluice shares: file-system helpers (atomic small files, directory
//! syncs, the data directory's lock) and the process-wide latency histograms.

pub mod fs;
pub mod sched;
pub mod telemetry;
