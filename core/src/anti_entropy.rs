//! Anti-entropy (paper 4.7): replicas of a partition compare Merkle trees and exchange the keys
//! that differ, in both directions, merged as version sets (never overwritten).
//!
//! Every [`CoreConfig::anti_entropy_interval_ms`](super::CoreConfig) a node queues one exchange
//! for each partition it replicates and each other replica of it that is up, in a random order,
//! and runs at most [`CoreConfig::anti_entropy_sessions`](super::CoreConfig) at once. An exchange
//! is a `dynamo-merkle` diff session (one round trip when the trees are equal), then, in batches
//! of differing keys, a fetch of the peer's versions, merged here. Exchanges only pull: the peer
//! pulls what it lacks in its own sweep, so keys move both ways, and a replica that lost its
//! data is refilled about once rather than once by every other replica (each pushing what it
//! has at the same time): a wiped replica of 100,000 keys of 1 KiB took 1.11 times the data
//! and 27 s (`cargo run --release -p dynamo-tests --example ae_refill 100000`). Tombstones
//! travel like any version.
//!
//! Exchanges are rate-limited by the [admission controller](super::admission) (paper 6.5): the
//! versions they move draw on a rate that adapts to foreground latency, at most
//! [`CoreConfig::anti_entropy_bytes_per_sec`](super::CoreConfig); a batch, and a new exchange,
//! waits while the controller says so.
//!
//! This module must not know how calls travel, how the store runs the diff, or how trees are
//! kept up to date (storage updates them on every write).

use std::collections::{BTreeMap, VecDeque};

use dynamo_merkle::{DiffInitiator, Step};
use dynamo_ring::NodeId;

use super::admission::Admission;
use super::{
    BATCH, CallError, ExchangeId, NodeCore, PEER_TIMEOUT_MS, StoreError, StoreOp, StoreResult, Time,
};
use dynamo_protocol::{Request, Response};

/// What an anti-entropy call answers.
#[derive(Debug)]
pub(super) enum AfterCall {
    /// The peer's answer to a diff step of exchange `id`.
    DiffReply {
        id: ExchangeId,
        session: Box<DiffInitiator>,
    },
    /// The peer's versions of differing keys.
    Fetched(ExchangeId),
}

/// What an anti-entropy store operation answers.
#[derive(Debug, Clone, Copy)]
pub(super) enum AfterStore {
    /// A diff session started or moved here.
    Diff(ExchangeId),
    /// Fetched versions merged here.
    Applied(ExchangeId),
}

/// What one diff round trip is charged to the rate limit, besides its reply's bytes.
const DIFF_ROUND_TRIP_BYTES: u64 = 4 * 1024;

/// One exchange in progress.
#[derive(Debug)]
struct Exchange {
    partition: u32,
    peer: NodeId,
    /// Differing keys not fetched yet.
    keys: VecDeque<Vec<u8>>,
    /// The keys of the batch in flight.
    batch: Vec<Vec<u8>>,
    /// Set while the next batch waits for the admission controller.
    resume_at: Option<Time>,
}

/// Encoded size of a batch of versions.
fn entries_bytes(entries: &[(Vec<u8>, dynamo_quorum::Object)]) -> u64 {
    entries
        .iter()
        .map(|(key, object)| super::store_ops::entry_bytes(key, object) as u64)
        .sum()
}

/// The state of anti-entropy.
#[derive(Debug)]
pub(super) struct AntiEntropy {
    /// When the next sweep starts, once the last one is done.
    next_sweep: Option<Time>,
    /// Exchanges of this sweep not started yet.
    queue: VecDeque<(u32, NodeId)>,
    exchanges: BTreeMap<ExchangeId, Exchange>,
    next_exchange: u64,
    /// When each (partition, peer) last agreed or was repaired.
    last_agreed: BTreeMap<(u32, NodeId), Time>,
    /// Keys repaired so far (fetched or pushed), for status and tests.
    repaired_keys: u64,
    /// Bytes of versions moved so far.
    bytes_moved: u64,
    admission: Admission,
    /// When to try starting exchanges again after the admission controller held them back.
    retry_start_at: Option<Time>,
    /// State of the sweep-order RNG (splitmix64, seeded by the core's seed).
    random: u64,
}

