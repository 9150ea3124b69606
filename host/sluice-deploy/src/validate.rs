//! The one validation of a deployment, against a small catalog of what exists (topics,
//! plugin versions, other deployments) and what the runner can do (its capabilities).
//! `sluice serve` and `sluice worker` both call [`prepare`] before they deploy and
//! [`check_plugin`] once the version is compiled, so they accept and refuse the same specs
//! with the same words.

use std::collections::{HashMap, HashSet};

use crate::limits::MAX_STATE_BYTES;
use crate::names::{topic_name_error, valid_name};
use crate::spec::{
    MAX_STANDBY_REPLICAS, MAX_TIME_SETTING_MS, StateMode, StateStoreKind, TransformSpec, VersionSel,
};

/// Why a deployment is refused. Messages are for the operator who sent the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    #[error("invalid transform name {0:?}: use 1-100 of [a-zA-Z0-9._-]")]
    BadName(String),
    #[error("{0}")]
    Invalid(String),
    #[error("input topic {0} does not exist")]
    UnknownInput(String),
    #[error("output topic {0} does not exist")]
    UnknownOutput(String),
    #[error("unknown plugin {0}")]
    UnknownPlugin(String),
    #[error("plugin {name} has no version {version}")]
    UnknownVersion { name: String, version: u32 },
    /// The spec is valid, but this runner cannot run it (see [`Capabilities`]).
    #[error("{0}")]
    Unsupported(String),
}

/// What exists where the deployment would run.
pub trait Catalog {
    /// The partition count of `topic`, or `None` if there is no such topic.
    fn partitions(&self, topic: &str) -> Option<u32>;
    /// The versions of `plugin`, or `None` if there is no such plugin.
    fn plugin_versions(&self, plugin: &str) -> Option<Vec<u32>>;
    /// Every deployment but `except` (with those being created), for the cycle check.
    fn deployments(&self, except: &str) -> Vec<(String, TransformSpec)>;
}

/// What a runner can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Stateful plugins (keyed state, event time, timers).
    pub stateful: bool,
    /// Deployment secrets (kept where only the runner reads them).
    pub secrets: bool,
    /// Schema-aware processing (`decode`, `output_schemas`): the runner has a schema
    /// registry.
    pub schemas: bool,
    /// Deployments over two inputs (`inputs`).
    pub two_inputs: bool,
    /// Who the runner is, for the messages of what it cannot do.
    pub runner: &'static str,
}

impl Capabilities {
    /// `sluice serve`: everything.
    pub const SERVE: Capabilities = Capabilities {
        stateful: true,
        secrets: true,
        schemas: true,
        two_inputs: true,
        runner: "sluice serve",
    };
}

/// A spec ready to deploy: validated, secrets settled, fields that do not survive a
/// re-PUT reset, its version resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub spec: TransformSpec,
    /// The plugin version to run.
    pub version: u32,
    /// Partitions of the input topic.
    pub input_partitions: u32,
    /// Whether a deployment of this name exists (this is an update).
    pub update: bool,
    /// `"state": "reset"` was asked: the new version starts with empty state.
    pub reset_state: bool,
}

/// Checks `spec` for a deployment named `name` (an update of `old` if given) against what
/// exists and what the runner can do, and resolves it.
pub fn prepare(
    name: &str,
    mut spec: TransformSpec,
    old: Option<&TransformSpec>,
    catalog: &dyn Catalog,
    caps: Capabilities,
) -> Result<Prepared, DeployError> {
    if !valid_name(name) {
        return Err(DeployError::BadName(name.to_string()));
    }
    let input_partitions = match spec.inputs.is_empty() {
        true => None,
        false => Some(settle_inputs(name, &mut spec, catalog, caps)?),
    };
    let input_partitions = check_spec(&spec, input_partitions, catalog, caps)?;
    spec.settle_secrets(old).map_err(DeployError::Invalid)?;
    let reset_state = spec.state == Some(StateMode::Reset);
    match old {
        Some(old) => {
            check_update(old, &spec)?;
            // `start` applies to the first deployment only: a re-PUT never rewinds.
            spec.start = old.start;
        }
        None => check_cycles(name, &spec, &catalog.deployments(name))?,
    }
    spec.state = None;
    let version = resolve_version(&spec, catalog)?;
    Ok(Prepared {
        spec,
        version,
        input_partitions,
        update: old.is_some(),
        reset_state,
    })
}

/// Checks the resolved plugin against the runner: `stateful` says whether the compiled
/// version keeps state.
pub fn check_plugin(
    prepared: &Prepared,
    stateful: bool,
    caps: Capabilities,
) -> Result<(), DeployError> {
    if stateful && !caps.stateful {
        return Err(DeployError::Unsupported(format!(
            "plugin {} version {} keeps state: stateful plugins do not run in {}",
            prepared.spec.plugin, prepared.version, caps.runner
        )));
    }
    Ok(())
}

