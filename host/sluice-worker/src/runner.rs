//! Runs one deployment on this worker: the stateless session (`engine`) or the stateful
//! one (`stateful`), started again from what is committed whenever one ends on an error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::engine::{self, EngineSettings, Job, lock};
use crate::stateful;

/// Runs the deployment until `stop` is set; a failed transaction is aborted and the work
/// starts again from the committed offsets (new consumer and producer; a stateful
/// deployment's state restored from its changelog).
pub fn run(settings: &EngineSettings, job: &Job<'_>, stop: &AtomicBool) {
    // Whether the plugin keeps state is known once a version is there to run.
    let stateful = loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        if let Some(t) = lock(&job.shared.target).as_ref() {
            break t.compiled.stateful();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    while !stop.load(Ordering::Acquire) {
        let ended = if stateful {
            stateful::session(settings, job, stop)
        } else {
            engine::session(settings, job, stop)
        };
        lock(&job.shared.states).clear();
        match ended {
            Ok(()) => return,
            Err(e) => {
                job.shared.restarts.fetch_add(1, Ordering::Relaxed);
                job.shared.set_error(e.to_string());
                tracing::warn!(deployment = %job.name, error = %e, "worker session ended; starting again from the committed offsets");
                let until = Instant::now() + Duration::from_millis(500);
                while Instant::now() < until && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}
