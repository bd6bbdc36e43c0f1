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

mod backups;
pub mod check;
mod config;
mod faults;
use faults::{adds_data, clock_offset};
pub mod invariants;
pub mod network;
mod observe;
mod report;
mod workload;

use std::collections::{BTreeMap, BTreeSet};

use dynamo_core::{
    CallError, CallErrorKind, CoreConfig, CoreEvent, NodeCore, OpId, Output, RequestId, StoreError,
    StoreErrorKind, StoreOp, StoreResult, Time, execute, load_saved_state,
};
use dynamo_protocol::{BucketProps, Request, Response};
use dynamo_protocol::{PeerIdentity, Role};
use dynamo_quorum::Value;
use dynamo_storage::{MemoryStore, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use backups::Backups;
pub use check::{History, Violation};
pub use config::{Sabotage, SimConfig, shrink};
use network::Network;
pub use network::{Fault, Faults};
use observe::{describe, describe_response, describe_store_op, describe_store_result};
pub use report::{SimReport, StoreFaults};
use workload::Clients;
pub use workload::CopyReads;

/// Virtual time at which every run starts (milliseconds; far from zero like a wall clock).
const EPOCH_MS: u64 = 1_000_000;
/// How long the reaper runs after the final reads before invariant 7 is checked: more than four
/// sweeps (10 s apart), so every tombstone older than the grace period by this much must be gone.
const REAP_PHASE_MS: u64 = 45_000;
/// Events at one virtual instant beyond which the run is declared livelocked.
const LIVELOCK_EVENTS: u32 = 200_000;
/// The bucket the workload uses; created at the start, it must survive every restart.
pub const SIM_BUCKET: &str = "sim";

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
        result: Result<Response, CallError>,
    },
    /// A call's timeout.
    CallTimeout {
        node: usize,
        incarnation: u64,
        op: OpId,
    },
    /// A store operation finished; with `flush`, a durable write the lane applied buffered is
    /// made durable first (one flush of everything buffered, as the node's write lane does).
    StoreDone {
        node: usize,
        incarnation: u64,
        op: OpId,
        result: Result<StoreResult, StoreError>,
        flush: bool,
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
    /// Its disk is full: the store refuses writes that add data (issue 26).
    disk_full: bool,
    /// Its next flush fails (an fsync error).
    fail_next_flush: bool,
    /// An administrator cancels its next handoff as soon as it starts.
    cancel_next_handoff: bool,
    /// The dead member it replaces when it joins (`dynamo join --replace`).
    replaces: Option<String>,
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
    /// Backups clients completed during the run (issue 29), and how backups went.
    backups: Vec<backups::TakenBackup>,
    backup_counts: Backups,
    store_faults: report::StoreFaults,
    /// How far each node's clock runs ahead of simulated time, in milliseconds (issue 26: the
    /// tombstone grace, the bucket table's stamps and removals read clocks).
    clock_offsets: Vec<u64>,
    /// Impossible states the cores reported (`CoreEvent::Bug`), by node.
    bugs: Vec<String>,
    /// What each call in flight asked, by (node, call), when the run tells its story.
    asked: BTreeMap<(usize, OpId), String>,
    /// What each client attempt asked, when the run tells its story.
    client_asks: BTreeMap<(usize, u64), String>,
}

