//! Thread priorities.

/// Makes the calling thread background work: `SCHED_BATCH` (it never preempts a thread
/// that wakes up, so latency-sensitive threads — appends, fsyncs, request handlers — go
/// first) at nice 10, yet it is never starved as `SCHED_IDLE` would be under sustained
/// load. For work that must progress but must not add latency: tier uploads.
#[allow(unsafe_code)]
pub fn background_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` only reads `param`, which lives across the call; pid 0
    // is the calling thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not move a background thread to SCHED_BATCH");
    }
    // SAFETY: a plain syscall on the calling thread (who = 0), no pointers.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower a background thread's priority");
    }
}