/// Checks the two inputs of a deployment over `inputs` (they exist, are co-partitioned
/// and the runner can merge them) and names what it reads: `input` becomes the merged
/// topic, and the dead letters go to `<name>.dlq` unless named. Returns the partitions.
fn settle_inputs(
    name: &str,
    spec: &mut TransformSpec,
    catalog: &dyn Catalog,
    caps: Capabilities,
) -> Result<u32, DeployError> {
    let invalid = |m: String| Err(DeployError::Invalid(m));
    if !caps.two_inputs {
        return Err(DeployError::Unsupported(format!(
            "deployments over two inputs do not run in {} yet; run them in sluice serve",
            caps.runner
        )));
    }
    let merged = crate::names::merged_inputs_topic(name);
    if !spec.input.is_empty() && spec.input != merged {
        return invalid("give either input or inputs, not both".into());
    }
    let [a, b] = spec.inputs.as_slice() else {
        return invalid(format!(
            "inputs takes two topics, not {}",
            spec.inputs.len()
        ));
    };
    if a == b {
        return invalid(format!("inputs names {a} twice"));
    }
    let pa = catalog
        .partitions(a)
        .ok_or_else(|| DeployError::UnknownInput(a.clone()))?;
    let pb = catalog
        .partitions(b)
        .ok_or_else(|| DeployError::UnknownInput(b.clone()))?;
    if pa != pb {
        return invalid(format!(
            "inputs must be co-partitioned (the same keys in the same partitions): {a} has {pa} partitions, {b} {pb}; repartition one with a transform that re-keys into a topic of {pa}"
        ));
    }
    spec.input = merged;
    if spec.dead_letter.is_none() {
        spec.dead_letter = Some(format!("{name}.dlq"));
    }
    Ok(pa)
}

/// The checks of a spec alone and against the catalog; returns the input's partitions
/// (`merged`: those of a two-input deployment's inputs, already checked).
fn check_spec(
    spec: &TransformSpec,
    merged: Option<u32>,
    catalog: &dyn Catalog,
    caps: Capabilities,
) -> Result<u32, DeployError> {
    let invalid = |m: String| Err(DeployError::Invalid(m));
    if spec.input.is_empty() {
        return invalid("input (a topic) or inputs (two topics) is required".into());
    }
    let input_partitions = match merged {
        Some(p) => p,
        None => catalog
            .partitions(&spec.input)
            .ok_or_else(|| DeployError::UnknownInput(spec.input.clone()))?,
    };
    let inputs = spec.input_topics();
    if spec.outputs.is_empty() {
        return invalid("at least one output topic is required".into());
    }
    let mut seen = HashSet::new();
    for o in &spec.outputs {
        if catalog.partitions(o).is_none() {
            return Err(DeployError::UnknownOutput(o.clone()));
        }
        if inputs.contains(&o.as_str()) || *o == spec.input {
            return invalid(format!("output {o} is the input topic"));
        }
        if !seen.insert(o) {
            return invalid(format!("output {o} is named twice"));
        }
    }
    let dlq = spec.dead_letter_topic();
    if let Some(reason) = topic_name_error(&dlq) {
        return invalid(format!(
            "dead_letter {dlq:?} is not a valid topic name: {reason}"
        ));
    }
    if dlq == spec.input || inputs.contains(&dlq.as_str()) {
        return invalid(format!(
            "dead_letter {dlq} is the input topic: rejected records would be processed again"
        ));
    }
    if spec.outputs.contains(&dlq) {
        return invalid(format!(
            "dead_letter {dlq} is also an output: dead letters and outputs must be apart"
        ));
    }
    for table in &spec.tables {
        if catalog.partitions(table).is_none() {
            return invalid(format!("tables: {table:?} is not a topic"));
        }
    }
    spec.limits.validate().map_err(DeployError::Invalid)?;
    if spec.standby_replicas > MAX_STANDBY_REPLICAS {
        return invalid(format!(
            "standby_replicas must be 0..={MAX_STANDBY_REPLICAS}"
        ));
    }
    if spec.state_store == StateStoreKind::Memory && spec.limits.state_bytes > MAX_STATE_BYTES {
        return invalid(format!(
            "limits.state_bytes above {MAX_STATE_BYTES} (16 GiB) needs \"state_store\": \"disk\""
        ));
    }
    if let Some(e) = &spec.event_time
        && e.field.trim().is_empty()
    {
        return invalid("event_time.field must name a JSON field".into());
    }
    if spec
        .allowed_lateness_ms
        .is_some_and(|l| l > MAX_TIME_SETTING_MS)
    {
        return invalid(format!(
            "allowed_lateness_ms must be at most {MAX_TIME_SETTING_MS} (a year)"
        ));
    }
    if spec
        .idle_timeout_ms
        .is_some_and(|l| l == 0 || l > MAX_TIME_SETTING_MS)
    {
        return invalid(format!("idle_timeout_ms must be 1..={MAX_TIME_SETTING_MS}"));
    }
    if let Some(late) = &spec.late_output {
        if catalog.partitions(late).is_none() {
            return Err(DeployError::UnknownOutput(late.clone()));
        }
        if *late == spec.input
            || inputs.contains(&late.as_str())
            || spec.outputs.contains(late)
            || *late == dlq
        {
            return invalid(format!(
                "late_output {late} must be a topic apart from the input, the outputs and the dead-letter topic"
            ));
        }
    }
    for (topic, subject) in &spec.output_schemas {
        if !spec.outputs.contains(topic) {
            return invalid(format!(
                "output_schemas: {topic} is not an output of the deployment"
            ));
        }
        if subject.trim().is_empty() {
            return invalid(format!("output_schemas: {topic} names no subject"));
        }
    }
    if catalog.plugin_versions(&spec.plugin).is_none() {
        return Err(DeployError::UnknownPlugin(spec.plugin.clone()));
    }
    if !caps.secrets && !spec.secrets.is_empty() {
        return Err(DeployError::Unsupported(format!(
            "secrets are not kept by {} without a secrets key: its deployments are stored where the cluster's clients can read them; start the workers with --secrets-key-file to seal them there, or pass them in `config` if that is acceptable",
            caps.runner
        )));
    }
    if !caps.schemas && (spec.decode.is_some() || !spec.output_schemas.is_empty()) {
        return Err(DeployError::Unsupported(format!(
            "decode and output_schemas need a schema registry, which {} does not have",
            caps.runner
        )));
    }
    if !caps.stateful && (spec.event_time.is_some() || spec.late_output.is_some()) {
        return Err(DeployError::Unsupported(format!(
            "event_time and late_output apply to stateful plugins, which do not run in {}",
            caps.runner
        )));
    }
    Ok(input_partitions)
}

