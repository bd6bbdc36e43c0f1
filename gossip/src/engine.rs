//! The sans-IO gossip engine: membership, versioned per-node state and failure detection.
//!
//! Shaped like `quinn-proto`: the caller feeds it time ([`Gossip::handle_timeout`]) and received
//! messages ([`Gossip::handle_message`], [`Gossip::handle_datagram`]), and drains its effects
//! ([`Gossip::poll_transmit`], [`Gossip::poll_event`]) and its next deadline
//! ([`Gossip::poll_timeout`]). Randomness comes from a seed given at construction, so a run is
//! a pure function of its inputs.
//!
//! Every gossip round (paper section 4.8.1: "each node contacts a peer chosen at random every
//! second") the engine bumps its own heartbeat, checks every peer's phi, and opens a push-pull
//! exchange with `fanout` random live peers, sometimes a down peer (so a healed partition
//! merges), and a seed when it knows nobody or now and then (paper section 4.8.2: seeds prevent
//! logical partitions).
//!
//! This module must not know about sockets, clocks, threads, or what the application stores in
//! its keys (the ring is just bytes here).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::detector::{DetectorConfig, PhiDetector};
use crate::error::GossipError;
use crate::message::{
    Body, Change, Delta, Digest, DigestEntry, IdRange, Message, NodeDelta, NodeMeta,
    VersionedChange,
};
use crate::state::NodeState;
use crate::types::{Identity, NodeId, Status};

/// Engine settings. [`Config::default`] gives the tuned values behind the crate's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Cluster name carried by every message; others are rejected.
    pub cluster: String,
    /// Time between rounds (the paper uses one second).
    pub gossip_interval: Duration,
    /// Live peers contacted per round.
    pub fanout: usize,
    /// Seed addresses, contacted when no live peer is known and otherwise with probability
    /// `seeds / (known members + 1)` each round (about `seeds` contacts per round cluster-wide,
    /// so seeds are not overloaded in large clusters), times [`Config::seed_weight`].
    pub seeds: Vec<String>,
    /// Multiplier on the per-round chance of contacting a seed (1 by default).
    pub seed_weight: f64,
    /// A peer whose phi exceeds this is declared down (Cassandra uses 8).
    pub phi_threshold: f64,
    /// Heartbeat intervals kept per peer.
    pub phi_window: usize,
    /// Floor on the detector's standard deviation.
    pub min_std_dev: Duration,
    /// Silence beyond the mean that is not suspicious at all.
    pub acceptable_pause: Duration,
    /// Heartbeat intervals longer than this are not learned (partitions, down periods).
    pub max_sample_interval: Duration,
    /// Largest message sent or accepted, in bytes. Digests and deltas that do not fit are
    /// truncated and the rest is sent in later rounds.
    pub max_message_bytes: usize,
    /// How long a member that announced [`Status::Left`] is kept before it is forgotten.
    pub left_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster: "dynamo".into(),
            gossip_interval: Duration::from_secs(1),
            fanout: 2,
            seeds: Vec::new(),
            seed_weight: 1.0,
            phi_threshold: 8.0,
            phi_window: 100,
            min_std_dev: Duration::from_millis(500),
            acceptable_pause: Duration::from_secs(2),
            max_sample_interval: Duration::from_secs(10),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            left_grace: Duration::from_secs(60),
        }
    }
}

/// Default byte budget: a small QUIC stream frame, or a UDP datagram with room to spare. A
/// complete digest of 1000 members with short ids takes about 10 KB of it.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The target's id, when known (a seed is known by address only).
    pub to: Option<NodeId>,
    /// The target's address, opaque to this crate.
    pub address: String,
    /// What to send; encode with [`Message::encode`].
    pub message: Message,
}

