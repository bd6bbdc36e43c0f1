//! A deterministic simulator of a whole dynamo cluster, in the spirit of `FoundationDB`'s and
//! `TigerBeetle`'s: many [`NodeCore`]s in one thread over [`MemoryStore`]s, a virtual clock, a
//! seeded RNG and a simulated network that loses, duplicates, delays and reorders messages and
//! can be cut by symmetric or one-way partitions. Nodes crash (losing buffered writes), restart,
//! lose their disks, join and leave, while clients read-modify-write with contexts,
//! blind-write and delete, and retry after timeouts. After the faults stop and the cluster is
//! given time to heal, [`invariants`] checks what must hold.
//!
//! One seed gives one run, exactly: the same seed replays the same events (the trace hash
//! says so). This module must not know how the real runtime schedules tasks, QUIC or fjall;
//! it drives the same core the runtime drives.

pub mod check;
pub mod invariants;
pub mod network;
mod workload;

use std::collections::{BTreeMap, BTreeSet};

use dynamo_core::{
    CoreConfig, NodeCore, OpId, Output, RequestId, StoreOp, StoreResult, execute, load_saved_state,
};
use dynamo_protocol::{BucketProps, Request, Response};
use dynamo_protocol::{PeerIdentity, Role};
use dynamo_quorum::Value;
use dynamo_resolve::Resolver;
use dynamo_storage::{Durability, MemoryStore, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use check::{History, Violation};
use network::Network;
pub use network::{Fault, Faults};
use workload::Clients;

/// Virtual time at which every run starts (milliseconds; far from zero like a wall clock).
const EPOCH_MS: u64 = 1_000_000;
/// Events at one virtual instant beyond which the run is declared livelocked.
const LIVELOCK_EVENTS: u32 = 200_000;
/// The bucket the workload uses; created at the start, it must survive every restart.
pub const SIM_BUCKET: &str = "sim";

/// Something the simulator does on purpose to break the system, to prove an invariant check
/// catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// Nothing: the system as built.
    None,
    /// After healing, one acknowledged write is removed from every store and hint space.
    DropAcknowledgedWrite,
    /// Reads hide one of two concurrent values from the client.
    HideSibling,
    /// After healing, one replica of one key gets an extra version the others lack.
    DivergeReplica,
    /// After healing, a value an acknowledged delete covered is written back to every replica.
    Resurrect,
    /// Reads show one value twice, as if a stale sibling survived.
    StaleSibling,
    /// Every node forgets its saved bucket table at a full-cluster restart.
    ForgetBuckets,
}

/// How one run is set up. [`SimConfig::random`] draws one from a seed.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The run's seed.
    pub seed: u64,
    /// Nodes at the start.
    pub nodes: usize,
    /// Nodes that join during the run.
    pub joins: usize,
    /// Nodes asked to leave during the run.
    pub leaves: usize,
    /// Nodes that die for good and are removed from the ring (`dynamo node remove`).
    pub retires: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations each client performs.
    pub ops_per_client: usize,
    /// Distinct keys the clients use.
    pub keys: usize,
    /// Network and node faults.
    pub faults: Faults,
    /// Faults and client operations happen in `[0, fault_window_ms)` after start.
    pub fault_window_ms: u64,
    /// Virtual time given to the cluster after faults stop, before the checks.
    pub heal_ms: u64,
    /// Durability of replica writes.
    pub replica_durability: Durability,
    /// Whether every node is stopped and restarted at once, once, mid-run.
    pub full_restart: bool,
    /// Time between anti-entropy sweeps (0: off).
    pub anti_entropy_interval_ms: u64,
    /// What to break on purpose.
    pub sabotage: Sabotage,
    /// The faults to inject, at offsets into the fault window; `None` draws them from the
    /// seed (see [`SimConfig::fault_schedule`]). Shrinking a failure edits this list.
    pub schedule: Option<Vec<(u64, Fault)>>,
}

impl SimConfig {
    /// A configuration drawn from `seed`: 3 to 5 nodes, sometimes joins and leaves, a mix of
    /// faults, and sometimes a full-cluster restart.
    pub fn random(seed: u64) -> SimConfig {
        let mut config = Self::draw(seed);
        // Durability is promised unless every copy of a write is gone. A retired node is a lost
        // disk: with a wiped disk too, or with buffered replica writes that a crash drops, it
        // could have held the last durable copy of a write acknowledged by W = 2.
        if config.replica_durability == Durability::Buffered {
            config.retires = 0;
        }
        if config.retires > 0 {
            config.faults.wipes = 0;
        }
        config
    }

