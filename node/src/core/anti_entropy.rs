//! Anti-entropy (paper 4.7): replicas of a partition compare Merkle trees and exchange the keys
//! that differ, in both directions, merged as version sets (never overwritten).
//!
//! Every [`CoreConfig::anti_entropy_interval_ms`](super::CoreConfig) a node queues one exchange
//! for each partition it replicates and each other replica of it that is up, and runs at most
//! [`CoreConfig::anti_entropy_sessions`](super::CoreConfig) at once. An exchange is a
//! `dynamo-merkle` diff session (one round trip when the trees are equal), then, in batches of
//! keys: fetch the peer's versions and merge them here, then push this node's merged versions to
//! the peer (a handoff batch, which the peer merges). Tombstones travel like any version.
//!
//! This module must not know how calls travel, how the store runs the diff, or how trees are
//! kept up to date (storage updates them on every write).

use std::collections::{BTreeMap, VecDeque};

use dynamo_merkle::{DiffInitiator, Step};
use dynamo_ring::NodeId;

use super::requests::Pending;
use super::{BATCH, HANDOFF_TIMEOUT_MS, NodeCore, PEER_TIMEOUT_MS, StoreOp, StoreResult};
use crate::protocol::{Request, Response};

/// One exchange in progress.
#[derive(Debug)]
struct Exchange {
    partition: u32,
    peer: NodeId,
    /// Differing keys not fetched yet.
    keys: VecDeque<Vec<u8>>,
    /// The keys of the batch in flight.
    batch: Vec<Vec<u8>>,
}

/// The state of anti-entropy.
#[derive(Debug, Default)]
pub(super) struct AntiEntropy {
    /// When the next sweep starts, once the last one is done.
    next_sweep: Option<u64>,
    /// Exchanges of this sweep not started yet.
    queue: VecDeque<(u32, NodeId)>,
    exchanges: BTreeMap<u64, Exchange>,
    next_exchange: u64,
    /// When each (partition, peer) last agreed or was repaired.
    last_agreed: BTreeMap<(u32, NodeId), u64>,
    /// Keys repaired so far (fetched or pushed), for status and tests.
    repaired_keys: u64,
}

impl AntiEntropy {
    pub(super) fn new(now: u64, interval_ms: u64) -> Self {
        Self {
            next_sweep: (interval_ms > 0).then_some(now + interval_ms),
            ..Self::default()
        }
    }

    pub(super) fn next_due(&self) -> Option<u64> {
        if self.queue.is_empty() && self.exchanges.is_empty() {
            self.next_sweep
        } else {
            None
        }
    }
}

impl NodeCore {
    /// Keys anti-entropy has repaired since start (fetched here or pushed to a peer).
    pub fn anti_entropy_repaired_keys(&self) -> u64 {
        self.anti_entropy.repaired_keys
    }

    /// When this node last agreed with `peer` on `partition` (after a repair, or at once).
    pub fn anti_entropy_last_agreed(&self, partition: u32, peer: &NodeId) -> Option<u64> {
        self.anti_entropy
            .last_agreed
            .get(&(partition, peer.clone()))
            .copied()
    }

    /// Starts a sweep when one is due, and exchanges while there is room.
    pub(super) fn anti_entropy_tick(&mut self, now: u64) {
        let interval = self.config.anti_entropy_interval_ms;
        if interval == 0 {
            return;
        }
        let ae = &mut self.anti_entropy;
        if ae.queue.is_empty()
            && ae.exchanges.is_empty()
            && ae.next_sweep.is_some_and(|at| at <= now)
        {
            ae.next_sweep = Some(now + interval);
            let pairs = self.replica_pairs();
            self.anti_entropy.queue.extend(pairs);
        }
        while self.anti_entropy.exchanges.len() < self.config.anti_entropy_sessions.max(1) {
            let Some((partition, peer)) = self.anti_entropy.queue.pop_front() else {
                break;
            };
            if !self.is_up(&peer) {
                continue;
            }
            let id = self.anti_entropy.next_exchange;
            self.anti_entropy.next_exchange += 1;
            self.anti_entropy.exchanges.insert(
                id,
                Exchange {
                    partition,
                    peer,
                    keys: VecDeque::new(),
                    batch: Vec::new(),
                },
            );
            self.store(StoreOp::DiffStart { partition }, Pending::AeDiff(id));
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

    fn end_exchange(&mut self, now: u64, id: u64, agreed: bool) {
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
        now: u64,
        id: u64,
        result: Result<StoreResult, String>,
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
                let pending = Pending::AeDiffReply { id, session };
                self.call(now, &peer, call, PEER_TIMEOUT_MS, pending);
            }
            Step::Done(outcome) => {
                exchange.keys = outcome.differences.into_iter().map(|d| d.key).collect();
                self.anti_entropy_fetch(now, id);
            }
        }
    }