/// Something the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member is reachable: first heartbeat seen locally, or heartbeats resumed after `NodeDown`.
    NodeUp(NodeId),
    /// A member's phi crossed the threshold (a local, possibly temporary, judgement).
    NodeDown(NodeId),
    /// A member restarted: its new generation replaced everything known about the old one.
    NodeRestarted {
        /// The member.
        node: NodeId,
        /// Its new generation.
        generation: u64,
    },
    /// A member's application key changed.
    StateChanged {
        /// The member.
        node: NodeId,
        /// The key.
        key: String,
    },
    /// A member announced a new status.
    StatusChanged {
        /// The member.
        node: NodeId,
        /// Its status.
        status: Status,
    },
    /// A member that left was forgotten after the grace period.
    NodeForgotten(NodeId),
}

/// A read-only view of one member.
#[derive(Clone, Copy, Debug)]
pub struct MemberView<'a> {
    state: &'a NodeState,
    live: bool,
}

impl<'a> MemberView<'a> {
    /// Its identity.
    pub fn identity(&self) -> &'a Identity {
        &self.state.identity
    }
    /// Its id.
    pub fn id(&self) -> &'a NodeId {
        &self.state.identity.id
    }
    /// Its announced status.
    pub fn status(&self) -> Status {
        self.state.status
    }
    /// Latest heartbeat known.
    pub fn heartbeat(&self) -> u64 {
        self.state.heartbeat
    }
    /// Highest state version held.
    pub fn max_version(&self) -> u64 {
        self.state.max_version
    }
    /// Whether the local failure detector considers it up (always true for oneself).
    pub fn is_live(&self) -> bool {
        self.live
    }
    /// The value of an application key.
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        self.state.entries.get(key).map(|v| v.value.as_slice())
    }
    /// Application keys with their values and versions, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a [u8], u64)> + 'a {
        self.state
            .entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.value.as_slice(), v.version))
    }
}

#[derive(Debug)]
struct Member {
    state: NodeState,
    detector: PhiDetector,
    live: bool,
    left_at: Option<Duration>,
}