    fn draw(seed: u64) -> SimConfig {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_CAFE);
        let nodes = rng.random_range(3..=5);
        let buffered = rng.random_bool(0.2);
        SimConfig {
            seed,
            nodes,
            joins: usize::from(rng.random_bool(0.3)),
            leaves: usize::from(nodes > 3 && rng.random_bool(0.3)),
            retires: usize::from(nodes > 3 && rng.random_bool(0.2)),
            clients: rng.random_range(2..=4),
            ops_per_client: rng.random_range(8..=20),
            keys: rng.random_range(3..=12),
            faults: Faults::random(&mut rng, buffered),
            fault_window_ms: 40_000,
            heal_ms: 60_000,
            replica_durability: if buffered {
                Durability::Buffered
            } else {
                Durability::Sync
            },
            full_restart: rng.random_bool(0.15),
            anti_entropy_interval_ms: 10_000,
            sabotage: Sabotage::None,
            schedule: None,
        }
    }

    /// The faults this run injects: the explicit schedule, or one drawn from the seed with an
    /// RNG of its own (so removing a fault while shrinking leaves the other draws alone).
    pub fn fault_schedule(&self) -> Vec<(u64, Fault)> {
        if let Some(schedule) = &self.schedule {
            return schedule.clone();
        }
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0xFA17_5EED);
        network::schedule(&mut rng, self, self.nodes, self.fault_window_ms)
    }
}

/// Looks for a smaller run that still breaks an invariant that must hold: faults are removed
/// one at a time, then clients' operations halved, while the failure remains. Returns the
/// smallest configuration found and its report (the original run if it did not fail).
pub fn shrink(config: SimConfig) -> (SimConfig, SimReport) {
    let fails = |config: &SimConfig| {
        let report = Sim::new(config.clone()).run();
        (!report.failures().is_empty()).then_some(report)
    };
    let mut best = config.clone();
    let Some(mut report) = fails(&best) else {
        let report = Sim::new(config.clone()).run();
        return (config, report);
    };
    best.schedule = Some(best.fault_schedule());
    let mut progress = true;
    while progress {
        progress = false;
        let faults = best.fault_schedule();
        for i in 0..faults.len() {
            let mut smaller = best.clone();
            let mut schedule = faults.clone();
            schedule.remove(i);
            smaller.schedule = Some(schedule);
            if let Some(found) = fails(&smaller) {
                (best, report, progress) = (smaller, found, true);
                break;
            }
        }
        if !progress && best.ops_per_client > 1 {
            let smaller = SimConfig {
                ops_per_client: best.ops_per_client / 2,
                ..best.clone()
            };
            if let Some(found) = fails(&smaller) {
                (best, report, progress) = (smaller, found, true);
            }
        }
    }
    (best, report)
}

/// Where an answer to a request a node received goes.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// Back to a peer's call.
    Peer {
        node: usize,
        incarnation: u64,
        op: OpId,
    },
    /// To a client's request.
    Client { client: usize, attempt: u64 },
    /// Nobody waits (gossip).
    Nobody,
}

/// A scheduled event.
#[derive(Debug)]
enum Event {
    /// A request reaches a node.
    Request {
        to: usize,
        incarnation: u64,
        from: PeerIdentity,
        route: Route,
        request: Request,
    },
    /// A peer's answer reaches a node.
    Reply {
        node: usize,
        incarnation: u64,
        op: OpId,
        result: Result<Response, String>,
    },
    /// A call's timeout.
    CallTimeout {
        node: usize,
        incarnation: u64,
        op: OpId,
    },
    /// A store operation finished.
    StoreDone {
        node: usize,
        incarnation: u64,
        op: OpId,
        result: Result<StoreResult, String>,
    },
    /// A node's timer.
    Timer { node: usize, incarnation: u64 },
    /// A client acts.
    ClientWake { client: usize },
    /// An answer reaches a client.
    ClientReply {
        client: usize,
        attempt: u64,
        response: Response,
    },
    /// A client gives up waiting.
    ClientTimeout { client: usize, attempt: u64 },
    /// A fault or a membership change.
    Fault(network::Fault),
}

/// One simulated node.
struct SimNode {
    name: String,
    address: String,
    /// Present while the node runs.
    core: Option<NodeCore>,
    /// The node's disk (kept while it is down).
    store: Option<MemoryStore<Value>>,
    /// Bumped at every start, so events for an earlier life are dropped.
    incarnation: u64,
    next_request: u64,
    routes: BTreeMap<RequestId, Route>,
    outstanding: BTreeSet<OpId>,
    /// The earliest timer event already scheduled for this incarnation.
    timer_at: Option<u64>,
}

/// The outcome of one run.
#[derive(Debug)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Hash of every event processed: equal for equal runs.
    pub trace_hash: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated, in milliseconds.
    pub virtual_ms: u64,
    /// Client operations acknowledged.
    pub acknowledged: usize,
    /// Replica requests sent to a spare in place of a silent or failed replica (paper 4.6).
    pub stand_ins: u64,
    /// What every invariant found.
    pub violations: Vec<Violation>,
    /// The last events, for a failure report.
    pub trace_tail: Vec<String>,
    /// The configuration.
    pub config: SimConfig,
}

impl SimReport {
    /// Violations of invariants that must hold (not those marked expected to fail).
    pub fn failures(&self) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| !invariants::expected_to_fail(v.invariant))
            .collect()
    }
}