    /// The peer answered a diff step.
    pub(super) fn anti_entropy_diff_reply(
        &mut self,
        now: u64,
        id: u64,
        session: Box<DiffInitiator>,
        result: Result<Response, String>,
    ) {
        let Some(exchange) = self.anti_entropy.exchanges.get(&id) else {
            return;
        };
        match result {
            Ok(Response::Diff(reply)) => {
                let partition = exchange.partition;
                let op = StoreOp::DiffStep {
                    partition,
                    session,
                    reply,
                };
                self.store(op, Pending::AeDiff(id));
            }
            other => {
                let detail = format!("anti-entropy with {} stopped: {other:?}", exchange.peer);
                self.event(super::CoreEvent::Detail(detail));
                self.end_exchange(now, id, false);
            }
        }
    }

    /// Fetches the peer's versions of the next batch of differing keys, or ends the exchange.
    fn anti_entropy_fetch(&mut self, now: u64, id: u64) {
        let Some(exchange) = self.anti_entropy.exchanges.get_mut(&id) else {
            return;
        };
        if exchange.keys.is_empty() {
            return self.end_exchange(now, id, true);
        }
        let take = exchange.keys.len().min(BATCH);
        exchange.batch = exchange.keys.drain(..take).collect();
        let request = Request::Fetch {
            partition: exchange.partition,
            keys: exchange.batch.clone(),
        };
        let peer = exchange.peer.clone();
        self.call(now, &peer, request, PEER_TIMEOUT_MS, Pending::AeFetched(id));
    }

    /// The peer's versions arrived: merge them here.
    pub(super) fn anti_entropy_fetched(
        &mut self,
        now: u64,
        id: u64,
        result: Result<Response, String>,
    ) {
        let Some(exchange) = self.anti_entropy.exchanges.get(&id) else {
            return;
        };
        let Ok(Response::Entries(entries)) = result else {
            return self.end_exchange(now, id, false);
        };
        self.anti_entropy.repaired_keys += entries.len() as u64;
        let op = StoreOp::ApplyBatch {
            partition: exchange.partition,
            entries,
            durability: self.config.replica_durability,
        };
        self.store(op, Pending::AeApplied(id));
    }

    /// Merged here: read the merged versions to push them to the peer.
    pub(super) fn anti_entropy_applied(
        &mut self,
        now: u64,
        id: u64,
        result: Result<StoreResult, String>,
    ) {
        let Some(exchange) = self.anti_entropy.exchanges.get(&id) else {
            return;
        };
        if let Err(error) = result {
            self.problem(format!(
                "anti-entropy could not merge fetched keys: {error}"
            ));
            return self.end_exchange(now, id, false);
        }
        let op = StoreOp::GetMany {
            partition: exchange.partition,
            keys: exchange.batch.clone(),
        };
        self.store(op, Pending::AeRead(id));
    }

    /// Push this node's merged versions to the peer.
    pub(super) fn anti_entropy_read(
        &mut self,
        now: u64,
        id: u64,
        result: Result<StoreResult, String>,
    ) {
        let Some(exchange) = self.anti_entropy.exchanges.get(&id) else {
            return;
        };
        let entries = match result {
            Ok(StoreResult::Scanned(entries)) => entries,
            other => {
                self.problem(format!("anti-entropy could not read keys: {other:?}"));
                return self.end_exchange(now, id, false);
            }
        };
        if entries.is_empty() {
            return self.anti_entropy_fetch(now, id);
        }
        self.anti_entropy.repaired_keys += entries.len() as u64;
        let request = Request::Handoff {
            partition: exchange.partition,
            entries,
        };
        let peer = exchange.peer.clone();
        self.call(
            now,
            &peer,
            request,
            HANDOFF_TIMEOUT_MS,
            Pending::AePushed(id),
        );
    }

    /// The peer merged the pushed batch: on to the next one.
    pub(super) fn anti_entropy_pushed(
        &mut self,
        now: u64,
        id: u64,
        result: &Result<Response, String>,
    ) {
        if matches!(result, Ok(Response::Ack)) {
            self.anti_entropy_fetch(now, id);
        } else {
            self.end_exchange(now, id, false);
        }
    }
}
