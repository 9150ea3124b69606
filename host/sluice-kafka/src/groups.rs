//! The group coordinator: classic consumer-group membership (join, sync, heartbeat, leave,
//! session expiry, rebalances) and committed offsets, which are persisted per group so they
//! survive restarts.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub mod code {
    pub const NONE: i16 = 0;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// What a JoinGroup call gets back.
#[derive(Debug, Clone)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol: Option<String>,
    pub protocol_type: String,
    pub leader: String,
    pub member_id: String,
    /// Every member's metadata — for the leader only.
    pub members: Vec<(String, Bytes)>,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    /// The address the member's client connected from.
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as a list shows it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub id: String,
    pub protocol_type: String,
    pub protocol: String,
    pub state: &'static str,
    pub members: usize,
}

/// The partitions a consumer-protocol assignment gives its member (topic, partitions),
/// or none when the bytes are not one (another protocol type, a client's own format).
pub fn assigned_partitions(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Decodable;
    if assignment.len() < 2 {
        return None;
    }
    let mut buf = Bytes::copy_from_slice(assignment);
    let version = i16::from_be_bytes([assignment[0], assignment[1]]);
    bytes::Buf::advance(&mut buf, 2);
    // Versions past the last we know keep the fields we read (the protocol only adds).
    let a = ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)).ok()?;
    Some(
        a.assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
    )
}

/// What a SyncGroup call gets back.
#[derive(Debug, Clone)]
pub struct SyncResult {
    pub error: i16,
    pub assignment: Bytes,
}

#[derive(Debug)]
struct Member {
    client_id: String,
    client_host: String,
    /// `group.instance.id` of a static member (KIP-345).
    instance_id: Option<String>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    last_seen: Instant,
    joined: bool,
    join_tx: Option<oneshot::Sender<JoinResult>>,
    sync_tx: Option<oneshot::Sender<SyncResult>>,
    assignment: Bytes,
}

impl Member {
    /// This member's metadata for the chosen protocol.
    fn metadata_for(&self, protocol: Option<&String>) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| Some(n) == protocol)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Offsets {
    /// "topic/partition" → (offset, metadata)
    committed: BTreeMap<String, (i64, Option<String>)>,
    /// "topic/partition" → the leader epoch committed with the offset (absent: -1).
    #[serde(default)]
    epochs: BTreeMap<String, i32>,
}

/// Leader epochs committed with offsets: (topic, partition, epoch).
pub type Epochs = [(String, i32, i32)];

#[derive(Debug)]
struct Group {
    state: State,
    generation: i32,
    leader: Option<String>,
    protocol: Option<String>,
    protocol_type: String,
    members: BTreeMap<String, Member>,
    rebalance_deadline: Option<Instant>,
    /// The first join of an empty group waits this long for others (extended by each
    /// new member up to `initial_cap`), so members starting together land in one
    /// generation (Kafka's `group.initial.rebalance.delay.ms`).
    initial_until: Option<Instant>,
    initial_cap: Option<Instant>,
    /// Static members: instance id → current member id.
    instances: HashMap<String, String>,
    offsets: Offsets,
}