/// The simulated world.
pub struct Sim {
    config: SimConfig,
    now: u64,
    seq: u64,
    rng: StdRng,
    queue: BTreeMap<(u64, u64), Event>,
    nodes: Vec<SimNode>,
    network: Network,
    clients: Clients,
    history: History,
    trace: check::Trace,
    events: u64,
    /// The event that was repeating when virtual time stopped moving.
    livelock: Option<String>,
    /// Leave requests sent: (admin attempt, node).
    leaves: Vec<(u64, usize)>,
    /// Stand-ins (paper 4.6) counted by nodes that have stopped since.
    stand_ins_of_stopped: u64,
}

impl Sim {
    /// A world for `config`; nothing runs until [`Sim::run`].
    pub fn new(config: SimConfig) -> Sim {
        let rng = StdRng::seed_from_u64(config.seed);
        let network = Network::new(config.faults.clone());
        let clients = Clients::new(config.clients, config.ops_per_client, config.keys);
        Sim {
            now: EPOCH_MS,
            seq: 0,
            rng,
            queue: BTreeMap::new(),
            nodes: Vec::new(),
            network,
            clients,
            history: History::default(),
            trace: check::Trace::default(),
            events: 0,
            livelock: None,
            leaves: Vec::new(),
            stand_ins_of_stopped: 0,
            config,
        }
    }

