//! The pipeline's side of deployments over two inputs: the merged topic they read
//! (`<name>.inputs`, created with the inputs' partition count and owned by the
//! deployment) and the copying threads that fill it (`merge`), started with the
//! deployment and stopped before its tasks.

use std::sync::Arc;

use sluice_deploy::{Start, TransformSpec, names};
use sluice_log::{LogError, Topic, TopicConfig};

use crate::merge::Merger;
use crate::{PipelineError, Pipelines, Transform};

/// Who owns a deployment's merged topic.
fn owner(name: &str) -> String {
    format!("transform {name} (its merged inputs)")
}

impl Pipelines {
    /// The topic a deployment's tasks read: its input, or — over two inputs — the topic
    /// they are merged into, created if missing (a new deployment, `fresh`, refuses one
    /// that is already there: it is not its data).
    pub(crate) fn task_input(
        &self,
        name: &str,
        spec: &TransformSpec,
        fresh: bool,
    ) -> Result<Arc<Topic>, PipelineError> {
        let [a, _] = spec.inputs.as_slice() else {
            return self
                .log
                .topic(&spec.input)
                .map_err(|_| PipelineError::UnknownInput(spec.input.clone()));
        };
        let partitions = self
            .log
            .topic(a)
            .map_err(|_| PipelineError::UnknownInput(a.clone()))?
            .partitions
            .len() as u32;
        let merged = names::merged_inputs_topic(name);
        let topic = match self.log.topic(&merged) {
            Ok(_) if fresh => {
                return Err(PipelineError::Invalid(format!(
                    "topic {merged} exists, but a deployment named {name} over two inputs merges them there; delete the topic or choose another name"
                )));
            }
            Ok(t) => t,
            Err(_) => self.log.create_topic(
                &merged,
                TopicConfig {
                    partitions,
                    ..TopicConfig::default()
                },
            )?,
        };
        self.log.set_owner(&merged, Some(&owner(name)));
        Ok(topic)
    }

    /// After a new deployment failed to start: its merged topic, if this attempt made it.
    pub(crate) fn forget_merged(&self, name: &str) {
        let merged = names::merged_inputs_topic(name);
        if self.log.owner(&merged) == Some(owner(name)) {
            self.log.set_owner(&merged, None);
            let _ = self.log.delete_topic(&merged);
        }
    }

    /// Starts copying a two-input deployment's inputs into its merged topic.
    pub(crate) fn start_merge(
        &self,
        t: &Transform,
        spec: &TransformSpec,
        merged: &Topic,
    ) -> Result<(), PipelineError> {
        let [a, b] = spec.inputs.as_slice() else {
            return Ok(());
        };
        let topic = |n: &String| {
            self.log
                .topic(n)
                .map_err(|_| PipelineError::UnknownInput(n.clone()))
        };
        let merger = Merger::start(
            &t.name,
            &t.dir,
            [topic(a)?, topic(b)?],
            merged,
            spec.start == Start::Latest,
        )
        .map_err(|e| PipelineError::Runtime(format!("cannot start merging the inputs: {e}")))?;
        *t.merger.lock().unwrap_or_else(|p| p.into_inner()) = Some(merger);
        Ok(())
    }

    /// Stops the copying (if the deployment has two inputs).
    pub(crate) fn stop_merge(t: &Transform) {
        let merger = t.merger.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(m) = merger {
            m.stop();
        }
    }

    /// Deletes a deleted two-input deployment's merged topic.
    pub(crate) fn remove_merged(&self, t: &Transform) -> Result<(), PipelineError> {
        if t.spec().inputs.is_empty() {
            return Ok(());
        }
        let topic = names::merged_inputs_topic(&t.name);
        self.log.set_owner(&topic, None);
        match self.log.delete_topic(&topic) {
            Ok(()) | Err(LogError::UnknownTopic(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