impl Group {
    fn new(offsets: Offsets) -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            leader: None,
            protocol: None,
            protocol_type: String::new(),
            members: BTreeMap::new(),
            rebalance_deadline: None,
            initial_until: None,
            initial_cap: None,
            instances: HashMap::new(),
            offsets,
        }
    }

    /// Whether the join phase may end now: everyone joined and the initial delay is over.
    fn join_complete_at(&self, now: Instant) -> bool {
        self.all_joined() && self.initial_until.is_none_or(|t| now >= t)
    }

    /// Forgets static instances whose member is gone.
    fn prune_instances(&mut self) {
        let members = &self.members;
        self.instances.retain(|_, m| members.contains_key(m));
    }

    /// Every member must join again; members that do not before the deadline are dropped.
    fn start_rebalance(&mut self, now: Instant) {
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(10));
        self.state = State::PreparingRebalance;
        self.rebalance_deadline = Some(now + timeout);
        for m in self.members.values_mut() {
            m.joined = m.join_tx.is_some();
            if let Some(tx) = m.sync_tx.take() {
                let _ = tx.send(SyncResult {
                    error: code::REBALANCE_IN_PROGRESS,
                    assignment: Bytes::new(),
                });
            }
        }
    }

    fn assignment_of(&self, member_id: &str) -> SyncResult {
        let assignment = self
            .members
            .get(member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default();
        SyncResult {
            error: code::NONE,
            assignment,
        }
    }

    fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.joined)
    }

    /// Ends the join phase: new generation, leader and protocol; answers every join.
    fn complete_join(&mut self) {
        self.members.retain(|_, m| m.joined);
        self.prune_instances();
        self.rebalance_deadline = None;
        self.initial_until = None;
        self.initial_cap = None;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            self.generation += 1;
            return;
        }
        self.generation += 1;
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        let leader = self.leader.clone().unwrap_or_default();
        // The first of the leader's protocols that every member supports.
        let protocol = self.members.get(&leader).and_then(|l| {
            l.protocols.iter().map(|(n, _)| n.clone()).find(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
        });
        self.protocol = protocol.clone();
        self.state = State::CompletingRebalance;
        let metadata: Vec<(String, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.metadata_for(protocol.as_ref())))
            .collect();
        let (generation, ptype) = (self.generation, self.protocol_type.clone());
        for (id, m) in self.members.iter_mut() {
            m.joined = false;
            m.assignment = Bytes::new();
            if let Some(tx) = m.join_tx.take() {
                let _ = tx.send(JoinResult {
                    error: if protocol.is_some() {
                        code::NONE
                    } else {
                        code::INCONSISTENT_GROUP_PROTOCOL
                    },
                    generation,
                    protocol: protocol.clone(),
                    protocol_type: ptype.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        metadata.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }
}

/// All groups of the server.
#[derive(Debug)]
pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    dir: PathBuf,
    next_member: std::sync::atomic::AtomicU64,
    /// `group.initial.rebalance.delay.ms`.
    initial_delay: Duration,
    /// One writer per group's offsets file at a time (the latest state wins; two writers
    /// would share the temporary file).
    files: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn file_for(dir: &std::path::Path, group: &str) -> PathBuf {
    dir.join(format!("{}.json", hex::encode(group.as_bytes())))
}

impl Coordinator {
    /// Loads committed offsets from `dir`.
    pub fn open(dir: PathBuf, initial_delay: Duration) -> std::io::Result<Coordinator> {
        std::fs::create_dir_all(&dir)?;
        let mut groups = HashMap::new();
        for e in std::fs::read_dir(&dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let Some(group) = hex::decode(stem)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            else {
                continue;
            };
            let Ok(offsets) = std::fs::read(e.path())
                .map_err(|_| ())
                .and_then(|b| serde_json::from_slice::<Offsets>(&b).map_err(|_| ()))
            else {
                tracing::warn!(group, "unreadable committed offsets ignored");
                continue;
            };
            groups.insert(group, Group::new(offsets));
        }
        Ok(Coordinator {
            groups: Mutex::new(groups),
            dir,
            next_member: Default::default(),
            initial_delay,
            files: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn file_lock(&self, group_id: &str) -> Arc<Mutex<()>> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(group_id.to_string())
            .or_default()
            .clone()
    }

    /// Writes a group's committed offsets as they are now (fsynced): writers of one group
    /// take turns, each writing the latest state, so an older state never lands last.
    fn persist(&self, group_id: &str) -> std::io::Result<()> {
        let file = self.file_lock(group_id);
        let _turn = file.lock().unwrap_or_else(|p| p.into_inner());
        let Some(snapshot) = self.lock().get(group_id).map(|g| g.offsets.clone()) else {
            return Ok(()); // deleted meanwhile
        };
        let bytes = serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?;
        sluice_common::fs::write_file(&file_for(&self.dir, group_id), &bytes)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        client_id: &str,
        client_host: &str,
        protocol_type: &str,
        protocols: Vec<(String, Bytes)>,
        session_timeout: Duration,
        rebalance_timeout: Duration,
    ) -> JoinResult {
        let err = |e: i16, member_id: &str| JoinResult {
            error: e,
            generation: -1,
            protocol: None,
            protocol_type: protocol_type.to_string(),
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        };
        if group_id.is_empty() {
            return err(code::INVALID_GROUP_ID, member_id);
        }
        let rx = {
            let mut groups = self.lock();
            let g = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(Offsets::default()));
            let now = Instant::now();
            let fresh_id = || {
                let n = self
                    .next_member
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("{client_id}-{n}-{:x}", sluice_log::now_ms())
            };
            // A static member coming back (a restart) takes over its old membership.
            let known = instance_id.and_then(|i| g.instances.get(i).cloned());
            let id = match known {
                Some(old) if !member_id.is_empty() && member_id != old => {
                    return err(code::FENCED_INSTANCE_ID, member_id);
                }
                Some(old) if member_id.is_empty() && g.members.contains_key(&old) => {
                    let new_id = fresh_id();
                    if let Some(mut m) = g.members.remove(&old) {
                        if let Some(tx) = m.join_tx.take() {
                            let _ = tx.send(err(code::FENCED_INSTANCE_ID, &old));
                        }
                        if let Some(tx) = m.sync_tx.take() {
                            let _ = tx.send(SyncResult {
                                error: code::FENCED_INSTANCE_ID,
                                assignment: Bytes::new(),
                            });
                        }
                        let same_protocols = m.protocols == protocols;
                        m.last_seen = now;
                        m.client_id = client_id.to_string();
                        m.client_host = client_host.to_string();
                        g.members.insert(new_id.clone(), m);
                        if let Some(i) = instance_id {
                            g.instances.insert(i.to_string(), new_id.clone());
                        }
                        let was_leader = g.leader.as_deref() == Some(old.as_str());
                        if was_leader {
                            g.leader = Some(new_id.clone());
                        }
                        // Nothing changed for the others: no rebalance, the member keeps
                        // its assignment. A returning leader gets the members as Kafka
                        // gives them (its SyncGroup in a stable group returns what it had).
                        if g.state == State::Stable && same_protocols {
                            let members = if was_leader {
                                g.members
                                    .iter()
                                    .map(|(id, m)| {
                                        (id.clone(), m.metadata_for(g.protocol.as_ref()))
                                    })
                                    .collect()
                            } else {
                                Vec::new()
                            };
                            return JoinResult {
                                error: code::NONE,
                                generation: g.generation,
                                protocol: g.protocol.clone(),
                                protocol_type: g.protocol_type.clone(),
                                leader: g.leader.clone().unwrap_or_default(),
                                member_id: new_id,
                                members,
                            };
                        }
                    }
                    new_id
                }
                _ if member_id.is_empty() => fresh_id(),
                _ if g.members.contains_key(member_id) => member_id.to_string(),
                _ => return err(code::UNKNOWN_MEMBER_ID, member_id),
            };
            let was_empty = g.members.is_empty();
            if g.members.is_empty() {
                g.protocol_type = protocol_type.to_string();
            } else if g.protocol_type != protocol_type {
                return err(code::INCONSISTENT_GROUP_PROTOCOL, &id);
            }
            let (tx, rx) = oneshot::channel();
            let m = g.members.entry(id.clone()).or_insert_with(|| Member {
                client_id: client_id.to_string(),
                client_host: client_host.to_string(),
                instance_id: instance_id.map(str::to_string),
                session_timeout,
                rebalance_timeout,
                protocols: Vec::new(),
                last_seen: now,
                joined: false,
                join_tx: None,
                sync_tx: None,
                assignment: Bytes::new(),
            });
            m.protocols = protocols;
            m.session_timeout = session_timeout;
            m.rebalance_timeout = rebalance_timeout;
            m.last_seen = now;
            m.joined = true;
            m.join_tx = Some(tx);
            if let Some(i) = instance_id {
                g.instances.insert(i.to_string(), id.clone());
            }
            if g.state != State::PreparingRebalance {
                g.start_rebalance(now);
            }
            if was_empty && g.initial_cap.is_none() && !self.initial_delay.is_zero() {
                g.initial_cap = Some(now + rebalance_timeout);
            }
            if let Some(cap) = g.initial_cap {
                // Each member joining during the initial delay extends it (up to the cap).
                g.initial_until = Some((now + self.initial_delay).min(cap));
            }
            if g.join_complete_at(now) {
                g.complete_join();
            }
            rx
        };
        let wait = rebalance_timeout + Duration::from_secs(5);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => r,
            _ => err(code::REBALANCE_IN_PROGRESS, member_id),
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let fail = |e| SyncResult {
            error: e,
            assignment: Bytes::new(),
        };
        let rx = {
            let mut groups = self.lock();
            let Some(g) = groups.get_mut(group_id) else {
                return fail(code::UNKNOWN_MEMBER_ID);
            };
            if !g.members.contains_key(member_id) {
                return fail(code::UNKNOWN_MEMBER_ID);
            }
            if generation != g.generation {
                return fail(code::ILLEGAL_GENERATION);
            }
            match g.state {
                State::PreparingRebalance | State::Empty => {
                    return fail(code::REBALANCE_IN_PROGRESS);
                }
                State::Stable => return g.assignment_of(member_id),
                State::CompletingRebalance => {}
            }
            if g.leader.as_deref() == Some(member_id) {
                for (id, a) in assignments {
                    if let Some(m) = g.members.get_mut(&id) {
                        m.assignment = a;
                    }
                }
                g.state = State::Stable;
                for m in g.members.values_mut() {
                    if let Some(tx) = m.sync_tx.take() {
                        let _ = tx.send(SyncResult {
                            error: code::NONE,
                            assignment: m.assignment.clone(),
                        });
                    }
                }
                return g.assignment_of(member_id);
            }
            let (tx, rx) = oneshot::channel();
            if let Some(m) = g.members.get_mut(member_id) {
                m.sync_tx = Some(tx);
                m.last_seen = Instant::now();
            }
            rx
        };
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(r)) => r,
            _ => fail(code::REBALANCE_IN_PROGRESS),
        }
    }

    /// Whether `member_id`, saying it is static member `instance_id`, has been replaced by
    /// another member with that instance id (KIP-345): its requests get
    /// `FENCED_INSTANCE_ID`, a fatal error for the client, so two consumers with one
    /// `group.instance.id` never both believe they own its partitions.
    pub fn fenced(&self, group_id: &str, member_id: &str, instance_id: Option<&str>) -> bool {
        let Some(i) = instance_id else {
            return false;
        };
        self.lock()
            .get(group_id)
            .and_then(|g| g.instances.get(i))
            .is_some_and(|m| m != member_id)
    }

    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        let state = g.state;
        let current = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        m.last_seen = Instant::now();
        if state == State::PreparingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        if generation != current {
            return code::ILLEGAL_GENERATION;
        }
        code::NONE
    }

    /// Whether `member_id` is a member of the group's current generation (KIP-447: a
    /// transaction may commit offsets only for the generation that owns them). A negative
    /// generation (clients before TxnOffsetCommit v3) is not checked.
    pub fn check_generation(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        if generation < 0 {
            return code::NONE;
        }
        let groups = self.lock();
        let Some(g) = groups.get(group_id) else {
            return code::ILLEGAL_GENERATION;
        };
        if !g.members.contains_key(member_id) {
            return code::UNKNOWN_MEMBER_ID;
        }
        if g.generation != generation {
            return code::ILLEGAL_GENERATION;
        }
        code::NONE
    }

    /// Removes members; the rest rebalance. Returns an error code per member.
    pub fn leave(&self, group_id: &str, members: &[String]) -> Vec<i16> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return vec![code::UNKNOWN_MEMBER_ID; members.len()];
        };
        let codes = members
            .iter()
            .map(|id| {
                if g.members.remove(id).is_some() {
                    code::NONE
                } else {
                    code::UNKNOWN_MEMBER_ID
                }
            })
            .collect();
        g.prune_instances();
        if g.members.is_empty() {
            g.state = State::Empty;
            g.leader = None;
        } else {
            let now = Instant::now();
            g.start_rebalance(now);
            if g.join_complete_at(now) {
                g.complete_join();
            }
        }
        codes
    }

    /// The member id of a static member (LeaveGroup by `group.instance.id`).
    pub fn member_of_instance(&self, group_id: &str, instance_id: &str) -> Option<String> {
        self.lock()
            .get(group_id)?
            .instances
            .get(instance_id)
            .cloned()
    }

    /// Expires silent members and ends overdue rebalances. Call periodically.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.lock();
        for (name, g) in groups.iter_mut() {
            match g.state {
                State::PreparingRebalance => {
                    // A member that is neither waiting in a join nor heard from within its
                    // session timeout is gone (a crashed client); do not wait for it.
                    let before = g.members.len();
                    g.members.retain(|_, m| {
                        m.join_tx.is_some() || now.duration_since(m.last_seen) < m.session_timeout
                    });
                    if g.members.len() < before {
                        tracing::info!(group = %name, expired = before - g.members.len(), "members' sessions expired during a rebalance");
                    }
                    if g.rebalance_deadline.is_some_and(|d| now >= d) {
                        tracing::info!(group = %name, "rebalance deadline passed; dropping members that did not rejoin");
                        g.complete_join();
                    } else if g.join_complete_at(now) {
                        g.complete_join();
                    }
                }
                State::Stable | State::CompletingRebalance => {
                    let before = g.members.len();
                    g.members.retain(|_, m| {
                        m.sync_tx.is_some() || now.duration_since(m.last_seen) < m.session_timeout
                    });
                    if g.members.len() < before {
                        tracing::info!(group = %name, expired = before - g.members.len(), "members' sessions expired");
                        if g.members.is_empty() {
                            g.state = State::Empty;
                            g.leader = None;
                        } else {
                            g.start_rebalance(now);
                        }
                    }
                }
                State::Empty => {}
            }
            g.prune_instances();
        }
    }

    /// DeleteGroups: an empty group's offsets are forgotten (file and all).
    pub fn delete_group(&self, group_id: &str) -> i16 {
        let file = self.file_lock(group_id);
        let _turn = file.lock().unwrap_or_else(|p| p.into_inner());
        let mut groups = self.lock();
        match groups.get(group_id) {
            None => return code::GROUP_ID_NOT_FOUND,
            Some(g) if !g.members.is_empty() => return code::NON_EMPTY_GROUP,
            Some(_) => {}
        }
        let path = file_for(&self.dir, group_id);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(group = group_id, error = %e, "could not delete committed offsets");
            return -1;
        }
        groups.remove(group_id);
        code::NONE
    }

    /// OffsetDelete: forgets committed offsets of partitions, unless members are active
    /// in the group (GROUP_SUBSCRIBED_TO_TOPIC). One code per partition asked.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        {
            let mut groups = self.lock();
            let Some(g) = groups.get_mut(group_id) else {
                return Err(code::GROUP_ID_NOT_FOUND);
            };
            if !g.members.is_empty() {
                return Ok(vec![code::GROUP_SUBSCRIBED_TO_TOPIC; partitions.len()]);
            }
            for (t, p) in partitions {
                g.offsets.committed.remove(&format!("{t}/{p}"));
                g.offsets.epochs.remove(&format!("{t}/{p}"));
            }
        }
        if let Err(e) = self.persist(group_id) {
            tracing::error!(group = group_id, error = %e, "could not persist committed offsets");
            return Err(-1);
        }
        Ok(vec![code::NONE; partitions.len()])
    }

    /// Stores committed offsets durably (fsynced before the commit is acknowledged).
    pub fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        offsets: &[(String, i32, i64, Option<String>)],
        epochs: &Epochs,
    ) -> i16 {
        {
            let mut groups = self.lock();
            let g = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(Offsets::default()));
            if generation >= 0 {
                if !g.members.contains_key(member_id) {
                    return code::UNKNOWN_MEMBER_ID;
                }
                if generation != g.generation {
                    return code::ILLEGAL_GENERATION;
                }
            }
            for (t, p, o, md) in offsets {
                let key = format!("{t}/{p}");
                let epoch = epochs
                    .iter()
                    .find(|(et, ep, _)| et == t && ep == p)
                    .map_or(-1, |e| e.2);
                if epoch >= 0 {
                    g.offsets.epochs.insert(key.clone(), epoch);
                } else {
                    g.offsets.epochs.remove(&key);
                }
                g.offsets.committed.insert(key, (*o, md.clone()));
            }
        }
        if let Err(e) = self.persist(group_id) {
            tracing::error!(group = group_id, error = %e, "could not persist committed offsets");
            return -1;
        }
        code::NONE
    }

    /// The leader epoch committed with a partition's offset (-1: none).
    pub fn committed_epoch(&self, group_id: &str, topic: &str, partition: i32) -> i32 {
        self.lock()
            .get(group_id)
            .and_then(|g| {
                g.offsets
                    .epochs
                    .get(&format!("{topic}/{partition}"))
                    .copied()
            })
            .unwrap_or(-1)
    }

    /// The committed offset of a partition, if any.
    pub fn committed(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<(i64, Option<String>)> {
        let groups = self.lock();
        groups
            .get(group_id)?
            .offsets
            .committed
            .get(&format!("{topic}/{partition}"))
            .cloned()
    }

    /// Every committed (topic, partition) of a group.
    pub fn committed_all(&self, group_id: &str) -> Vec<(String, i32, i64, Option<String>)> {
        let groups = self.lock();
        let Some(g) = groups.get(group_id) else {
            return Vec::new();
        };
        g.offsets
            .committed
            .iter()
            .filter_map(|(k, (o, md))| {
                let (t, p) = k.rsplit_once('/')?;
                Some((t.to_string(), p.parse().ok()?, *o, md.clone()))
            })
            .collect()
    }

    /// Sets a group's committed offsets (what `kafka-consumer-groups --reset-offsets
    /// --execute` does), creating the group if it has none: refused while it has members
    /// (NON_EMPTY_GROUP), whose commits would race the new offsets. Persisted before it
    /// answers.
    pub fn set_offsets(&self, group_id: &str, offsets: &[(String, i32, i64)]) -> Result<(), i16> {
        if group_id.is_empty() {
            return Err(code::INVALID_GROUP_ID);
        }
        {
            let mut groups = self.lock();
            let g = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(Offsets::default()));
            if !g.members.is_empty() {
                return Err(code::NON_EMPTY_GROUP);
            }
            for (t, p, o) in offsets {
                let key = format!("{t}/{p}");
                g.offsets.epochs.remove(&key);
                g.offsets.committed.insert(key, (*o, None));
            }
        }
        if let Err(e) = self.persist(group_id) {
            tracing::error!(group = group_id, error = %e, "could not persist committed offsets");
            return Err(-1);
        }
        Ok(())
    }

    /// Every group: its id, protocol type, chosen protocol, state and member count.
    pub fn summaries(&self) -> Vec<GroupSummary> {
        let mut all: Vec<GroupSummary> = self
            .lock()
            .iter()
            .map(|(n, g)| GroupSummary {
                id: n.clone(),
                protocol_type: g.protocol_type.clone(),
                protocol: g.protocol.clone().unwrap_or_default(),
                state: g.state.name(),
                members: g.members.len(),
            })
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// (group, protocol type, state) of every group.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        self.lock()
            .iter()
            .map(|(n, g)| (n.clone(), g.protocol_type.clone(), g.state.name()))
            .collect()
    }

    /// State, protocol and members (id, client id, metadata, assignment) of a group.
    #[allow(clippy::type_complexity)]
    pub fn describe(
        &self,
        group_id: &str,
    ) -> Option<(&'static str, String, String, Vec<DescribedMember>)> {
        let groups = self.lock();
        let g = groups.get(group_id)?;
        let members = g
            .members
            .iter()
            .map(|(id, m)| DescribedMember {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata_for(g.protocol.as_ref()),
                assignment: m.assignment.clone(),
            })
            .collect();
        Some((
            g.state.name(),
            g.protocol_type.clone(),
            g.protocol.clone().unwrap_or_default(),
            members,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits to one group from many connections at once all succeed, and what a restart
    /// reads is the latest state (writers of one file take turns).
    #[test]
    fn concurrent_commits_of_one_group_persist_the_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(Coordinator::open(dir.path().to_path_buf(), Duration::ZERO).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|p| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for o in 1..=50i64 {
                        let code = c.commit("g", -1, "", &[("t".into(), p, o, None)], &[]);
                        assert_eq!(code, code::NONE);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.delete_group("g"), code::NONE);
        assert_eq!(
            c.commit("g", -1, "", &[("t".into(), 0, 7, None)], &[]),
            code::NONE,
            "a group deleted and used again persists"
        );
        let reopened = Coordinator::open(dir.path().to_path_buf(), Duration::ZERO).unwrap();
        assert_eq!(reopened.committed("g", "t", 0), Some((7, None)));
        assert_eq!(reopened.committed("g", "t", 1), None);
    }
}
