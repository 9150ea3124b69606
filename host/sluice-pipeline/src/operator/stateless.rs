//! The stateless operator: each stored batch through the plugin as it is, its verdicts
//! collected. Nothing to restore, commit or fire.

use std::sync::Arc;

use sluice_log::Partition;
use sluice_runtime::{BatchInput, Executor};

use super::{Cx, Operator, ProcessError};
use crate::Transform;
use crate::emit::{Answered, InputBatch};
use crate::shared::{StateShared, TaskShared};
use crate::state::Commit;

/// A plugin without state.
pub(crate) struct Stateless;

impl Operator for Stateless {
    fn restore(&mut self, _: &Transform, _: &TaskShared) -> Option<u64> {
        None
    }

    fn attach(&self, _: &mut Executor) {}

    fn changelog(&self) -> Option<(Arc<Partition>, Arc<StateShared>)> {
        None
    }

    fn begin_read(&mut self, _: &Transform) {}

    fn process_batch(
        &mut self,
        cx: &mut Cx<'_>,
        input: &InputBatch,
        _after: u64,
    ) -> Result<Option<u64>, ProcessError> {
        let (seen_by_plugin, ids) = cx.plugin_input(input);
        let batch = BatchInput::records(
            cx.input,
            cx.partition,
            input.base_offset,
            input.base_timestamp,
            seen_by_plugin.section.clone(),
            input.offsets.len() as u32,
        );
        let result = cx.run(&batch)?;
        let done = (result.done as usize).min(input.offsets.len());
        let broken = cx.emit(&Answered::Records(input), &result, done, &ids);
        cx.dead_letters(input, &result, done);
        cx.contract_breaches(input, broken);
        // The run ended early (a failure to isolate, or its time budget): the rest of
        // this read is the next's.
        Ok((done < input.offsets.len()).then(|| input.offsets[done]))
    }

    fn end_read(&mut self, _: Option<u64>) -> Option<Commit> {
        None
    }

    fn idle(&mut self, _: &Transform, _: u64) -> Option<Commit> {
        None
    }

    fn due(&self) -> bool {
        false
    }

    fn fire_due(&mut self, _: &mut Cx<'_>, _: u64) -> Result<Option<Commit>, ProcessError> {
        Ok(None)
    }

    fn checkpoint(&self, _: &Transform, _: u32, _: u64, _: bool) {}
}