/// One node's gossip engine. See the module documentation.
#[derive(Debug)]
pub struct Gossip {
    config: Config,
    detector: DetectorConfig,
    me: NodeId,
    members: BTreeMap<NodeId, Member>,
    forgotten: BTreeMap<NodeId, (u64, Duration)>,
    rng: StdRng,
    next_round: Duration,
    rounds: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Gossip {
    /// A node announcing `identity` with `status`, first round within one interval of `now`
    /// (the phase is drawn from `seed` so nodes do not gossip in lock-step). A zero
    /// `gossip_interval` is raised to one millisecond.
    pub fn new(
        mut config: Config,
        identity: Identity,
        status: Status,
        now: Duration,
        seed: u64,
    ) -> Self {
        config.gossip_interval = config.gossip_interval.max(Duration::from_millis(1));
        let mut rng = StdRng::seed_from_u64(seed);
        let phase = rng.random_range(0.0..1.0);
        let next_round = now + config.gossip_interval.mul_f64(phase);
        let detector = DetectorConfig {
            window: config.phi_window,
            bootstrap_interval: config.gossip_interval,
            min_std_dev: config.min_std_dev,
            acceptable_pause: config.acceptable_pause,
            max_sample: config.max_sample_interval,
        };
        let me = identity.id.clone();
        let mut members = BTreeMap::new();
        members.insert(
            me.clone(),
            Member {
                state: NodeState::new_local(identity, status),
                detector: PhiDetector::default(),
                live: true,
                left_at: None,
            },
        );
        Self {
            config,
            detector,
            me,
            members,
            forgotten: BTreeMap::new(),
            rng,
            next_round,
            rounds: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.me
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    fn own(&self) -> &NodeState {
        &self.members[&self.me].state
    }

    fn own_mut(&mut self) -> &mut NodeState {
        &mut self
            .members
            .get_mut(&self.me)
            .expect("own member is never removed")
            .state
    }

    /// Sets one of this node's application keys; returns its version. Fails if the entry could
    /// never fit a message.
    pub fn set(&mut self, key: impl Into<String>, value: Vec<u8>) -> Result<u64, GossipError> {
        let key = key.into();
        let len = str_len(&key) + bytes_len(&value) + 16;
        let max = self.config.max_message_bytes / 2;
        if len > max {
            return Err(GossipError::ValueTooLarge { len, max });
        }
        Ok(self.own_mut().set_local(key, value))
    }

    /// Announces a new status. Statuses only move forward: joining, alive, leaving, left.
    pub fn set_status(&mut self, status: Status) -> Result<u64, GossipError> {
        let current = self.own().status;
        if status < current {
            return Err(GossipError::InvalidRequest(format!(
                "status cannot go from {current:?} back to {status:?}"
            )));
        }
        Ok(self.own_mut().set_status_local(status))
    }

    /// Forgets member `id`, which the application decided is gone for good (an administrator
    /// removed it): it is no longer gossiped or probed, and deltas of its current generation
    /// are ignored for one `left_grace`. Only a member that is down can be forgotten; returns
    /// whether it was.
    pub fn forget(&mut self, id: &NodeId, now: Duration) -> bool {
        let down = *id != self.me && self.members.get(id).is_some_and(|m| !m.live);
        if !down {
            return false;
        }
        if let Some(member) = self.members.remove(id) {
            self.forgotten
                .insert(id.clone(), (member.state.identity.generation, now));
            self.events.push_back(Event::NodeForgotten(id.clone()));
        }
        true
    }

    /// A view of one member (including oneself).
    pub fn member(&self, id: &NodeId) -> Option<MemberView<'_>> {
        self.members.get(id).map(|m| MemberView {
            state: &m.state,
            live: m.live,
        })
    }

    /// Views of every known member, in id order.
    pub fn members(&self) -> impl Iterator<Item = MemberView<'_>> {
        self.members.values().map(|m| MemberView {
            state: &m.state,
            live: m.live,
        })
    }

    /// Whether the local detector considers `id` up.
    pub fn is_live(&self, id: &NodeId) -> bool {
        self.members.get(id).is_some_and(|m| m.live)
    }

    /// The current suspicion level of a peer.
    pub fn phi(&self, id: &NodeId, now: Duration) -> Option<f64> {
        if *id == self.me {
            return None;
        }
        self.members
            .get(id)
            .map(|m| m.detector.phi(now, &self.detector))
    }

    /// The highest phi among peers currently considered live (0 if none): how close the
    /// detector is to a verdict.
    pub fn max_live_phi(&self, now: Duration) -> f64 {
        self.members
            .iter()
            .filter(|(id, m)| **id != self.me && m.live && m.state.status != Status::Left)
            .map(|(_, m)| m.detector.phi(now, &self.detector))
            .fold(0.0, f64::max)
    }

    /// When [`Gossip::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        Some(self.next_round)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Runs a gossip round if one is due.
    pub fn handle_timeout(&mut self, now: Duration) {
        if now < self.next_round {
            return;
        }
        self.next_round += self.config.gossip_interval;
        if self.next_round <= now {
            self.next_round = now + self.config.gossip_interval;
        }
        self.rounds += 1;
        self.own_mut().heartbeat += 1;
        self.check_failures(now);
        self.collect_left(now);
        let targets = self.choose_targets();
        if targets.is_empty() {
            return;
        }
        let budget = self.body_budget();
        let digest = self.digest(budget);
        for (to, address) in targets {
            let message = self.envelope(Body::Syn {
                digest: digest.clone(),
            });
            self.push(to, address, message);
        }
    }

    /// Decodes and handles a received datagram. `from_address` is where replies go.
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        from_address: &str,
        bytes: &[u8],
    ) -> Result<(), GossipError> {
        let message = Message::decode(bytes, self.config.max_message_bytes)?;
        self.handle_checked(now, from_address, message)
    }

    /// Handles a received message (validated here). `from_address` is where replies go.
    pub fn handle_message(
        &mut self,
        now: Duration,
        from_address: &str,
        message: Message,
    ) -> Result<(), GossipError> {
        message.validate()?;
        self.handle_checked(now, from_address, message)
    }