    /// Runs the whole scenario and checks the invariants.
    pub fn run(mut self) -> SimReport {
        for _ in 0..self.config.nodes {
            self.add_node();
        }
        self.settle_and_create_bucket();
        let start = self.now;
        let window = self.config.fault_window_ms;
        for (at, fault) in self.config.fault_schedule() {
            self.schedule(start + at, Event::Fault(fault));
        }
        for client in 0..self.config.clients {
            let at = start + self.rng.random_range(0..500);
            self.schedule(at, Event::ClientWake { client });
        }
        self.run_until(start + window);
        // Faults stop: heal the network, bring every node back, let the clients finish.
        self.network.heal();
        self.clients.stop_new_operations();
        for node in 0..self.nodes.len() {
            if self.nodes[node].core.is_none() && !self.network.is_removed(node) {
                self.start_node(node, false);
            }
        }
        self.remove_retired_nodes();
        self.run_until(self.now + self.config.heal_ms);
        self.sabotage_after_heal();
        let mut violations = Vec::new();
        if let Some(event) = &self.livelock {
            violations.push(Violation {
                invariant: "liveness",
                key: None,
                message: format!(
                    "virtual time stopped moving; the last event repeated was {event}"
                ),
            });
        }
        violations.extend(invariants::convergence::check(&self.replica_view()));
        violations.extend(invariants::convergence::check_hints(&self.hints_held()));
        violations.extend(invariants::metadata::check(&self.metadata_view()));
        let finals = self.final_reads();
        violations.extend(invariants::durability::check(&self.history, &finals));
        violations.extend(invariants::concurrency::check(&self.history, &finals));
        violations.extend(invariants::deletes::check(&self.history, &finals));
        violations.extend(invariants::siblings::check(&self.history, &finals));
        SimReport {
            seed: self.config.seed,
            trace_hash: self.trace.hash(),
            events: self.events,
            virtual_ms: self.now - EPOCH_MS,
            acknowledged: self.history.acknowledged(),
            stand_ins: self.stand_ins_of_stopped
                + self
                    .nodes
                    .iter()
                    .filter_map(|n| n.core.as_ref())
                    .map(|core| core.counters().stand_ins)
                    .sum::<u64>(),
            violations,
            trace_tail: self.trace.tail(),
            config: self.config,
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), event);
    }

    /// Processes events until virtual time `until`. Virtual time that stops moving (a node
    /// that keeps asking to be woken at the same instant) is a livelock, reported as such.
    fn run_until(&mut self, until: u64) {
        let mut same_instant = 0_u32;
        while let Some(entry) = self.queue.first_entry() {
            let (at, _) = *entry.key();
            if at > until {
                break;
            }
            let event = entry.remove();
            same_instant = if at == self.now { same_instant + 1 } else { 0 };
            if same_instant > LIVELOCK_EVENTS {
                self.livelock = Some(format!("{event:?}").chars().take(300).collect());
                self.queue.clear();
                break;
            }
            self.now = at;
            self.events += 1;
            self.process(event);
        }
        self.now = self.now.max(until);
    }

    fn process(&mut self, event: Event) {
        match event {
            Event::Request {
                to,
                incarnation,
                from,
                route,
                request,
            } => {
                if !self.is_running(to, incarnation) {
                    return;
                }
                self.trace.record(self.now, || {
                    format!(
                        "{} <- {} {}",
                        self.nodes[to].name,
                        from.name,
                        describe(&request)
                    )
                });
                let node = &mut self.nodes[to];
                let id = RequestId(node.next_request);
                node.next_request += 1;
                node.routes.insert(id, route);
                if let Some(core) = &mut node.core {
                    core.handle_request(self.now, id, &from, request);
                }
                self.drain(to);
            }
            Event::Reply {
                node,
                incarnation,
                op,
                result,
            } => {
                if !self.is_running(node, incarnation) || !self.nodes[node].outstanding.remove(&op)
                {
                    return;
                }
                self.trace.record(self.now, || {
                    format!(
                        "{} reply {op:?} ok={}",
                        self.nodes[node].name,
                        result.is_ok()
                    )
                });
                if let Some(core) = &mut self.nodes[node].core {
                    core.handle_call_result(self.now, op, result);
                }
                self.drain(node);
            }
            Event::CallTimeout {
                node,
                incarnation,
                op,
            } => {
                if !self.is_running(node, incarnation) || !self.nodes[node].outstanding.remove(&op)
                {
                    return;
                }
                self.trace.record(self.now, || {
                    format!("{} call {op:?} timed out", self.nodes[node].name)
                });
                if let Some(core) = &mut self.nodes[node].core {
                    core.handle_call_result(self.now, op, Err("timed out".into()));
                }
                self.drain(node);
            }
            Event::StoreDone {
                node,
                incarnation,
                op,
                result,
            } => {
                if !self.is_running(node, incarnation) {
                    return;
                }
                if let Some(core) = &mut self.nodes[node].core {
                    core.handle_store_result(self.now, op, result);
                }
                self.drain(node);
            }
            Event::Timer { node, incarnation } => {
                if !self.is_running(node, incarnation) {
                    return;
                }
                self.nodes[node].timer_at = None;
                if let Some(core) = &mut self.nodes[node].core
                    && core.poll_timeout().is_some_and(|at| at <= self.now)
                {
                    core.handle_timeout(self.now);
                }
                self.drain(node);
            }
            Event::ClientWake { client } => self.client_wake(client),
            Event::ClientReply {
                client,
                attempt,
                response,
            } => self.client_reply(client, attempt, Some(response)),
            Event::ClientTimeout { client, attempt } => self.client_reply(client, attempt, None),
            Event::Fault(fault) => self.apply_fault(fault),
        }
    }

    fn is_running(&self, node: usize, incarnation: u64) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.core.is_some() && n.incarnation == incarnation)
    }

    /// Carries out every output of node `index`'s core.
    fn drain(&mut self, index: usize) {
        while let Some(output) = self.nodes[index]
            .core
            .as_mut()
            .and_then(NodeCore::poll_output)
        {
            match output {
                Output::Respond { id, response } => self.respond(index, id, response),
                Output::Call {
                    id,
                    address,
                    request,
                    timeout_ms,
                } => self.call(index, id, &address, &request, timeout_ms),
                Output::Store { id, op } => self.store_op(index, id, op),
                Output::Event(event) => {
                    self.trace.record(self.now, || {
                        format!("{} event {event:?}", self.nodes[index].name)
                    });
                }
            }
        }
        self.arm_timer(index);
    }

    fn arm_timer(&mut self, index: usize) {
        let node = &self.nodes[index];
        let Some(at) = node.core.as_ref().and_then(NodeCore::poll_timeout) else {
            return;
        };
        let at = at.max(self.now);
        if node.timer_at.is_some_and(|armed| armed <= at) {
            return;
        }
        let incarnation = node.incarnation;
        self.nodes[index].timer_at = Some(at);
        self.schedule(
            at,
            Event::Timer {
                node: index,
                incarnation,
            },
        );
    }

    fn respond(&mut self, index: usize, id: RequestId, response: Response) {
        let Some(route) = self.nodes[index].routes.remove(&id) else {
            return;
        };
        match route {
            Route::Peer {
                node,
                incarnation,
                op,
            } => {
                for at in self
                    .network
                    .deliveries(&mut self.rng, self.now, index, node)
                {
                    let result = Ok(response.clone());
                    self.schedule(
                        at,
                        Event::Reply {
                            node,
                            incarnation,
                            op,
                            result,
                        },
                    );
                }
            }
            Route::Client { client, attempt } => {
                let response = self.sabotage_read(response);
                let at = self.now + self.network.client_latency(&mut self.rng);
                self.schedule(
                    at,
                    Event::ClientReply {
                        client,
                        attempt,
                        response,
                    },
                );
            }
            Route::Nobody => {}
        }
    }

    fn call(
        &mut self,
        index: usize,
        id: Option<OpId>,
        address: &str,
        request: &Request,
        timeout_ms: u64,
    ) {
        let incarnation = self.nodes[index].incarnation;
        if let Some(op) = id {
            self.nodes[index].outstanding.insert(op);
            self.schedule(
                self.now + timeout_ms,
                Event::CallTimeout {
                    node: index,
                    incarnation,
                    op,
                },
            );
        }
        let Some(to) = self.nodes.iter().position(|n| n.address == address) else {
            return;
        };
        let route = match id {
            Some(op) => Route::Peer {
                node: index,
                incarnation,
                op,
            },
            None => Route::Nobody,
        };
        let from = PeerIdentity {
            role: Role::Node,
            name: self.nodes[index].name.clone(),
        };
        let to_incarnation = self.nodes[to].incarnation;
        for at in self.network.deliveries(&mut self.rng, self.now, index, to) {
            self.schedule(
                at,
                Event::Request {
                    to,
                    incarnation: to_incarnation,
                    from: from.clone(),
                    route,
                    request: request.clone(),
                },
            );
        }
    }

    /// Runs a store operation at once (its effect is on the disk from now on) and reports
    /// its result a little later, so a crash can fall between the two.
    fn store_op(&mut self, index: usize, op: OpId, store_op: StoreOp) {
        let Some(store) = &self.nodes[index].store else {
            return;
        };
        // A coordinator write: the store picks the dot's actor (a key incarnation), so the dot
        // is the one live version the set before the write had not seen.
        let written = match &store_op {
            StoreOp::Update {
                partition,
                key,
                value,
                ..
            } => {
                let before = store.get(*partition, key).ok().flatten();
                Some((key.clone(), value.clone(), before))
            }
            _ => None,
        };
        let reaping = match &store_op {
            StoreOp::RemoveIfEqual { key, expected, .. } => Some((key.clone(), expected.context())),
            _ => None,
        };
        let result = execute(store, store_op);
        if let (Some((key, clock)), Ok(StoreResult::Reaped(true))) = (reaping, &result) {
            self.history.observe_reap(&key, clock);
        }
        if let (Some((key, value, before)), Ok(StoreResult::Stored(object))) = (written, &result) {
            let seen = before.map(|b| b.context()).unwrap_or_default();
            if let Some((actor, counter, _)) = object.iter().find(|(a, n, _)| seen.get(a) < *n) {
                self.history
                    .observe_coordinated_write(&key, (actor, counter), &value, object);
            }
        }
        let incarnation = self.nodes[index].incarnation;
        let at = self.now + self.rng.random_range(0..=2);
        self.schedule(
            at,
            Event::StoreDone {
                node: index,
                incarnation,
                op,
                result,
            },
        );
    }

    fn store_options(&self, index: usize) -> StoreOptions {
        StoreOptions::new(self.nodes[index].name.clone(), self.now)
    }

    fn core_config(&self, index: usize, founder: bool) -> CoreConfig {
        let seeds = if founder {
            Vec::new()
        } else {
            self.nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, n)| n.address.clone())
                .collect()
        };
        CoreConfig {
            name: self.nodes[index].name.clone(),
            address: self.nodes[index].address.clone(),
            zone: "sim".into(),
            capacity: 1,
            seeds,
            cluster: "sim".into(),
            partitions: 16,
            target_n: 3,
            request_timeout_ms: 3_000,
            max_value_bytes: 1024,
            gossip_interval_ms: 1_000,
            replica_durability: self.config.replica_durability,
            anti_entropy_interval_ms: self.config.anti_entropy_interval_ms,
            anti_entropy_sessions: 2,
            anti_entropy_bytes_per_sec: 64 * 1024,
            // One, two or three transfers at once, by seed.
            handoff_concurrency: 1 + (self.config.seed % 3) as usize,
            // Half the seeds reap tombstones (a sweep every 10 s once they are 15 s old).
            replaces: None,
            tombstone_grace_ms: if self.config.seed.is_multiple_of(2) {
                15_000
            } else {
                0
            },
            rejoin: false,
            stand_in_after_ms: 500,
        }
    }

    /// Creates a node (with an empty disk) and starts it.
    fn add_node(&mut self) -> usize {
        let index = self.nodes.len();
        self.nodes.push(SimNode {
            name: format!("n{index}"),
            address: format!("sim-{index}"),
            core: None,
            store: None,
            incarnation: 0,
            next_request: 0,
            routes: BTreeMap::new(),
            outstanding: BTreeSet::new(),
            timer_at: None,
        });
        let options = self.store_options(index);
        self.nodes[index].store = MemoryStore::open(&options).ok();
        self.start_node(index, index == 0);
        index
    }

    /// Starts node `index` on its disk.
    fn start_node(&mut self, index: usize, founder: bool) {
        let Some(store) = &self.nodes[index].store else {
            return;
        };
        let mut saved = load_saved_state(store).unwrap_or_default();
        if self.config.sabotage == Sabotage::ForgetBuckets && self.network.restarted_all() {
            saved.buckets = None;
        }
        let actor = store.actor();
        let config = self.core_config(index, founder);
        let seed = self.rng.random();
        match NodeCore::new(config, &saved, actor, self.now, seed) {
            Ok(core) => {
                let node = &mut self.nodes[index];
                node.core = Some(core);
                node.incarnation += 1;
                node.timer_at = None;
                node.routes.clear();
                node.outstanding.clear();
                self.trace
                    .record(self.now, || format!("{} started", self.nodes[index].name));
                self.drain(index);
            }
            Err(error) => {
                self.history
                    .problem(format!("n{index} could not start: {error}"));
            }
        }
    }

    /// Stops node `index` abruptly: buffered writes are lost; with `wipe`, the whole disk.
    fn crash_node(&mut self, index: usize, wipe: bool) {
        let node = &mut self.nodes[index];
        if let Some(core) = node.core.take() {
            self.stand_ins_of_stopped += core.counters().stand_ins;
        }
        let options = StoreOptions::new(node.name.clone(), self.now);
        node.store = node.store.take().and_then(|store| {
            if wipe {
                store.wipe(&options).ok()
            } else {
                store.crash(&options).ok()
            }
        });
        let name = node.name.clone();
        self.trace.record(self.now, || {
            format!(
                "{name} crashed{}",
                if wipe { " and lost its disk" } else { "" }
            )
        });
    }

    /// Makes sure every retired node is out of the ring (its removal may have been asked for
    /// while it still looked up, or been lost): an administrator retries until it is done.
    fn remove_retired_nodes(&mut self) {
        for node in self.network.retired() {
            let name = self.nodes[node].name.clone();
            for attempt in 0..20 {
                let in_ring = self.nodes.iter().any(|n| {
                    n.core.as_ref().is_some_and(|c| {
                        c.ring().is_some_and(|r| {
                            r.member(&dynamo_ring::NodeId::from(name.as_str()))
                                .is_some()
                        })
                    })
                });
                if !in_ring {
                    break;
                }
                let running: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].core.is_some())
                    .collect();
                let Some(&target) = running.get(attempt % running.len().max(1)) else {
                    break;
                };
                let request = Request::RemoveNode { name: name.clone() };
                if !matches!(self.admin_request(target, request), Some(Response::Ring(_))) {
                    self.run_until(self.now + 2_000);
                }
            }
        }
    }

    /// Lets the founding nodes agree on a ring, then creates the workload's bucket.
    fn settle_and_create_bucket(&mut self) {
        self.run_until(self.now + 15_000);
        let props = BucketProps {
            name: SIM_BUCKET.into(),
            n: 3,
            r: 2,
            w: 2,
            pr: 0,
            pw: 0,
            resolver: Resolver::Siblings,
        };
        for attempt in 0..10 {
            let target = attempt % self.nodes.len();
            let answer = self.admin_request(target, Request::CreateBucket(props.clone()));
            if matches!(answer, Some(Response::Ack)) {
                self.history.bucket_created(props);
                return;
            }
        }
        self.history
            .problem("the workload bucket could not be created".into());
    }

    /// Sends an administrator's request to node `target` and runs until it is answered.
    fn admin_request(&mut self, target: usize, request: Request) -> Option<Response> {
        let client = self.clients.admin_slot();
        let attempt = self.clients.begin_admin();
        self.send_client_request(client, attempt, target, request);
        let deadline = self.now + 10_000;
        while self.now < deadline {
            if let Some(response) = self.clients.take_admin_answer(attempt) {
                return Some(response);
            }
            let Some((&(at, _), _)) = self.queue.first_key_value() else {
                break;
            };
            self.run_until(at);
        }
        self.clients.take_admin_answer(attempt)
    }

    /// Puts a client request on the wire to node `target`.
    fn send_client_request(
        &mut self,
        client: usize,
        attempt: u64,
        target: usize,
        request: Request,
    ) {
        let (role, label) = if client == self.clients.admin_slot() {
            (Role::Admin, "admin")
        } else {
            (Role::Client, "client")
        };
        let from = PeerIdentity {
            role,
            name: format!("{label}{client}"),
        };
        let incarnation = self.nodes[target].incarnation;
        let at = self.now + self.network.client_latency(&mut self.rng);
        self.schedule(
            at,
            Event::Request {
                to: target,
                incarnation,
                from,
                route: Route::Client { client, attempt },
                request,
            },
        );
        self.schedule(
            self.now + workload::CLIENT_TIMEOUT_MS,
            Event::ClientTimeout { client, attempt },
        );
    }

    fn apply_fault(&mut self, fault: network::Fault) {
        self.trace.record(self.now, || format!("fault {fault:?}"));
        match fault {
            network::Fault::Crash { node } => {
                if self.nodes.get(node).is_some_and(|n| n.core.is_some()) {
                    self.crash_node(node, false);
                }
            }
            network::Fault::Wipe { node } => {
                if self.nodes.get(node).is_some_and(|n| n.core.is_some()) {
                    self.crash_node(node, true);
                    // A node that lost its disk forgot that it left; it comes back as new.
                    self.leaves.retain(|(_, left)| *left != node);
                }
            }
            network::Fault::Restart { node } => {
                if self.nodes.get(node).is_some_and(|n| n.core.is_none())
                    && !self.network.is_removed(node)
                {
                    self.start_node(node, false);
                }
            }
            network::Fault::CrashAll => {
                for node in 0..self.nodes.len() {
                    if self.nodes[node].core.is_some() {
                        self.crash_node(node, false);
                    }
                }
                self.network.note_restart_all();
            }
            network::Fault::RestartAll => {
                for node in 0..self.nodes.len() {
                    if self.nodes[node].core.is_none() && !self.network.is_removed(node) {
                        self.start_node(node, false);
                    }
                }
            }
            network::Fault::Join => {
                self.add_node();
            }
            network::Fault::Retire { node } => {
                if self.nodes.get(node).is_some_and(|n| n.core.is_some()) {
                    self.crash_node(node, false);
                }
                self.network.retire(node);
            }
            network::Fault::Remove { node } => {
                let name = self.nodes[node].name.clone();
                if let Some(target) = (0..self.nodes.len()).find(|&i| self.nodes[i].core.is_some())
                {
                    let client = self.clients.admin_slot();
                    let attempt = self.clients.begin_admin();
                    self.send_client_request(client, attempt, target, Request::RemoveNode { name });
                }
            }
            network::Fault::Leave { node } => {
                let running: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].core.is_some())
                    .collect();
                if running.len() > 3
                    && let Some(&target) = running.get(node % running.len())
                {
                    let client = self.clients.admin_slot();
                    let attempt = self.clients.begin_admin();
                    self.send_client_request(client, attempt, target, Request::Leave);
                    self.leaves.push((attempt, target));
                }
            }
            other => self.network.apply(other),
        }
    }

    /// Every replica's stored set of every key the workload wrote, by key.
    fn replica_view(&self) -> invariants::convergence::ReplicaView {
        let mut view = invariants::convergence::ReplicaView::default();
        let Some(ring) = self
            .nodes
            .iter()
            .find_map(|n| n.core.as_ref()?.ring().cloned())
        else {
            return view;
        };
        for key in self.history.keys() {
            let skey = dynamo_protocol::storage_key(SIM_BUCKET, key);
            let partition = ring.partition_of_key(&skey);
            for replica in ring.preference_list(&skey, 3) {
                let stored = self
                    .nodes
                    .iter()
                    .find(|n| n.name == replica.as_str())
                    .and_then(|n| n.store.as_ref())
                    .and_then(|s| s.get(partition, &skey).ok().flatten());
                view.add(key.clone(), replica.to_string(), stored);
            }
        }
        view
    }

    /// The hints every running node still holds, by owner.
    fn hints_held(&self) -> Vec<(String, Vec<(String, usize)>)> {
        self.nodes
            .iter()
            .filter(|n| n.core.is_some())
            .filter_map(|n| {
                let store = n.store.as_ref()?;
                let owners = store.hint_owners().ok()?;
                let counts = owners
                    .into_iter()
                    .map(|owner| {
                        let count = store.pending_hints(&owner).unwrap_or(0);
                        (owner, count)
                    })
                    .collect();
                Some((n.name.clone(), counts))
            })
            .collect()
    }

    /// What every running node holds of the cluster metadata.
    fn metadata_view(&mut self) -> invariants::metadata::MetadataView {
        let mut view = invariants::metadata::MetadataView {
            created: self.history.buckets().to_vec(),
            nodes: Vec::new(),
            left: Vec::new(),
        };
        for (attempt, node) in self.leaves.clone() {
            if matches!(self.clients.take_admin_answer(attempt), Some(Response::Ack)) {
                view.left.push(self.nodes[node].name.clone());
            }
        }
        for node in &self.nodes {
            if let Some(core) = &node.core {
                let in_ring = core.ring().is_some_and(|r| r.member(core.id()).is_some());
                view.nodes.push(invariants::metadata::NodeMetadata {
                    name: node.name.clone(),
                    status: core.status().map(|s| format!("{s:?}")),
                    in_ring,
                    ring: core.ring().map(|r| (r.version(), postcard_digest(r))),
                    buckets: core.buckets().cloned().collect(),
                });
            }
        }
        view
    }

    /// Reads every key the workload wrote with R = N through a ring member, after healing.
    fn final_reads(&mut self) -> BTreeMap<Vec<u8>, check::ReadResult> {
        let mut finals = BTreeMap::new();
        let members: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i]
                    .core
                    .as_ref()
                    .is_some_and(|c| c.ring().is_some_and(|r| r.member(c.id()).is_some()))
            })
            .collect();
        if members.is_empty() {
            self.history
                .problem("no ring member is running after healing".into());
            return finals;
        }
        let keys: Vec<Vec<u8>> = self.history.keys().cloned().collect();
        for (i, key) in keys.into_iter().enumerate() {
            let target = members[i % members.len()];
            // Every replica: N, or fewer when removals left fewer members than N.
            let replicas = self.nodes[target]
                .core
                .as_ref()
                .and_then(|c| c.ring().map(|r| r.members().len()))
                .unwrap_or(3)
                .min(3);
            let request = Request::Get {
                bucket: SIM_BUCKET.into(),
                key: key.clone(),
                options: dynamo_protocol::RequestOptions {
                    r: Some(replicas),
                    ..Default::default()
                },
            };
            match self.admin_request(target, request) {
                Some(response) => match check::ReadResult::from_response(&key, &response) {
                    Some(read) => {
                        finals.insert(key, read);
                    }
                    None => self.history.problem(format!(
                        "final read of {:?} failed: {response:?}",
                        String::from_utf8_lossy(&key)
                    )),
                },
                None => self.history.problem(format!(
                    "final read of {:?} got no answer",
                    String::from_utf8_lossy(&key)
                )),
            }
        }
        finals
    }
}

