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

/// While it lives, the calling thread gives up its CPU every [`YIELD_EVERY`] to any
/// thread waiting for it: a POSIX timer signals the thread, and the handler calls
/// `sched_yield`. For threads that burn CPU at low priority (a failing plugin's isolation,
/// shadows). Measured on this project's machines (a VM, `HZ=250`): a thread waking onto a
/// CPU where a `SCHED_IDLE` loop runs waited up to a whole tick (4 ms) — the kernel did not
/// preempt the loop at the wakeup — so a well-behaved transform's p99 was 5–7× its p99
/// alone next to runaways, and 6× next to a busy loop in another process; with this,
/// 1.1× (`BENCHMARKS.md`, "Hostile plugins"). `None` where a timer cannot be made.
#[must_use]
pub fn yield_often() -> Option<YieldOften> {
    YieldOften::start()
}

/// How often a [`yield_often`] thread yields.
pub const YIELD_EVERY: std::time::Duration = std::time::Duration::from_micros(250);

/// The timer of a [`yield_often`] thread; dropping it stops the yields.
#[derive(Debug)]
pub struct YieldOften {
    timer: libc::timer_t,
}

/// The signal the yield timers send (a real-time signal clear of glibc's own).
fn yield_signal() -> libc::c_int {
    libc::SIGRTMIN() + 7
}

extern "C" fn yield_now(_: libc::c_int) {
    // SAFETY: `sched_yield` is async-signal-safe and touches no memory (nor errno: it
    // cannot fail).
    #[allow(unsafe_code)]
    unsafe {
        libc::sched_yield();
    }
}

impl YieldOften {
    #[allow(unsafe_code)]
    fn start() -> Option<YieldOften> {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            // SAFETY: a zeroed `sigaction` is valid; the handler only yields. SA_RESTART:
            // interrupted system calls go on; SA_ONSTACK: on the thread's signal stack
            // where it has one (wasmtime's), so a deep wasm stack is not deepened.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = yield_now as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(yield_signal(), &sa, std::ptr::null_mut()) != 0 {
                    tracing::debug!(error = %std::io::Error::last_os_error(), "could not install the yield handler");
                }
            }
        });
        // SAFETY: `sev` and `timer` outlive the calls that read and write them; the timer
        // signals this thread only (SIGEV_THREAD_ID) and is deleted on drop.
        unsafe {
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = yield_signal();
            sev.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::ptr::null_mut();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "could not create a yield timer");
                return None;
            }
            let every = libc::timespec {
                tv_sec: 0,
                tv_nsec: YIELD_EVERY.as_nanos() as libc::c_long,
            };
            let spec = libc::itimerspec {
                it_interval: every,
                it_value: every,
            };
            if libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) != 0 {
                libc::timer_delete(timer);
                return None;
            }
            Some(YieldOften { timer })
        }
    }
}

// SAFETY: a POSIX timer id is a handle of the process, not of the thread that made it:
// any thread may delete it (stopping the yields of the thread it signals).
#[allow(unsafe_code)]
unsafe impl Send for YieldOften {}

impl Drop for YieldOften {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the timer was created by `start` and is deleted once.
        unsafe {
            libc::timer_delete(self.timer);
        }
    }
}
