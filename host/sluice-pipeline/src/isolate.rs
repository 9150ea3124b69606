//! Where a failing plugin's calls run: one long-lived thread per partition at idle priority
//! (background priority once idle priority got no CPU), so a runaway gets only CPU nobody
//! else wants, and the task keeps watching it. At idle priority, while it runs, it yields
//! its CPU every 250 µs to any thread waiting for it (`sluice_common::sched::yield_often`):
//! the kernel let a thread waking onto its CPU wait up to a tick (4 ms) behind it.
//!
//! The thread lives as long as the partition's task (a thread per run, as before, paid
//! for what wasmtime sets up once per thread — its signal stack, and instance slots
//! sharded per thread, so each new thread instantiated into a cold slot: memory-map
//! changes, at idle priority, that a long-lived thread makes once).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use sluice_runtime::{BatchInput, BatchOutput, Executor, Interrupt};

/// How long a run isolating a failing plugin is watched at a time: one that spent more than
/// [`STARVED_WAITING`] of such a window runnable but waiting for a CPU is starved.
const STARVED_WINDOW: Duration = Duration::from_secs(2);
const STARVED_WAITING: f64 = 0.5;

/// A partition's isolating thread, started at the first run that needs it.
#[derive(Default)]
pub(crate) struct Isolator {
    /// The isolation got no CPU at idle priority (the machine has none idle): it runs at
    /// background priority until the plugin stops failing.
    pub starved: AtomicBool,
    thread: Mutex<Option<IsolatingThread>>,
}

impl std::fmt::Debug for Isolator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isolator")
            .field("starved", &self.starved)
            .finish_non_exhaustive()
    }
}

/// One run handed to the isolating thread: the executor and its input, borrowed by the
/// caller of [`Isolator::run`] for as long as the run lasts.
struct Job {
    executor: *mut Executor,
    batch: *const BatchInput<'static>,
}

// SAFETY: `Executor` and `BatchInput` may be used from another thread (a scoped thread
// did so before); the pointers are only dereferenced while `Isolator::run`, which holds
// the borrows they come from, waits for the run to end.
#[allow(unsafe_code)]
unsafe impl Send for Job {}

struct IsolatingThread {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Result<BatchOutput, String>>,
    /// The thread's id (for `/proc/self/task/{tid}`), 0 until it says.
    tid: Arc<AtomicI32>,
    /// At background priority (else idle).
    background: bool,
    /// The yield timer of the run in progress (idle priority), stopped by the watchdog
    /// when the thread gets no CPU: a thread that yields whenever it gets one would never
    /// reach the interrupt that ends its run.
    yielding: Arc<Mutex<Option<sluice_common::sched::YieldOften>>>,
}

impl IsolatingThread {
    fn start(name: String, background: bool) -> Result<IsolatingThread, String> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (tx, done) = mpsc::channel();
        let tid = Arc::new(AtomicI32::new(0));
        let said = tid.clone();
        let yielding = Arc::new(Mutex::new(None));
        let timer = yielding.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                said.store(current_tid(), Ordering::Release);
                if background {
                    sluice_common::sched::background_priority();
                } else {
                    lowest_cpu_priority();
                }
                // Ends when the isolator (the sender) is dropped.
                while let Ok(job) = rx.recv() {
                    // At idle priority the runaway yields to whoever waits for its CPU (see
                    // `yield_often`); at background priority (no idle CPU was left) it
                    // must progress, and does not.
                    if !background {
                        *lock(&timer) = sluice_common::sched::yield_often();
                    }
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        #[allow(unsafe_code)]
                        // SAFETY: see `Job`: the caller holds both borrows until it has
                        // received this run's answer.
                        unsafe {
                            (*job.executor).run(&*job.batch)
                        }
                    }))
                    .map_err(|_| "the isolating thread panicked".to_string());
                    lock(&timer).take();
                    if tx.send(out).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(IsolatingThread {
            jobs,
            done,
            tid,
            background,
            yielding,
        })
    }
}