impl Sim {
    /// Breaks a healed cluster on purpose (see [`Sabotage`]).
    fn sabotage_after_heal(&mut self) {
        match self.config.sabotage {
            Sabotage::DropAcknowledgedWrite => {
                let victim = self
                    .history
                    .writes()
                    .iter()
                    .find(|w| w.acknowledged && w.value.is_some())
                    .map(|w| w.key.clone());
                if let Some(key) = victim {
                    self.on_every_store(&key, |store, partition, skey| {
                        if let Ok(Some(current)) = store.get(partition, skey) {
                            let _ =
                                store.remove_if_equal(partition, skey, &current, Durability::Sync);
                        }
                    });
                }
            }
            Sabotage::DivergeReplica => {
                let key = self.history.keys().next().cloned();
                let stray = dynamo_vclock::DvvSet::new(
                    &dynamo_vclock::Actor::new("saboteur#1"),
                    Value::Data(b"stray".to_vec()),
                    self.now,
                );
                if let (Some(key), Some(node)) = (key, self.nodes.first()) {
                    let skey = dynamo_protocol::storage_key(SIM_BUCKET, &key);
                    if let (Some(store), Some(ring)) =
                        (&node.store, node.core.as_ref().and_then(NodeCore::ring))
                    {
                        let partition = ring.partition_of_key(&skey);
                        let _ = store.apply(partition, &skey, &stray, Durability::Sync);
                    }
                }
            }
            Sabotage::Resurrect => {
                // A value an acknowledged delete had read, written back everywhere as it was.
                let victim = self.history.writes().iter().find_map(|delete| {
                    if !delete.acknowledged || delete.value.is_some() {
                        return None;
                    }
                    self.history.writes().iter().find_map(|w| {
                        (w.key == delete.key
                            && w.value.is_some()
                            && w.fully_seen_by(&delete.context))
                        .then(|| (w.key.clone(), w.stored.clone()))
                    })
                });
                if let Some((key, Some(old))) = victim {
                    self.on_every_store(&key, |store, partition, skey| {
                        if let Ok(Some(current)) = store.get(partition, skey) {
                            let _ =
                                store.remove_if_equal(partition, skey, &current, Durability::Sync);
                        }
                        let _ = store.apply(partition, skey, &old, Durability::Sync);
                    });
                }
            }
            _ => {}
        }
    }

