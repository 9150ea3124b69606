//! Why the host cut a plugin call short: one type for every layer of the runtime, so a
//! trap's cause is read from its type and never guessed from message text.

/// Why the host cut a call short: the error its trap carries, so the cause is read from
/// the type and never guessed from message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    #[error("timed out: limit {limit_ms} ms per call{}", if *.blocked { " (blocked in a WASI call)" } else { "" })]
    Deadline { limit_ms: u64, blocked: bool },
    #[error("interrupted by the host")]
    Interrupted,
    #[error("memory limit of {limit} bytes exceeded (the plugin asked for {desired} bytes)")]
    Memory { limit: usize, desired: usize },
    #[error("table limit of {limit} elements exceeded (the plugin asked for {desired})")]
    Table { limit: usize, desired: usize },
    #[error("state limit of {limit} bytes exceeded (limits.state_bytes of the deployment)")]
    StateLimit { limit: u64 },
    #[error(
        "host work limit of {limit} units exceeded (text primitives: one unit per input byte; \
         limits.fuel_per_record per record)"
    )]
    HostWork { limit: u64 },
    /// The state store on disk failed (the call is retried; nothing is decided).
    #[error("{message}")]
    StateStore { message: String },
    #[error("the plugin used the network ({import}), which plugins may not")]
    Network { import: String },
}