impl AntiEntropy {
    pub(super) fn new(now: Time, interval_ms: u64, bytes_per_sec: u64, seed: u64) -> Self {
        Self {
            random: seed,
            next_sweep: (interval_ms > 0).then_some(now + interval_ms),
            queue: VecDeque::new(),
            exchanges: BTreeMap::new(),
            next_exchange: 0,
            last_agreed: BTreeMap::new(),
            repaired_keys: 0,
            bytes_moved: 0,
            admission: Admission::new(now.as_millis(), bytes_per_sec),
            retry_start_at: None,
        }
    }

    /// A client request answered at `now` took `latency_ms` (the admission controller's
    /// measure of the foreground).
    pub(super) fn observe_client(&mut self, now: Time, latency_ms: u64) {
        self.admission.observe(now.as_millis(), latency_ms);
    }

    /// The next pseudo-random number (splitmix64): deterministic from the core's seed.
    fn next_random(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Versions moved (fetched or pushed): they draw on the rate limit and count for status.
    fn count_moved(&mut self, now: Time, entries: &[(Vec<u8>, dynamo_quorum::Object)]) {
        let bytes = entries_bytes(entries);
        self.admission.moved(now.as_millis(), bytes);
        self.bytes_moved += bytes;
        self.repaired_keys += entries.len() as u64;
    }

    /// Whether a batch fetched for `key` of `partition` may still be merged here (it was asked
    /// for and not yet applied, as far as this node knows).
    pub(super) fn fetching(&self, partition: u32, key: &[u8]) -> bool {
        self.exchanges
            .values()
            .any(|e| e.partition == partition && e.batch.iter().any(|k| k == key))
    }

    pub(super) fn next_due(&self) -> Option<Time> {
        let resumes = self.exchanges.values().filter_map(|e| e.resume_at).min();
        let sweep = if self.queue.is_empty() && self.exchanges.is_empty() {
            self.next_sweep
        } else {
            None
        };
        [resumes, sweep, self.retry_start_at]
            .into_iter()
            .flatten()
            .min()
    }
}

impl NodeCore {
    /// Keys anti-entropy has repaired since start (fetched here or pushed to a peer).
    pub fn anti_entropy_repaired_keys(&self) -> u64 {
        self.anti_entropy.repaired_keys
    }

    /// When this node last agreed with `peer` on `partition` (after a repair, or at once).
    pub fn anti_entropy_last_agreed(&self, partition: u32, peer: &NodeId) -> Option<Time> {
        self.anti_entropy
            .last_agreed
            .get(&(partition, peer.clone()))
            .copied()
    }

    /// What anti-entropy is doing, for `dynamo status`.
    pub(super) fn anti_entropy_status(&self, now: Time) -> dynamo_protocol::AntiEntropyStatus {
        let sync = |partition: u32, peer: &NodeId| dynamo_protocol::PartitionSync {
            partition,
            peer: peer.to_string(),
            agreed_ms_ago: self
                .anti_entropy_last_agreed(partition, peer)
                .map(|at| now.saturating_since(at)),
        };
        dynamo_protocol::AntiEntropyStatus {
            enabled: self.config.anti_entropy_interval_ms > 0,
            interval_ms: self.config.anti_entropy_interval_ms,
            pairs: self
                .replica_pairs()
                .iter()
                .map(|(partition, peer)| sync(*partition, peer))
                .collect(),
            in_progress: self
                .anti_entropy
                .exchanges
                .values()
                .map(|e| sync(e.partition, &e.peer))
                .collect(),
            repaired_keys: self.anti_entropy.repaired_keys,
            bytes_moved: self.anti_entropy.bytes_moved,
            throttled: self.anti_entropy.admission.throttled(now.as_millis()),
            allowed_bytes_per_sec: self.anti_entropy.admission.allowed_rate(),
        }
    }

