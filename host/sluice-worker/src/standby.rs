//! Standby replicas of a stateful deployment (`"standby_replicas": n`): a worker follows
//! the changelog of partitions another worker holds — the `n` live workers after the
//! holder, in id order, each keep a copy — applying committed records into a state store
//! as a restore would, between its own transactions. When such a partition is assigned
//! here, its restore goes on from where the copy stands instead of from the changelog's
//! beginning (Kafka Streams' standby tasks).
//!
//! The consumer group's assignor, not the workers, decides who takes a dead worker's
//! partitions over: with more than two workers the new holder may not be a standby, and
//! then restores in full.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sluice_pipeline::Transform;
use sluice_pipeline::detached::Warm;

use crate::control::{StandbyReport, client_config};
use crate::engine::{EngineError, EngineSettings};

/// The copies one session keeps.
pub(crate) struct Standbys {
    changelog: String,
    warm: BTreeMap<i32, Warm>,
    reader: Option<BaseConsumer>,
}

impl Standbys {
    pub fn new(changelog: String) -> Standbys {
        Standbys {
            changelog,
            warm: BTreeMap::new(),
            reader: None,
        }
    }

    /// Follows the partitions `want` (dropping copies of others) and applies what their
    /// changelog has for at most `budget`.
    pub fn follow(
        &mut self,
        settings: &EngineSettings,
        t: &Transform,
        want: &[i32],
        budget: Duration,
    ) -> Result<(), EngineError> {
        let want: BTreeSet<i32> = want.iter().copied().collect();
        if !self.warm.keys().copied().eq(want.iter().copied()) {
            self.warm.retain(|p, _| want.contains(p));
            let partitions = want.iter().max().map_or(1, |p| *p as u32 + 1);
            for p in &want {
                if !self.warm.contains_key(p) {
                    let w = Warm::new(t, *p as u32, partitions)
                        .map_err(|e| EngineError::Plugin(format!("standby state: {e}")))?;
                    self.warm.insert(*p, w);
                }
            }
            if self.warm.is_empty() {
                self.reader = None;
                return Ok(());
            }
            let reader = match self.reader.take() {
                Some(r) => r,
                None => client_config(&settings.bootstrap_servers, &settings.id)
                    .set("group.id", format!("{}.standby", settings.group))
                    .set("enable.auto.commit", "false")
                    .set("isolation.level", "read_committed")
                    .create()?,
            };
            let mut tpl = TopicPartitionList::new();
            for (p, w) in &self.warm {
                let from = if w.next >= 0 {
                    Offset::Offset(w.next)
                } else {
                    Offset::Beginning
                };
                tpl.add_partition_offset(&self.changelog, *p, from)?;
            }
            reader.assign(&tpl)?;
            self.reader = Some(reader);
        }
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let deadline = Instant::now() + budget;
        while Instant::now() < deadline {
            match reader.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => {
                    if let (Some(k), Some(w)) = (m.key(), self.warm.get_mut(&m.partition())) {
                        w.apply(m.offset(), k, m.payload())
                            .map_err(|e| EngineError::Plugin(format!("standby state: {e}")))?;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    // A copy that cannot follow now is only colder: the session goes on.
                    tracing::debug!(changelog = %self.changelog, error = %e, "standby read");
                    break;
                }
            }
        }
        Ok(())
    }

    /// The copy of partition `p`, to take over from.
    pub fn take(&mut self, p: i32) -> Option<Warm> {
        self.warm.remove(&p)
    }

    pub fn reports(&self) -> Vec<StandbyReport> {
        self.warm
            .iter()
            .map(|(p, w)| StandbyReport {
                partition: *p,
                changelog_offset: w.next.max(0),
                keys: w.keys() as u64,
                replayed: w.replayed(),
            })
            .collect()
    }
}