    fn handle_checked(
        &mut self,
        now: Duration,
        from_address: &str,
        message: Message,
    ) -> Result<(), GossipError> {
        if message.cluster != self.config.cluster {
            return Err(GossipError::WrongCluster {
                got: message.cluster,
                expected: self.config.cluster.clone(),
            });
        }
        if message.from == self.me {
            // Our own Syn bounced back through a seed address that is ours.
            return Ok(());
        }
        let from = message.from;
        match message.body {
            Body::Syn { digest } => {
                self.observe_digest(now, &digest);
                let avail = self.body_budget();
                let full = self.full_digest_len();
                let digest_budget = if full <= avail * 3 / 4 {
                    full
                } else {
                    avail / 2
                };
                let own_digest = self.digest(digest_budget);
                let delta_budget = avail.saturating_sub(digest_len(&own_digest));
                let delta = self.delta_for(&digest, delta_budget);
                let reply = self.envelope(Body::SynAck {
                    digest: own_digest,
                    delta,
                });
                self.push(Some(from), from_address.to_owned(), reply);
            }
            Body::SynAck { digest, delta } => {
                self.observe_digest(now, &digest);
                self.apply_delta(now, &delta);
                let budget = self.body_budget();
                let delta = self.delta_for(&digest, budget);
                if !delta.nodes.is_empty() {
                    let reply = self.envelope(Body::Ack { delta });
                    self.push(Some(from), from_address.to_owned(), reply);
                }
            }
            Body::Ack { delta } => self.apply_delta(now, &delta),
        }
        Ok(())
    }

    fn envelope(&self, body: Body) -> Message {
        Message {
            cluster: self.config.cluster.clone(),
            from: self.me.clone(),
            body,
        }
    }

    fn push(&mut self, to: Option<NodeId>, address: String, message: Message) {
        debug_assert!(
            message.encoded_len() <= self.config.max_message_bytes,
            "message of {} bytes over budget {}",
            message.encoded_len(),
            self.config.max_message_bytes
        );
        self.transmits.push_back(Transmit {
            to,
            address,
            message,
        });
    }

    /// Bytes left for the body after the envelope and a little slack for length prefixes.
    fn body_budget(&self) -> usize {
        let envelope = str_len(&self.config.cluster) + str_len(self.me.as_str()) + 1;
        self.config.max_message_bytes.saturating_sub(envelope + 16)
    }

    fn full_digest_len(&self) -> usize {
        1 + 5
            + self
                .members
                .values()
                .map(|m| digest_entry_len(&m.state))
                .sum::<usize>()
    }

    /// A digest of everything known or, if that does not fit, of every member in a random
    /// window of ids (rotating over rounds) plus ourselves.
    fn digest(&mut self, budget: usize) -> Digest {
        let entry = |state: &NodeState| DigestEntry {
            node: state.identity.id.clone(),
            generation: state.identity.generation,
            heartbeat: state.heartbeat,
            max_version: state.max_version,
        };
        if self.full_digest_len() <= budget {
            return Digest {
                range: None,
                entries: self.members.values().map(|m| entry(&m.state)).collect(),
            };
        }
        let sorted: Vec<&Member> = self.members.values().collect();
        let start = self.rng.random_range(0..sorted.len());
        // Room for ourselves and for both bounds of the range.
        let mut used = 1 + 5 + digest_entry_len(self.own()) + 2;
        let mut entries = Vec::new();
        let mut has_own = false;
        let mut end = start;
        for member in &sorted[start..] {
            let id = &member.state.identity.id;
            let bounds = str_len(sorted[start].state.identity.id.as_str()) + str_len(id.as_str());
            let len = if *id == self.me {
                0
            } else {
                digest_entry_len(&member.state)
            };
            if used + len + bounds > budget {
                break;
            }
            used += len;
            has_own |= *id == self.me;
            end += 1;
            entries.push(entry(&member.state));
        }
        let range = if end == start {
            IdRange {
                first: Some(self.me.clone()),
                last: Some(self.me.clone()),
            }
        } else {
            IdRange {
                first: (start > 0).then(|| sorted[start].state.identity.id.clone()),
                last: (end < sorted.len()).then(|| sorted[end - 1].state.identity.id.clone()),
            }
        };
        if !has_own {
            entries.push(entry(self.own()));
        }
        Digest {
            range: Some(range),
            entries,
        }
    }