impl Isolator {
    /// Runs `batch` through `executor` on the isolating thread (at background priority
    /// when `starved` says idle priority got no CPU) and waits for it, watching it: a run
    /// at idle priority that waits for a CPU most of the time is interrupted, and the
    /// answer says so (`true`). `name` names the thread.
    pub fn run(
        &self,
        name: impl FnOnce() -> String,
        executor: &mut Executor,
        batch: &BatchInput<'_>,
    ) -> Result<(BatchOutput, bool), String> {
        let background = self.starved.load(Ordering::Acquire);
        let interrupt = executor.interrupt().clone();
        let mut slot = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(|t| t.background != background) {
            // A thread cannot leave idle priority by itself: a new one takes over.
            *slot = Some(IsolatingThread::start(name(), background)?);
        }
        let Some(thread) = slot.as_ref() else {
            return Err("no isolating thread".into());
        };
        let job = Job {
            executor: std::ptr::from_mut(executor),
            batch: std::ptr::from_ref(batch).cast::<BatchInput<'static>>(),
        };
        if thread.jobs.send(job).is_err() {
            *slot = None;
            return Err("the isolating thread is gone".into());
        }
        // From here until the answer arrives, `executor` and `batch` are the thread's:
        // this function does not return before it (or before the thread is gone, which
        // drops the job first).
        let (answer, fired) = if background {
            (thread.done.recv().ok(), false)
        } else {
            watch_for_starvation(&thread.done, &thread.tid, &interrupt, &thread.yielding)
        };
        match answer {
            Some(Ok(out)) => Ok((out, fired)),
            Some(Err(e)) => {
                *slot = None;
                Err(e)
            }
            None => {
                *slot = None;
                Err("the isolating thread is gone".into())
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long thread `tid` of this process has been runnable but waiting for a CPU (the
/// scheduler's `run_delay`), or none where the kernel does not say.
fn run_delay(tid: i32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let waited: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(waited))
}

/// Waits for the answer of a run on the `SCHED_IDLE` thread `tid`, watching it: when,
/// over a window, the thread spent most of its time waiting for a CPU it never got — the
/// machine has no idle CPU, and at idle priority its records would wait for their verdicts
/// without bound — raises `interrupt` and from then on keeps its yield timer stopped
/// (`yielding`: a thread that yields whenever it gets a CPU would not reach the check
/// that ends its run); the answer then says `true`. A run that burns its CPU (a runaway)
/// or sleeps (waiting for its turn in the isolation queue) is not starved: it stays where
/// it is. `None`: the thread is gone.
fn watch_for_starvation<T>(
    done: &mpsc::Receiver<T>,
    tid: &AtomicI32,
    interrupt: &Interrupt,
    yielding: &Mutex<Option<sluice_common::sched::YieldOften>>,
) -> (Option<T>, bool) {
    let mut since = Instant::now();
    let mut waited_since = None;
    let mut fired = false;
    loop {
        match done.recv_timeout(Duration::from_millis(50)) {
            Ok(answer) => return (Some(answer), fired),
            Err(mpsc::RecvTimeoutError::Disconnected) => return (None, fired),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if fired {
            lock(yielding).take();
            continue;
        }
        let t = tid.load(Ordering::Acquire);
        if t == 0 {
            continue;
        }
        let waited = run_delay(t);
        let (Some(now), Some(then)) = (waited, waited_since) else {
            (since, waited_since) = (Instant::now(), waited);
            continue;
        };
        let window = since.elapsed();
        if window < STARVED_WINDOW {
            continue;
        }
        if now.saturating_sub(then).as_secs_f64() > STARVED_WAITING * window.as_secs_f64() {
            interrupt.raise();
            lock(yielding).take();
            fired = true;
        }
        (since, waited_since) = (Instant::now(), Some(now));
    }
}

/// The calling thread's id (for `/proc/self/task/{tid}`).
#[allow(unsafe_code)]
fn current_tid() -> i32 {
    // SAFETY: a plain syscall without arguments.
    unsafe { libc::gettid() }
}

/// Moves the calling thread to `SCHED_IDLE`: it runs only on CPU nobody else wants, and
/// any other thread that wakes up preempts it at once. (A low nice value is not enough:
/// the scheduler lets the running thread finish a slice of ~3 ms before a waking one
/// preempts it, which adds up over the hops of a record through the server.) An
/// unprivileged thread cannot leave `SCHED_IDLE`, so the caller is a thread of its own.
#[allow(unsafe_code)]
fn lowest_cpu_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` only reads `param`, which lives across the call; pid 0
    // is the calling thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not move the isolating thread to SCHED_IDLE");
    }
}
