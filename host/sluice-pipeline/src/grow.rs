//! Partitions added to a deployment's input while it runs (Kafka's CreatePartitions): their
//! tasks start without a redeploy, on the version the deployment runs, with the state
//! changelog grown to match (also at a restart, for partitions added while it was down).

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::{PipelineError, Pipelines, Transform, state};

/// How often deployments' inputs are checked for new partitions.
const EVERY: Duration = Duration::from_millis(500);

impl Pipelines {
    /// Checks every deployment's input for partitions without a task and starts them,
    /// until the pipelines are dropped or shut down.
    pub(crate) fn watch_partitions(this: &Arc<Pipelines>) {
        let weak: Weak<Pipelines> = Arc::downgrade(this);
        let spawned = std::thread::Builder::new()
            .name("sluice-new-partitions".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EVERY);
                    let Some(p) = weak.upgrade() else { return };
                    if p.building.is_raised() {
                        return; // shutting down
                    }
                    p.pick_up_new_partitions();
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no thread to watch for new input partitions");
        }
    }

    /// Starts tasks for the input partitions of each deployment that have none.
    pub fn pick_up_new_partitions(&self) {
        for t in self.list() {
            if let Err(e) = self.grow(&t) {
                t.fail(format!("new input partitions not started: {e}"));
            }
        }
    }

    fn grow(&self, t: &Arc<Transform>) -> Result<(), PipelineError> {
        let new = |t: &Transform| -> Option<Vec<u32>> {
            let spec = t.spec();
            let input = self.log.topic(&spec.input).ok()?;
            let running: HashSet<u32> = t.task_states().iter().map(|s| s.partition).collect();
            // None running: the deployment is being (re)started; its start covers them.
            if running.is_empty() {
                return None;
            }
            let new: Vec<u32> = input
                .partitions
                .iter()
                .map(|p| p.id)
                .filter(|p| !running.contains(p))
                .collect();
            (!new.is_empty()).then_some(new)
        };
        if new(t).is_none() {
            return Ok(());
        }
        // A deploy, swap or delete of this name in progress: next time.
        let lock = self.name_lock(&t.name);
        let Ok(_held) = lock.try_lock() else {
            return Ok(());
        };
        // Still deployed, and still short of partitions, under the lock.
        let current = self
            .transforms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&t.name)
            .cloned();
        let Some(t) = current.filter(|c| Arc::ptr_eq(c, t)) else {
            return Ok(());
        };
        let Some(partitions) = new(&t) else {
            return Ok(());
        };
        let spec = t.spec();
        let version = t.active_version();
        let compiled = self.plugins.compiled(&spec.plugin, version)?;
        if compiled.stateful() {
            // The changelog is co-partitioned with the input.
            let total = self
                .log
                .topic(&spec.input)
                .map(|i| i.partitions.len() as u32)
                .map_err(|_| PipelineError::UnknownInput(spec.input.clone()))?;
            let name = state::topic_name(&t.name);
            if let Ok(st) = self.log.topic(&name)
                && (st.partitions.len() as u32) < total
            {
                self.log.add_partitions(&name, total)?;
            }
        }
        let cfg = self.instance_config(&t, &spec, version);
        let executors = self
            .build_executors(&compiled, &cfg, &partitions)
            .map_err(|e| PipelineError::Runtime(e.to_string()))?;
        self.spawn_tasks(&t, &spec, version, executors)?;
        tracing::info!(transform = %t.name, ?partitions, version, "tasks started for new input partitions");
        Ok(())
    }
}