impl Sim {
    /// The same run, telling its story: detail lines (store operations and their results,
    /// what each answer was for) in the trace, and, with `follow`, every line naming that key
    /// kept in [`SimReport::followed`]. Events and the trace hash are those of the plain run.
    #[must_use]
    pub fn with_story(mut self, follow: Option<String>) -> Sim {
        self.trace = check::Trace::new(true, follow);
        self
    }

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
            trace: check::Trace::new(false, None),
            events: 0,
            livelock: None,
            leaves: Vec::new(),
            stand_ins_of_stopped: 0,
            backups: Vec::new(),
            backup_counts: Backups::default(),
            store_faults: report::StoreFaults::default(),
            clock_offsets: Vec::new(),
            bugs: Vec::new(),
            asked: BTreeMap::new(),
            client_asks: BTreeMap::new(),
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
            self.nodes[node].fail_next_flush = false;
            self.nodes[node].cancel_next_handoff = false;
            if self.nodes[node].disk_full {
                self.set_disk_full(node, false);
            }
        }
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
        violations.extend(self.bugs.iter().map(|bug| Violation {
            invariant: "core-bug",
            key: None,
            message: bug.clone(),
        }));
        violations.extend(invariants::convergence::check(&self.replica_view()));
        violations.extend(invariants::convergence::check_hints(&self.hints_held()));
        violations.extend(invariants::metadata::check(&self.metadata_view()));
        let finals = self.final_reads();
        violations.extend(invariants::durability::check(&self.history, &finals));
        violations.extend(invariants::concurrency::check(&self.history, &finals));
        violations.extend(invariants::deletes::check(&self.history, &finals));
        violations.extend(invariants::siblings::check(&self.history, &finals));
        let listed = self.list_keys();
        violations.extend(invariants::listing::check(&finals, listed.as_deref()));
        let exported = self.export_bucket();
        violations.extend(invariants::listing::check_export(
            &finals,
            exported.as_deref(),
        ));
        violations.extend(invariants::listing::during_run(
            self.history.listing_findings(),
        ));
        if self.config.lww_bucket {
            let mut reads = self.reads_through_every_member();
            if self.config.sabotage == Sabotage::ForgeResolution
                && let Some((_, read)) = reads.values_mut().flatten().next()
            {
                read.resolved = check::Resolved::Value(b"forged".to_vec());
            }
            violations.extend(invariants::lww::check(&reads));
        }
        if let Some(grace) = self.tombstone_grace_ms() {
            // Invariant 7: the reaper gets a few more sweeps, then no old tombstone is left.
            self.run_until(self.now + REAP_PHASE_MS);
            let deadline = self.now.saturating_sub(grace + REAP_PHASE_MS);
            violations.extend(invariants::reaping::check(&self.replica_view(), deadline));
        }
        SimReport {
            seed: self.config.seed,
            trace_hash: self.trace.hash(),
            events: self.events,
            virtual_ms: self.now - EPOCH_MS,
            acknowledged: self.history.acknowledged(),
            store_faults: self.store_faults,
            listings: self.history.listings(),
            copy_reads: self.clients.copy_reads,
            backups: self.backup_counts,
            stand_ins: self.stand_ins_of_stopped
                + self
                    .nodes
                    .iter()
                    .filter_map(|n| n.core.as_ref())
                    .map(|core| core.counters().stand_ins)
                    .sum::<u64>(),
            violations,
            trace_tail: self.trace.tail(),
            followed: self.trace.followed(),
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
                let local = self.clock_of(to);
                let node = &mut self.nodes[to];
                let id = RequestId(node.next_request);
                node.next_request += 1;
                node.routes.insert(id, route);
                if let Some(core) = &mut node.core {
                    core.handle_request(local, id, &from, request);
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
                if let Some(asked) = self.asked.remove(&(node, op)) {
                    let answer = match &result {
                        Ok(response) => describe_response(response),
                        Err(error) => format!("failed: {error}"),
                    };
                    self.trace
                        .record_detail(self.now, || format!("(answers {asked}: {answer})"));
                }
                let local = self.clock_of(node);
                if let Some(core) = &mut self.nodes[node].core {
                    core.handle_call_result(local, op, result);
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
                if let Some(asked) = self.asked.remove(&(node, op)) {
                    self.trace
                        .record_detail(self.now, || format!("(the call was {asked})"));
                }
                let local = self.clock_of(node);
                if let Some(core) = &mut self.nodes[node].core {
                    core.handle_call_result(
                        local,
                        op,
                        Err(CallError::new(CallErrorKind::Timeout, "timed out")),
                    );
                }
                self.drain(node);
            }
            Event::StoreDone {
                node,
                incarnation,
                op,
                mut result,
                flush,
            } => {
                if !self.is_running(node, incarnation) {
                    return; // a crash before the flush took the write with it
                }
                if flush && std::mem::take(&mut self.nodes[node].fail_next_flush) {
                    let message =
                        "an fsync failed (simulated): the store can no longer promise durability";
                    result = Err(StoreError::new(StoreErrorKind::Fatal, message));
                    self.store_faults.fsync_failures += 1;
                    self.supervise_after_fsync_failure(node);
                } else if flush
                    && let Some(store) = &self.nodes[node].store
                    && let Err(error) = store.flush()
                {
                    result = Err(error.into());
                }
                let local = self.clock_of(node);
                if let Some(core) = &mut self.nodes[node].core {
                    core.handle_store_result(local, op, result);
                }
                self.drain(node);
            }
            Event::Timer { node, incarnation } => {
                if !self.is_running(node, incarnation) {
                    return;
                }
                self.nodes[node].timer_at = None;
                let local = self.clock_of(node);
                // The runtime measures the disk now and then (the node: every second).
                let space = self.disk_space(node);
                if let Some(core) = &mut self.nodes[node].core {
                    core.handle_disk_space(local, space);
                    if core.poll_timeout().is_some_and(|at| at <= local) {
                        core.handle_timeout(local);
                    }
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
                    if let CoreEvent::Bug(message) = &event {
                        self.bugs
                            .push(format!("{}: {message}", self.nodes[index].name));
                    }
                    if matches!(event, CoreEvent::HandoffStarted { .. })
                        && std::mem::take(&mut self.nodes[index].cancel_next_handoff)
                    {
                        self.cancel_handoff(index);
                    }
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
        let Some(at) = node
            .core
            .as_ref()
            .and_then(NodeCore::poll_timeout)
            .map(Time::as_millis)
        else {
            return;
        };
        // The node's clock runs ahead by its offset: its deadline, in simulated time.
        let at = at.saturating_sub(self.clock_offsets[index]).max(self.now);
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
                if let Some(asked) = self.client_asks.remove(&(client, attempt)) {
                    let name = &self.nodes[index].name;
                    let answer = describe_response(&response);
                    self.trace
                        .record_detail(self.now, || format!("{name} answers {asked}: {answer}"));
                }
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
        if let Some(op) = id
            && self.trace.detailed()
        {
            let asked = format!(
                "{} {op:?} {} to {}",
                self.nodes[index].name,
                describe(request),
                self.nodes[to].name
            );
            self.asked.insert((index, op), asked);
        }
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

    /// Runs a store operation at once and reports its result a little later, so a crash can
    /// fall between the two. A durable single-key write goes through the write lane's model:
    /// applied buffered now (reads see it), made durable by a flush just before its result is
    /// reported; a crash in between takes it, even if a read returned it (issue 26).
    fn store_op(&mut self, index: usize, op: OpId, mut store_op: StoreOp) {
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
        // The store runs it at once: one line says what it was and what it gave.
        let asked = self.trace.detailed().then(|| describe_store_op(&store_op));
        let flush = store_op.take_durability();
        let result = if reaping.is_some() && self.config.sabotage == Sabotage::KeepTombstones {
            Ok(StoreResult::Reaped(false))
        } else if self.nodes[index].disk_full && adds_data(&store_op) {
            self.store_faults.refused_full += 1;
            let message = "the disk is full (simulated): nothing was written";
            Err(StoreError::new(StoreErrorKind::Full, message))
        } else {
            execute(store, store_op)
        };
        if let Some(asked) = asked {
            let name = &self.nodes[index].name;
            let answer = describe_store_result(&result);
            self.trace.record_detail(self.now, || {
                format!("{name} store {op:?} {asked} -> {answer}")
            });
        }
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
        // The lane's fsync takes a little longer than a plain operation.
        let delay = if flush { 1..=10 } else { 0..=2 };
        let at = self.now + self.rng.random_range(delay);
        let flush = flush && result.is_ok();
        self.schedule(
            at,
            Event::StoreDone {
                node: index,
                incarnation,
                op,
                result,
                flush,
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
            // Each node its own, from the run's seed and the node: the cluster settles on one.
            secret: dynamo_quorum::ContextKey::new(node_secret(self.config.seed, index)),
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
            replaces: self.nodes[index].replaces.clone(),
            tombstone_grace_ms: self.tombstone_grace_ms().unwrap_or(0),
            rejoin: false,
            stand_in_after_ms: 500,
        }
    }

    /// What node `index`'s clock reads now.
    fn clock_of(&self, index: usize) -> Time {
        let offset = self.clock_offsets.get(index).copied().unwrap_or(0);
        Time::from_millis(self.now + offset)
    }

    /// Half the seeds reap tombstones (a sweep every 10 s once they are 15 s old).
    fn tombstone_grace_ms(&self) -> Option<u64> {
        self.config.seed.is_multiple_of(2).then_some(15_000)
    }

    /// Creates a node (with an empty disk) and starts it.
    fn add_node(&mut self) -> usize {
        self.add_node_replacing(None)
    }

    /// Creates a node (with an empty disk) that, with `dead`, takes that member's place
    /// (`dynamo join --replace`), and starts it.
    fn add_node_replacing(&mut self, dead: Option<String>) -> usize {
        let index = self.nodes.len();
        self.clock_offsets
            .push(clock_offset(self.config.seed, index));
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
            disk_full: false,
            fail_next_flush: false,
            cancel_next_handoff: false,
            replaces: dead,
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
        match NodeCore::new(config, &saved, actor, self.clock_of(index), seed) {
            Ok(core) => {
                let node = &mut self.nodes[index];
                node.core = Some(core);
                node.incarnation += 1;
                node.timer_at = None;
                node.routes.clear();
                node.outstanding.clear();
                self.trace
                    .record(self.now, || format!("{} started", self.nodes[index].name));
                if self.nodes[index].disk_full {
                    self.tell_disk(index);
                }
                self.drain(index);
            }
            Err(error) => {
                self.history
                    .problem(format!("n{index} could not start: {error}"));
            }
        }
    }

    /// Lets the founding nodes agree on a ring, then creates the workload's bucket.
    fn settle_and_create_bucket(&mut self) {
        self.run_until(self.now + 15_000);
        let mut props = BucketProps::new(SIM_BUCKET);
        if self.config.lww_bucket {
            props.resolver = dynamo_resolve::Resolver::Lww;
            self.history.set_last_write_wins();
        }
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
        // A restore's merges need an operator's certificate, as `dynamo restore` does.
        let operator = matches!(request, Request::MergeVersions { .. });
        let (role, label) = if client == self.clients.admin_slot() || operator {
            (Role::Admin, "admin")
        } else {
            (Role::Client, "client")
        };
        let from = PeerIdentity {
            role,
            name: format!("{label}{client}"),
        };
        if self.trace.detailed() {
            let asked = format!("{}'s attempt {attempt}, {}", from.name, describe(&request));
            self.client_asks.insert((client, attempt), asked);
        }
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
}

/// A node's context key material in a run: drawn from the run's seed and the node's index.
fn node_secret(seed: u64, index: usize) -> [u8; 32] {
    let mut rng = StdRng::seed_from_u64(seed ^ (index as u64).rotate_left(32) ^ 0xC0_47E7);
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes);
    bytes
}