    /// Starts a sweep when one is due, and exchanges while there is room; resumes batches that
    /// waited for the rate limit.
    pub(super) fn anti_entropy_tick(&mut self, now: Time) {
        let interval = self.config.anti_entropy_interval_ms;
        if interval == 0 {
            return;
        }
        let resumed: Vec<ExchangeId> = self
            .anti_entropy
            .exchanges
            .iter()
            .filter(|(_, e)| e.resume_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in resumed {
            if let Some(exchange) = self.anti_entropy.exchanges.get_mut(&id) {
                exchange.resume_at = None;
            }
            self.anti_entropy_fetch(now, id);
        }
        self.anti_entropy.retry_start_at = None;
        if let Some(later) = self.anti_entropy.admission.admit(now.as_millis()) {
            let later = Time::from_millis(later);
            // Paper 6.5: no new background work while the controller holds it back; a sweep
            // that was due waits too (else it would be due again at once, forever).
            self.anti_entropy.retry_start_at = Some(later);
            if let Some(at) = &mut self.anti_entropy.next_sweep {
                *at = (*at).max(later);
            }
            return;
        }
        let ae = &mut self.anti_entropy;
        if ae.queue.is_empty()
            && ae.exchanges.is_empty()
            && ae.next_sweep.is_some_and(|at| at <= now)
        {
            ae.next_sweep = Some(now + interval);
            // A random order per sweep: replicas that sweep at the same time then rarely repair
            // the same partition of a peer at once (which would move its keys twice); the later
            // exchange finds the trees equal in one round trip.
            let mut pairs = self.replica_pairs();
            for i in (1..pairs.len()).rev() {
                let j = (self.anti_entropy.next_random() % (i as u64 + 1)) as usize;
                pairs.swap(i, j);
            }
            self.anti_entropy.queue.extend(pairs);
        }
        while self.anti_entropy.exchanges.len() < self.config.anti_entropy_sessions.max(1) {
            let Some((partition, peer)) = self.anti_entropy.queue.pop_front() else {
                break;
            };
            // A full disk (here or there) takes no repairs; the exchange waits for room.
            if !self.takes_writes(&peer) || self.disk.full {
                continue;
            }
            let id = ExchangeId(self.anti_entropy.next_exchange);
            self.anti_entropy.next_exchange += 1;
            self.anti_entropy.exchanges.insert(
                id,
                Exchange {
                    partition,
                    peer,
                    keys: VecDeque::new(),
                    batch: Vec::new(),
                    resume_at: None,
                },
            );
            self.store(StoreOp::DiffStart { partition }, AfterStore::Diff(id));
        }
    }

    /// Every (partition, other replica) pair of the partitions this node replicates.
    fn replica_pairs(&self) -> Vec<(u32, NodeId)> {
        let Some(ring) = &self.ring else {
            return Vec::new();
        };
        let mut pairs = Vec::new();
        for partition in 0..ring.partition_count() {
            let replicas = ring.replicas_of_partition(partition, ring.target_n());
            if !replicas.contains(&&self.me) {
                continue;
            }
            for peer in replicas {
                if *peer != self.me {
                    pairs.push((partition, peer.clone()));
                }
            }
        }
        pairs
    }

    fn end_exchange(&mut self, now: Time, id: ExchangeId, agreed: bool) {
        if let Some(exchange) = self.anti_entropy.exchanges.remove(&id)
            && agreed
        {
            self.anti_entropy
                .last_agreed
                .insert((exchange.partition, exchange.peer), now);
        }
        self.anti_entropy_tick(now);
    }

    /// The diff session moved: send its next request, or start repairing what it found.
    pub(super) fn anti_entropy_diff(
        &mut self,
        now: Time,
        id: ExchangeId,
        result: Result<StoreResult, StoreError>,
    ) {
        let (session, step) = match result {
            Ok(StoreResult::DiffStarted(session, request)) => (session, Step::Send(request)),
            Ok(StoreResult::DiffStepped(session, step)) => (session, step),
            other => {
                self.problem(format!("anti-entropy diff failed: {other:?}"));
                return self.end_exchange(now, id, false);
            }
        };
        let Some(exchange) = self.anti_entropy.exchanges.get_mut(&id) else {
            return;
        };
        match step {
            Step::Send(request) => {
                let (partition, peer) = (exchange.partition, exchange.peer.clone());
                let call = Request::Diff { partition, request };
                let pending = AfterCall::DiffReply { id, session };
                self.call(now, &peer, call, PEER_TIMEOUT_MS, pending);
            }
            Step::Done(outcome) => {
                // Only keys the peer holds are worth fetching; what it lacks it pulls from
                // here in its own sweep.
                exchange.keys = outcome
                    .differences
                    .into_iter()
                    .filter(|d| d.remote.is_some())
                    .map(|d| d.key)
                    .collect();
                self.anti_entropy_fetch(now, id);
            }
        }
    }

    /// The peer answered a diff step.
    pub(super) fn anti_entropy_diff_reply(
        &mut self,
        now: Time,
        id: ExchangeId,
        session: Box<DiffInitiator>,
        result: Result<Response, CallError>,
    ) {
        let Some(exchange) = self.anti_entropy.exchanges.get(&id) else {
            return;
        };
        match result {
            Ok(Response::Diff(reply)) => {
                let partition = exchange.partition;
                // A round trip costs the nodes about as much as moving a small batch, however
                // few bytes it carries: the controller counts it, so a sweep of many equal
                // trees is paced too.
                let bytes = postcard::experimental::serialized_size(&reply).map_or(0, |n| n as u64);
                self.anti_entropy
                    .admission
                    .moved(now.as_millis(), bytes + DIFF_ROUND_TRIP_BYTES);
                let op = StoreOp::DiffStep {
                    partition,
                    session,
                    reply,
                };
                self.store(op, AfterStore::Diff(id));
            }
            other => {
                let detail = format!("anti-entropy with {} stopped: {other:?}", exchange.peer);
                self.event(super::CoreEvent::Detail(detail));
                self.end_exchange(now, id, false);
            }
        }
    }

    /// Fetches the peer's versions of the next batch of differing keys (once the rate limit and
    /// the foreground load allow), or ends the exchange.
    fn anti_entropy_fetch(&mut self, now: Time, id: ExchangeId) {
        let Some(exchange) = self.anti_entropy.exchanges.get_mut(&id) else {
            return;
        };
        if exchange.keys.is_empty() {
            return self.end_exchange(now, id, true);
        }
        if let Some(at) = self.anti_entropy.admission.admit(now.as_millis()) {
            exchange.resume_at = Some(Time::from_millis(at));
            return;
        }
        let take = exchange.keys.len().min(BATCH);
        exchange.batch = exchange.keys.drain(..take).collect();
        let request = Request::Fetch {
            partition: exchange.partition,
            keys: exchange.batch.clone(),
        };
        let peer = exchange.peer.clone();
        self.anti_entropy
            .admission
            .sent((now + PEER_TIMEOUT_MS).as_millis());
        self.call(now, &peer, request, PEER_TIMEOUT_MS, AfterCall::Fetched(id));
    }

    /// The peer's versions arrived: merge them here.
    pub(super) fn anti_entropy_fetched(
        &mut self,
        now: Time,
        id: ExchangeId,
        result: Result<Response, CallError>,
    ) {
        let Some(partition) = self.anti_entropy.exchanges.get(&id).map(|e| e.partition) else {
            return;
        };
        let Ok(Response::Entries(entries)) = result else {
            return self.end_exchange(now, id, false);
        };
        self.anti_entropy.count_moved(now, &entries);
        // Buffered, not fsynced: a repair acknowledges nothing to anyone, and the peer keeps its
        // durable copy, so what a power loss takes from here the next sweep brings back. (The
        // reaper syncs before it believes a replica holds a tombstone.) Foreground writes then
        // do not wait behind a repair's fsync.
        let op = StoreOp::ApplyBatch {
            partition,
            entries,
            durability: dynamo_storage::Durability::Buffered,
        };
        self.store(op, AfterStore::Applied(id));
    }

    /// Merged here: on to the next batch.
    pub(super) fn anti_entropy_applied(
        &mut self,
        now: Time,
        id: ExchangeId,
        result: Result<StoreResult, StoreError>,
    ) {
        if let Err(error) = result {
            self.problem(format!(
                "anti-entropy could not merge fetched keys: {error}"
            ));
            return self.end_exchange(now, id, false);
        }
        self.anti_entropy_fetch(now, id);
    }
}

impl NodeCore {
    /// A peer answered an exchange's call (or did not).
    pub(super) fn anti_entropy_call_answered(
        &mut self,
        now: Time,
        after: AfterCall,
        result: Result<Response, CallError>,
    ) {
        match after {
            AfterCall::DiffReply { id, session } => {
                self.anti_entropy_diff_reply(now, id, session, result);
            }
            AfterCall::Fetched(id) => self.anti_entropy_fetched(now, id, result),
        }
    }

    /// An exchange's store operation finished.
    pub(super) fn anti_entropy_store_done(
        &mut self,
        now: Time,
        after: AfterStore,
        result: Result<StoreResult, StoreError>,
    ) {
        match after {
            AfterStore::Diff(id) => self.anti_entropy_diff(now, id, result),
            AfterStore::Applied(id) => self.anti_entropy_applied(now, id, result),
        }
    }
}