    /// Learns newer heartbeats from a peer's digest.
    fn observe_digest(&mut self, now: Duration, digest: &Digest) {
        let mut observe = |member: &mut Member, entry: &DigestEntry| {
            if member.state.identity.generation == entry.generation {
                observe_heartbeat(
                    member,
                    entry.heartbeat,
                    now,
                    &self.detector,
                    &mut self.events,
                );
            }
        };
        if is_sorted_digest(digest) {
            // Both sides are in id order: one merge pass instead of a lookup per entry.
            let mut entries = digest.entries.iter().peekable();
            for (id, member) in &mut self.members {
                while entries.next_if(|e| e.node < *id).is_some() {}
                let entry = entries.next_if(|e| e.node == *id);
                if let Some(entry) = entry.filter(|_| *id != self.me) {
                    observe(member, entry);
                }
            }
            return;
        }
        for entry in &digest.entries {
            if entry.node == self.me {
                continue;
            }
            if let Some(member) = self.members.get_mut(&entry.node) {
                observe(member, entry);
            }
        }
    }

    /// What a peer with `digest` lacks, within `budget` bytes, members in random order so a
    /// large backlog is spread fairly over rounds.
    fn delta_for(&mut self, digest: &Digest, budget: usize) -> Delta {
        let mut peer: Vec<&DigestEntry> = digest.entries.iter().collect();
        if !is_sorted_digest(digest) {
            peer.sort_unstable_by(|a, b| a.node.cmp(&b.node));
        }
        // Merge pass over two id-ordered lists.
        let mut peer = peer.into_iter().peekable();
        let mut wanted: Vec<(&Member, u64)> = Vec::new();
        for (id, member) in &self.members {
            while peer.next_if(|e| e.node < *id).is_some() {}
            let known = peer.next_if(|e| e.node == *id);
            let generation = member.state.identity.generation;
            let from = match known {
                None if digest.covers(id) => Some(0),
                Some(e) if e.generation < generation => Some(0),
                Some(e)
                    if e.generation == generation && e.max_version < member.state.max_version =>
                {
                    Some(e.max_version)
                }
                _ => None,
            };
            if let Some(from) = from {
                wanted.push((member, from));
            }
        }
        wanted.shuffle(&mut self.rng);
        let mut left = budget.saturating_sub(5);
        let mut nodes = Vec::new();
        for (member, from) in wanted {
            if left < 32 {
                break;
            }
            if let Some((delta, len)) = node_delta(&member.state, from, left) {
                left -= len;
                nodes.push(delta);
            }
        }
        Delta { nodes }
    }

    fn apply_delta(&mut self, now: Duration, delta: &Delta) {
        for node_delta in &delta.nodes {
            self.apply_node_delta(now, node_delta);
        }
    }

