//! Test support: a deterministic N-node network simulator on a virtual clock.
//!
//! Every node is a [`Gossip`] engine; the simulator delivers its transmits after a latency plus
//! uniform jitter, drops a configurable fraction, and can crash, restart and partition nodes.
//! Everything random comes from one seed, so a run is reproducible. It plays the part of
//! `quinn-proto`'s test `Pair` or raft-rs's test network, for the crate's tests and examples and
//! for other crates' tests.
//!
//! This module must not know about real time or sockets; it is a model of a network, not one.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::engine::{Config, Event, Gossip};
use crate::message::{Body, Message};
use crate::types::{Identity, NodeId, Status};

/// Shape of a simulated cluster and network.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// How many of them are seeds (spread evenly over the indices).
    pub seeds: usize,
    /// Engine settings for every node (`seeds` is filled in by the simulator).
    pub gossip: Config,
    /// Fraction of messages lost.
    pub loss: f64,
    /// Base one-way latency.
    pub latency: Duration,
    /// Extra latency drawn uniformly from `0..=jitter`.
    pub jitter: Duration,
    /// Encode and decode every message through bytes (slower, checks the wire path).
    pub wire: bool,
    /// Seed of all randomness.
    pub seed: u64,
    /// Record in [`SimStats::max_live_phi`] the highest phi on a live peer seen just before
    /// each round (costs a pass over every member per round).
    pub track_phi: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 10,
            seeds: 3,
            gossip: Config::default(),
            loss: 0.0,
            latency: Duration::from_millis(5),
            jitter: Duration::from_millis(5),
            wire: false,
            seed: 0,
            track_phi: false,
        }
    }
}

/// Counters over a run.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    /// Messages handed to the network.
    pub messages: u64,
    /// Messages lost, sent to a crashed node, or cut by a partition.
    pub dropped: u64,
    /// Messages a receiver rejected.
    pub rejected: u64,
    /// Encoded bytes handed to the network.
    pub bytes: u64,
    /// Encoded bytes by sender.
    pub bytes_by_node: Vec<u64>,
    /// State changes carried in deltas.
    pub changes_sent: u64,
    /// `NodeDown` about a node that was running and reachable from the observer.
    pub false_downs: u64,
    /// `NodeUp` about a node that was not running.
    pub ghost_ups: u64,
    /// `NodeUp` events.
    pub ups: u64,
    /// `StateChanged` events.
    pub state_changes: u64,
    /// With [`SimConfig::track_phi`]: the highest phi any node had for a peer it considered
    /// live and that was in fact running and reachable, just before a round.
    pub max_live_phi: f64,
}

/// A logged membership event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Virtual time.
    pub at: Duration,
    /// Index of the node that emitted it.
    pub observer: usize,
    /// The event (`NodeDown`, `NodeRestarted`, `StatusChanged` and `NodeForgotten` are logged).
    pub event: Event,
}

#[derive(Debug)]
struct SimNode {
    id: NodeId,
    address: String,
    generation: u64,
    engine: Option<Gossip>,
    timer: Option<Duration>,
}

#[derive(Debug)]
enum Payload {
    Message(Message),
    Bytes(Vec<u8>),
}

#[derive(Debug)]
struct Pending {
    at: Duration,
    seq: u64,
    from: usize,
    to: usize,
    payload: Payload,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The simulator. See the module documentation.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    now: Duration,
    nodes: Vec<SimNode>,
    by_address: HashMap<String, usize>,
    queue: BinaryHeap<Reverse<Pending>>,
    timers: BinaryHeap<Reverse<(Duration, usize)>>,
    seq: u64,
    rng: StdRng,
    groups: Vec<u32>,
    stats: SimStats,
    log: Vec<Observation>,
}

impl Sim {
    /// Builds the cluster at time zero; every node starts `Alive` and knows only the seeds.
    pub fn new(mut config: SimConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let n = config.nodes;
        let seeds = config.seeds.clamp(usize::from(n > 0), n.max(1));
        let address = |i: usize| format!("10.{}.{}.{}:7946", i >> 16, (i >> 8) & 255, i & 255);
        config.gossip.seeds = (0..seeds).map(|k| address(k * n / seeds)).collect();
        let mut sim = Self {
            now: Duration::ZERO,
            nodes: Vec::with_capacity(n),
            by_address: HashMap::with_capacity(n),
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(rng.random()),
            groups: vec![0; n],
            stats: SimStats {
                bytes_by_node: vec![0; n],
                ..SimStats::default()
            },
            log: Vec::new(),
            config,
        };
        for i in 0..n {
            let id = NodeId::new(format!("n{i:04}"));
            sim.by_address.insert(address(i), i);
            sim.nodes.push(SimNode {
                id,
                address: address(i),
                generation: 1,
                engine: None,
                timer: None,
            });
            sim.start(i);
        }
        sim
    }