/// What a re-PUT may not change.
fn check_update(old: &TransformSpec, new: &TransformSpec) -> Result<(), DeployError> {
    if old.input != new.input
        || old.inputs != new.inputs
        || old.outputs != new.outputs
        || old.dead_letter_topic() != new.dead_letter_topic()
        || old.late_output != new.late_output
    {
        return Err(DeployError::Invalid(
            "input(s), outputs, dead_letter and late_output of a deployment cannot change; delete it and deploy anew".into(),
        ));
    }
    if old.state_store != new.state_store {
        return Err(DeployError::Invalid(format!(
            "state_store of a deployment cannot change (it is {:?}); delete it and deploy anew",
            old.state_store.name()
        )));
    }
    Ok(())
}

/// The version `spec` selects among the catalog's.
pub fn resolve_version(spec: &TransformSpec, catalog: &dyn Catalog) -> Result<u32, DeployError> {
    let versions = catalog
        .plugin_versions(&spec.plugin)
        .ok_or_else(|| DeployError::UnknownPlugin(spec.plugin.clone()))?;
    match spec.version {
        VersionSel::Latest => versions
            .iter()
            .max()
            .copied()
            .ok_or_else(|| DeployError::UnknownPlugin(spec.plugin.clone())),
        VersionSel::Exact(v) if versions.contains(&v) => Ok(v),
        VersionSel::Exact(v) => Err(DeployError::UnknownVersion {
            name: spec.plugin.clone(),
            version: v,
        }),
    }
}

/// Refuses a new deployment whose outputs or dead letters would reach its input again
/// through `others`, unless it opts in (`allow_cycles`): a loop amplifies forever.
pub fn check_cycles(
    name: &str,
    spec: &TransformSpec,
    others: &[(String, TransformSpec)],
) -> Result<(), DeployError> {
    if spec.allow_cycles {
        return Ok(());
    }
    // Topic -> (transform, topics it writes).
    let mut edges: HashMap<&str, Vec<(&str, Vec<String>)>> = HashMap::new();
    let writes = |s: &TransformSpec| {
        let mut to = s.outputs.clone();
        to.push(s.dead_letter_topic());
        to.extend(s.late_output.clone());
        to
    };
    for (n, s) in others.iter().filter(|(n, _)| n != name) {
        for i in s.input_topics() {
            edges.entry(i).or_default().push((n, writes(s)));
        }
    }
    let inputs = spec.input_topics();
    for i in &inputs {
        edges.entry(i).or_default().push((name, writes(spec)));
    }
    // Depth-first from the inputs: a path back to one is a cycle; name it.
    let mut stack: Vec<(&str, Vec<String>)> = inputs.iter().map(|i| (*i, vec![])).collect();
    let mut visited: HashSet<String> = HashSet::new();
    while let Some((topic, path)) = stack.pop() {
        for (via, to) in edges.get(topic).into_iter().flatten() {
            for next in to {
                let mut p = path.clone();
                p.push(format!("{topic} -[{via}]-> {next}"));
                if inputs.contains(&next.as_str()) {
                    return Err(DeployError::Invalid(format!(
                        "deploying {name} would make a cycle: {}; set \"allow_cycles\": true if it is meant",
                        p.join(", ")
                    )));
                }
                if visited.insert(next.clone()) {
                    stack.push((next, p));
                }
            }
        }
    }
    Ok(())
}