    fn apply_node_delta(&mut self, now: Duration, delta: &NodeDelta) {
        if delta.node == self.me {
            return;
        }
        if let Some((generation, _)) = self.forgotten.get(&delta.node) {
            if delta.generation <= *generation {
                return;
            }
            self.forgotten.remove(&delta.node);
        }
        let identity_of = |meta: &NodeMeta| Identity {
            id: delta.node.clone(),
            generation: delta.generation,
            address: meta.address.clone(),
            zone: meta.zone.clone(),
            capacity: meta.capacity,
        };
        let events = &mut self.events;
        match self.members.get_mut(&delta.node) {
            None => {
                let Some(meta) = delta.meta.as_ref().filter(|_| delta.from_version == 0) else {
                    return;
                };
                let mut member = Member {
                    state: NodeState::new_remote(identity_of(meta), delta.heartbeat),
                    detector: PhiDetector::started_at(now),
                    live: false,
                    left_at: None,
                };
                apply_changes(&mut member, now, &delta.changes, delta.to_version, events);
                self.members.insert(delta.node.clone(), member);
            }
            Some(member) => {
                let generation = member.state.identity.generation;
                if delta.generation < generation {
                    return;
                }
                if delta.generation > generation {
                    let Some(meta) = delta.meta.as_ref().filter(|_| delta.from_version == 0) else {
                        return;
                    };
                    member.state = NodeState::new_remote(identity_of(meta), delta.heartbeat);
                    member.detector = PhiDetector::started_at(now);
                    member.left_at = None;
                    events.push_back(Event::NodeRestarted {
                        node: delta.node.clone(),
                        generation: delta.generation,
                    });
                    apply_changes(member, now, &delta.changes, delta.to_version, events);
                    if !member.live && member.state.status != Status::Left {
                        member.live = true;
                        events.push_back(Event::NodeUp(delta.node.clone()));
                    }
                    return;
                }
                if delta.from_version > member.state.max_version {
                    // A gap: we miss versions in between; a later exchange fills it.
                    return;
                }
                apply_changes(member, now, &delta.changes, delta.to_version, events);
                observe_heartbeat(member, delta.heartbeat, now, &self.detector, events);
            }
        }
    }

    fn check_failures(&mut self, now: Duration) {
        for (id, member) in &mut self.members {
            if *id == self.me || !member.live || member.state.status == Status::Left {
                continue;
            }
            if member.detector.phi(now, &self.detector) > self.config.phi_threshold {
                member.live = false;
                member.detector.clear_samples();
                self.events.push_back(Event::NodeDown(id.clone()));
            }
        }
    }

    fn collect_left(&mut self, now: Duration) {
        let grace = self.config.left_grace;
        let expired: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(id, m)| {
                **id != self.me && m.left_at.is_some_and(|at| now.saturating_sub(at) >= grace)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(member) = self.members.remove(&id) {
                self.forgotten
                    .insert(id.clone(), (member.state.identity.generation, now));
                self.events.push_back(Event::NodeForgotten(id));
            }
        }
        // Everyone learns of a departure within a few rounds of us, so after a second grace
        // period nobody gossips the old generation any more.
        self.forgotten
            .retain(|_, (_, at)| now.saturating_sub(*at) < grace);
    }

    fn choose_targets(&mut self) -> Vec<(Option<NodeId>, String)> {
        let mut live = Vec::new();
        let mut down = Vec::new();
        for (id, member) in &self.members {
            if *id == self.me || member.state.status == Status::Left {
                continue;
            }
            if member.live {
                live.push(member);
            } else {
                down.push(member);
            }
        }
        let mut targets: Vec<(Option<NodeId>, String)> = live
            .choose_multiple(&mut self.rng, self.config.fanout)
            .map(|m| {
                (
                    Some(m.state.identity.id.clone()),
                    m.state.identity.address.clone(),
                )
            })
            .collect();
        // Probe an unreachable member now and then (more often the more are unreachable), so
        // a healed partition or a recovered node is noticed.
        if !down.is_empty() {
            let p = (down.len() as f64 / (live.len() as f64 + 1.0)).min(1.0);
            let probe = self.rng.random_bool(p);
            if let Some(m) = down.choose(&mut self.rng).filter(|_| probe) {
                targets.push((
                    Some(m.state.identity.id.clone()),
                    m.state.identity.address.clone(),
                ));
            }
        }
        let own_address = &self.members[&self.me].state.identity.address;
        let seeds: Vec<&String> = self
            .config
            .seeds
            .iter()
            .filter(|s| *s != own_address && !targets.iter().any(|(_, a)| a == *s))
            .collect();
        let p = self.config.seed_weight * seeds.len() as f64 / (live.len() + down.len() + 1) as f64;
        let want_seed = live.is_empty() || self.rng.random_bool(p.clamp(0.0, 1.0));
        if let Some(seed) = seeds.choose(&mut self.rng).filter(|_| want_seed) {
            targets.push((None, (*seed).clone()));
        }
        targets
    }
}