    fn start(&mut self, i: usize) {
        let node = &self.nodes[i];
        let identity = Identity::new(node.id.clone(), node.generation, node.address.clone())
            .with_zone(format!("z{}", i % 3));
        let seed = self.rng.random();
        let engine = Gossip::new(
            self.config.gossip.clone(),
            identity,
            Status::Alive,
            self.now,
            seed,
        );
        self.nodes[i].engine = Some(engine);
        self.nodes[i].timer = None;
        self.after(i);
    }

    /// Current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for an empty cluster.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The settings.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> &NodeId {
        &self.nodes[i].id
    }

    /// Node `i`'s engine, unless crashed.
    pub fn engine(&self, i: usize) -> Option<&Gossip> {
        self.nodes[i].engine.as_ref()
    }

    /// Whether node `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].engine.is_some()
    }

    /// Counters so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Logged membership events so far.
    pub fn log(&self) -> &[Observation] {
        &self.log
    }

    /// Sets a key on node `i` (no-op if crashed); returns the new version.
    pub fn set(&mut self, i: usize, key: &str, value: Vec<u8>) -> Option<u64> {
        let version = self.nodes[i].engine.as_mut()?.set(key, value).ok()?;
        self.after(i);
        Some(version)
    }

    /// Announces a status on node `i`.
    pub fn set_status(&mut self, i: usize, status: Status) -> Option<u64> {
        let version = self.nodes[i].engine.as_mut()?.set_status(status).ok()?;
        self.after(i);
        Some(version)
    }

    /// Stops node `i` abruptly; messages to it are lost.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].engine = None;
        self.nodes[i].timer = None;
    }

    /// Starts node `i` again with the next generation and empty state.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].generation += 1;
        self.start(i);
    }

    /// Puts node `i` in partition group `groups[i]`; messages between groups are lost.
    pub fn partition(&mut self, groups: Vec<u32>) {
        assert_eq!(groups.len(), self.nodes.len(), "one group per node");
        self.groups = groups;
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.groups = vec![0; self.nodes.len()];
    }

    /// Runs `rounds` gossip intervals.
    pub fn run_rounds(&mut self, rounds: u32) {
        let end = self.now + self.config.gossip.gossip_interval * rounds;
        self.run_until(end);
    }

    /// Runs until virtual time `end`.
    pub fn run_until(&mut self, end: Duration) {
        loop {
            let next_message = self.queue.peek().map(|Reverse(p)| p.at);
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let timer_first = match (next_timer, next_message) {
                (Some(t), Some(m)) => t <= m,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let at = if timer_first {
                next_timer
            } else {
                next_message
            };
            if at.is_none_or(|at| at > end) {
                break;
            }
            if timer_first {
                let Some(Reverse((at, i))) = self.timers.pop() else {
                    break;
                };
                self.now = self.now.max(at);
                if self.nodes[i].timer != Some(at) {
                    continue;
                }
                self.nodes[i].timer = None;
                if self.config.track_phi {
                    self.track_phi(i);
                }
                if let Some(engine) = self.nodes[i].engine.as_mut() {
                    engine.handle_timeout(self.now);
                    self.after(i);
                }
            } else if let Some(Reverse(pending)) = self.queue.pop() {
                self.now = self.now.max(pending.at);
                self.deliver(pending);
            }
        }
        self.now = self.now.max(end);
    }

    /// Runs round by round until [`Sim::converged`], up to `max_rounds`; returns the rounds
    /// taken.
    pub fn run_until_converged(&mut self, max_rounds: u32) -> Option<u32> {
        for round in 0..=max_rounds {
            if self.converged() {
                return Some(round);
            }
            self.run_rounds(1);
        }
        None
    }

    fn track_phi(&mut self, i: usize) {
        // Only meaningful while every node runs in one partition: then every peer is truly up.
        let all_up = self.nodes.iter().all(|n| n.engine.is_some())
            && self.groups.iter().all(|g| *g == self.groups[0]);
        if let Some(engine) = self.nodes[i].engine.as_ref().filter(|_| all_up) {
            let phi = engine.max_live_phi(self.now);
            self.stats.max_live_phi = self.stats.max_live_phi.max(phi);
        }
    }

    fn deliver(&mut self, pending: Pending) {
        let to = pending.to;
        if self.groups[pending.from] != self.groups[to] {
            self.stats.dropped += 1;
            return;
        }
        let from_address = self.nodes[pending.from].address.clone();
        let now = self.now;
        let Some(engine) = self.nodes[to].engine.as_mut() else {
            self.stats.dropped += 1;
            return;
        };
        let result = match pending.payload {
            Payload::Message(message) => engine.handle_message(now, &from_address, message),
            Payload::Bytes(bytes) => engine.handle_datagram(now, &from_address, &bytes),
        };
        if result.is_err() {
            self.stats.rejected += 1;
        }
        self.after(to);
    }

    /// Drains node `i`'s transmits and events and re-arms its timer.
    fn after(&mut self, i: usize) {
        let Some(engine) = self.nodes[i].engine.as_mut() else {
            return;
        };
        let mut transmits = Vec::new();
        while let Some(t) = engine.poll_transmit() {
            transmits.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = engine.poll_event() {
            events.push(e);
        }
        let timeout = engine.poll_timeout();
        let max_bytes = engine.config().max_message_bytes;
        if timeout != self.nodes[i].timer {
            if let Some(at) = timeout {
                self.timers.push(Reverse((at, i)));
            }
            self.nodes[i].timer = timeout;
        }
        for event in events {
            self.record(i, event);
        }
        for transmit in transmits {
            self.stats.messages += 1;
            if let Body::SynAck { delta, .. } | Body::Ack { delta } = &transmit.message.body {
                self.stats.changes_sent += delta
                    .nodes
                    .iter()
                    .map(|n| n.changes.len() as u64)
                    .sum::<u64>();
            }
            let (payload, len) = if self.config.wire {
                let Ok(bytes) = transmit.message.encode(max_bytes) else {
                    self.stats.rejected += 1;
                    continue;
                };
                let len = bytes.len();
                (Payload::Bytes(bytes), len)
            } else {
                let len = transmit.message.encoded_len();
                (Payload::Message(transmit.message), len)
            };
            self.stats.bytes += len as u64;
            self.stats.bytes_by_node[i] += len as u64;
            let Some(&to) = self.by_address.get(&transmit.address) else {
                self.stats.dropped += 1;
                continue;
            };
            if self.config.loss > 0.0 && self.rng.random_bool(self.config.loss.min(1.0)) {
                self.stats.dropped += 1;
                continue;
            }
            let jitter = if self.config.jitter.is_zero() {
                Duration::ZERO
            } else {
                self.config.jitter.mul_f64(self.rng.random_range(0.0..=1.0))
            };
            self.seq += 1;
            self.queue.push(Reverse(Pending {
                at: self.now + self.config.latency + jitter,
                seq: self.seq,
                from: i,
                to,
                payload,
            }));
        }
    }

    fn record(&mut self, observer: usize, event: Event) {
        let index_of = |sim: &Self, id: &NodeId| {
            id.as_str()
                .strip_prefix('n')
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&k| k < sim.nodes.len() && sim.nodes[k].id == *id)
        };
        match &event {
            Event::NodeUp(id) => {
                self.stats.ups += 1;
                if index_of(self, id).is_some_and(|k| !self.is_running(k)) {
                    self.stats.ghost_ups += 1;
                }
                return;
            }
            Event::StateChanged { .. } => {
                self.stats.state_changes += 1;
                return;
            }
            Event::NodeDown(id) => {
                if index_of(self, id)
                    .is_some_and(|k| self.is_running(k) && self.groups[k] == self.groups[observer])
                {
                    self.stats.false_downs += 1;
                }
            }
            Event::NodeRestarted { .. } | Event::StatusChanged { .. } | Event::NodeForgotten(_) => {
            }
        }
        self.log.push(Observation {
            at: self.now,
            observer,
            event,
        });
    }

    /// True when every running node knows every other running node at its current generation
    /// and version and considers it live.
    pub fn converged(&self) -> bool {
        let running: Vec<(&NodeId, u64, u64)> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let own = n.engine.as_ref()?.member(&n.id)?;
                Some((&n.id, n.generation, own.max_version()))
            })
            .collect();
        self.nodes
            .iter()
            .filter_map(|n| n.engine.as_ref())
            .all(|engine| {
                running.iter().all(|(id, generation, version)| {
                    engine.member(id).is_some_and(|m| {
                        m.identity().generation == *generation
                            && m.max_version() == *version
                            && m.is_live()
                    })
                })
            })
    }

    /// How many running nodes other than `i` hold node `i`'s state at `version` or later.
    pub fn holders_of(&self, i: usize, version: u64) -> usize {
        let id = &self.nodes[i].id;
        let generation = self.nodes[i].generation;
        self.nodes
            .iter()
            .enumerate()
            .filter(|(k, n)| {
                *k != i
                    && n.engine.as_ref().is_some_and(|e| {
                        e.member(id).is_some_and(|m| {
                            m.identity().generation == generation && m.max_version() >= version
                        })
                    })
            })
            .count()
    }

    /// How many running nodes other than `i` there are.
    pub fn running_others(&self, i: usize) -> usize {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(k, n)| *k != i && n.engine.is_some())
            .count()
    }

    /// How many running nodes other than `i` consider node `i` down (or do not know it).
    pub fn suspecting(&self, i: usize) -> usize {
        let id = &self.nodes[i].id;
        self.nodes
            .iter()
            .enumerate()
            .filter(|(k, n)| *k != i && n.engine.as_ref().is_some_and(|e| !e.is_live(id)))
            .count()
    }
}