    /// Runs `action` on every node's store for `key` of the workload's bucket.
    fn on_every_store(&self, key: &[u8], action: impl Fn(&MemoryStore<Value>, u32, &[u8])) {
        let skey = dynamo_protocol::storage_key(SIM_BUCKET, key);
        let Some(ring) = self
            .nodes
            .iter()
            .find_map(|n| n.core.as_ref()?.ring().cloned())
        else {
            return;
        };
        let partition = ring.partition_of_key(&skey);
        for node in &self.nodes {
            if let Some(store) = &node.store {
                action(store, partition, &skey);
            }
        }
    }

    /// Alters an answer to a client's read on purpose (see [`Sabotage`]).
    fn sabotage_read(&self, response: Response) -> Response {
        match (self.config.sabotage, response) {
            (Sabotage::HideSibling, Response::Get(mut reply)) if !reply.values.is_empty() => {
                reply.values.remove(0);
                Response::Get(reply)
            }
            (Sabotage::StaleSibling, Response::Get(mut reply)) if !reply.values.is_empty() => {
                let first = reply.values[0].clone();
                reply.values.push(first);
                Response::Get(reply)
            }
            (_, response) => response,
        }
    }
}

/// A short description of a request for the trace.
fn describe(request: &Request) -> String {
    match request {
        Request::Get { key, .. } => format!("get {}", String::from_utf8_lossy(key)),
        Request::Put { key, value, .. } => format!(
            "put {} {}",
            String::from_utf8_lossy(key),
            value
                .as_deref()
                .map_or("<delete>".into(), |v| String::from_utf8_lossy(v)
                    .into_owned())
        ),
        Request::Replica { partition, request } => format!("replica p{partition} {request:?}")
            .chars()
            .take(120)
            .collect(),
        Request::Gossip { .. } => "gossip".into(),
        Request::DeliverHint { partition, .. } => format!("hint p{partition}"),
        Request::Handoff { partition, entries } => {
            format!("handoff p{partition} {} keys", entries.len())
        }
        other => format!("{other:?}").chars().take(80).collect(),
    }
}

fn postcard_digest(ring: &dynamo_ring::Ring) -> u128 {
    postcard::to_allocvec(ring).map_or(0, |bytes| dynamo_ring::key_position(&bytes))
}