fn observe_heartbeat(
    member: &mut Member,
    heartbeat: u64,
    now: Duration,
    config: &DetectorConfig,
    events: &mut VecDeque<Event>,
) {
    if heartbeat <= member.state.heartbeat {
        return;
    }
    member.state.heartbeat = heartbeat;
    member.detector.heartbeat(now, config);
    if !member.live && member.state.status != Status::Left {
        member.live = true;
        events.push_back(Event::NodeUp(member.state.identity.id.clone()));
    }
}

fn apply_changes(
    member: &mut Member,
    now: Duration,
    changes: &[VersionedChange],
    to_version: u64,
    events: &mut VecDeque<Event>,
) {
    let applied = member.state.apply(changes, to_version);
    let id = &member.state.identity.id;
    if let Some(status) = applied.status {
        events.push_back(Event::StatusChanged {
            node: id.clone(),
            status,
        });
        if status == Status::Left {
            member.live = false;
            member.left_at.get_or_insert(now);
        }
    }
    for key in applied.keys {
        events.push_back(Event::StateChanged {
            node: id.clone(),
            key,
        });
    }
}

/// The delta of `state` from version `from`, truncated to `budget` bytes, with its size; `None`
/// if not even one change fits.
fn node_delta(state: &NodeState, from: u64, budget: usize) -> Option<(NodeDelta, usize)> {
    let meta = (from == 0).then(|| state.meta());
    let header = str_len(state.identity.id.as_str())
        + varint_len(state.identity.generation)
        + varint_len(state.heartbeat)
        + meta.as_ref().map_or(1, |m| 1 + meta_len(m))
        + varint_len(from)
        + 10 // to_version
        + 5; // changes length prefix
    let mut used = header;
    let mut changes = Vec::new();
    let all = state.changes_after(from);
    let total = all.len();
    for change in all {
        let len = change_len(&change);
        if used + len > budget {
            break;
        }
        used += len;
        changes.push(change);
    }
    let to_version = changes.last()?.version;
    let complete = changes.len() == total;
    let delta = NodeDelta {
        node: state.identity.id.clone(),
        generation: state.identity.generation,
        heartbeat: state.heartbeat,
        meta,
        from_version: from,
        // A complete delta vouches for every version up to our maximum.
        to_version: if complete {
            state.max_version
        } else {
            to_version
        },
        changes,
    };
    Some((delta, used))
}

fn is_sorted_digest(digest: &Digest) -> bool {
    digest.entries.is_sorted_by(|a, b| a.node < b.node)
}

fn varint_len(value: u64) -> usize {
    (64 - value.max(1).leading_zeros() as usize).div_ceil(7)
}

fn str_len(s: &str) -> usize {
    varint_len(s.len() as u64) + s.len()
}

fn bytes_len(b: &[u8]) -> usize {
    varint_len(b.len() as u64) + b.len()
}

fn meta_len(meta: &NodeMeta) -> usize {
    str_len(&meta.address) + str_len(&meta.zone) + varint_len(u64::from(meta.capacity))
}

fn change_len(change: &VersionedChange) -> usize {
    varint_len(change.version)
        + 1
        + match &change.change {
            Change::Status(_) => 1,
            Change::Set { key, value } => str_len(key) + bytes_len(value),
        }
}

fn digest_entry_len(state: &NodeState) -> usize {
    str_len(state.identity.id.as_str())
        + varint_len(state.identity.generation)
        + varint_len(state.heartbeat)
        + varint_len(state.max_version)
}

fn digest_len(digest: &Digest) -> usize {
    1 + digest.range.as_ref().map_or(0, |r| {
        [&r.first, &r.last]
            .iter()
            .map(|b| 1 + b.as_ref().map_or(0, |id| str_len(id.as_str())))
            .sum::<usize>()
    }) + 5
        + digest
            .entries
            .iter()
            .map(|e| {
                str_len(e.node.as_str())
                    + varint_len(e.generation)
                    + varint_len(e.heartbeat)
                    + varint_len(e.max_version)
            })
            .sum::<usize>()
}
