//! Reaping tombstones (deletes are tombstones, paper 4.4): a periodic sweep over the partitions
//! this node is the first replica of finds keys whose every version is a tombstone older than
//! the grace period, and runs a `dynamo-quorum` [`ReapCoordinator`] for each, one at a time.
//!
//! The coordinator removes a key only when every replica of its partition holds exactly the
//! same tombstone and every other member of the ring answers that it holds no version of the
//! key outside the replicas (no hint, no copy waiting for handoff). A sweep starts only while
//! every member of the ring is up, and every other node except those that left (a node says
//! `Left` only once it holds nothing), and this node has no handoff queued or running, so a node
//! that cannot answer (and may hold a hint) never lets a tombstone go: a hint delivered after a
//! reap would bring the deleted value back (Riak's history has that anomaly). After a reap the
//! key has no history on any replica; a later write starts a new key incarnation
//! (`dynamo_storage::key_actor`), so no dot is minted twice.
//!
//! This module must not know how calls travel or how the store runs.

use std::collections::VecDeque;

use dynamo_quorum::{ReapCoordinator, ReapOutcome, ReapRequest, is_deleted, newest_write_ms};
use dynamo_ring::NodeId;

use super::coordinate::{Coordinator, Machine};
use super::{BATCH, NodeCore, PEER_TIMEOUT_MS, StoreError, StoreOp, StoreResult, Time};

/// What the reaper's store operation answers.
#[derive(Debug, Clone, Copy)]
pub(super) enum AfterStore {
    /// A partition scanned for old tombstones.
    Scanned,
}

/// Shortest time between two sweeps.
const MIN_SWEEP_INTERVAL_MS: u64 = 10_000;
/// Longest time between two sweeps.
const MAX_SWEEP_INTERVAL_MS: u64 = 600_000;

/// Counts of the reaper's work since the node started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReaperCounts {
    /// Keys removed for good.
    pub(super) reaped: u64,
    /// Reap attempts that kept the tombstone.
    pub(super) kept: u64,
}

/// The state of tombstone reaping.
#[derive(Debug, Default)]
pub(super) struct Reaper {
    /// When the next sweep starts (none while one runs, or when reaping is off).
    next_sweep: Option<Time>,
    /// Partitions still to sweep, the current one first.
    partitions: VecDeque<u32>,
    /// Where the scan of the current partition continues.
    after: Option<Vec<u8>>,
    /// Whether the current partition's scan reached its end.
    scanned_all: bool,
    /// Tombstoned keys found by the last scan, to reap.
    candidates: VecDeque<Vec<u8>>,
    /// A scan or a reap is in flight.
    busy: bool,
    counts: ReaperCounts,
    /// Why the last attempt kept its tombstone.
    last_kept: Option<String>,
}

impl Reaper {
    pub(super) fn new(now: Time, grace_ms: u64) -> Self {
        Self {
            next_sweep: (grace_ms > 0).then(|| now + sweep_interval(grace_ms)),
            ..Self::default()
        }
    }

    pub(super) fn next_due(&self) -> Option<Time> {
        self.next_sweep
    }
}

/// Time between sweeps: a quarter of the grace period, within bounds.
fn sweep_interval(grace_ms: u64) -> u64 {
    (grace_ms / 4).clamp(MIN_SWEEP_INTERVAL_MS, MAX_SWEEP_INTERVAL_MS)
}

impl NodeCore {
    /// What `dynamo status` shows of reaping.
    pub(super) fn reaper_status(&self) -> dynamo_protocol::ReaperStatus {
        dynamo_protocol::ReaperStatus {
            grace_ms: self.config.tombstone_grace_ms,
            reaped: self.reaper.counts.reaped,
            kept: self.reaper.counts.kept,
        }
    }

    /// Starts a sweep when one is due and the cluster allows it.
    pub(super) fn reaper_tick(&mut self, now: Time) {
        let grace = self.config.tombstone_grace_ms;
        if grace == 0 || self.reaper.next_sweep.is_none_or(|at| at > now) {
            return;
        }
        self.reaper.next_sweep = Some(now + sweep_interval(grace));
        let Some(ring) = &self.ring else { return };
        let members_up = ring.members().iter().all(|m| self.is_up(&m.id));
        // A leaving node is out of the ring but holds copies until they are fully replicated;
        // a member removed for good answers for nothing (its requests are refused).
        let others_up = self.gossip.members().all(|m| {
            m.is_live()
                || m.status() == dynamo_gossip::Status::Left
                || self.is_removed_member(m.id())
        });
        if !members_up || !others_up || self.handoffs.pending() {
            return; // a node that cannot answer may hold a hint; try at the next sweep
        }
        self.reaper.partitions = (0..ring.partition_count())
            .filter(|&p| {
                ring.replicas_of_partition(p, ring.target_n())
                    .first()
                    .is_some_and(|first| **first == self.me)
            })
            .collect();
        self.reaper.next_sweep = None;
        self.reaper.after = None;
        self.reaper.scanned_all = false;
        self.reap_next(now);
    }

    /// Reaps the next candidate, scans further, or ends the sweep.
    fn reap_next(&mut self, now: Time) {
        if self.reaper.busy {
            return;
        }
        let Some(&partition) = self.reaper.partitions.front() else {
            return self.end_sweep(now);
        };
        if let Some(key) = self.reaper.candidates.pop_front() {
            return self.start_reap(now, partition, key);
        }
        if self.reaper.scanned_all {
            self.reaper.partitions.pop_front();
            self.reaper.after = None;
            self.reaper.scanned_all = false;
            return self.reap_next(now);
        }
        self.reaper.busy = true;
        let op = StoreOp::Scan {
            partition,
            after: self.reaper.after.clone(),
            limit: BATCH,
        };
        self.store(op, AfterStore::Scanned);
    }

    fn end_sweep(&mut self, now: Time) {
        self.reaper.next_sweep = Some(now + sweep_interval(self.config.tombstone_grace_ms));
        if let Some(reason) = self.reaper.last_kept.take() {
            let counts = self.reaper.counts;
            self.event(super::CoreEvent::Detail(format!(
                "tombstone sweep done: {} reaped, {} kept so far (last kept because {reason})",
                counts.reaped, counts.kept
            )));
        }
    }

    pub(super) fn reaper_scanned(&mut self, now: Time, result: Result<StoreResult, StoreError>) {
        self.reaper.busy = false;
        let grace = self.config.tombstone_grace_ms;
        match result {
            Ok(StoreResult::Scanned(entries)) => {
                self.reaper.scanned_all = entries.len() < BATCH;
                self.reaper.after = entries.last().map(|(key, _)| key.clone());
                let old = |object: &dynamo_quorum::Object| {
                    now.as_millis().saturating_sub(newest_write_ms(object)) >= grace
                };
                self.reaper.candidates = entries
                    .into_iter()
                    .filter(|(_, object)| is_deleted(object) && old(object))
                    .map(|(key, _)| key)
                    .collect();
            }
            other => {
                self.problem(format!("tombstone sweep could not scan: {other:?}"));
                self.reaper.partitions.clear();
                self.reaper.candidates.clear();
            }
        }
        self.reap_next(now);
    }

    fn start_reap(&mut self, now: Time, partition: u32, key: Vec<u8>) {
        let Some(ring) = &self.ring else {
            return self.end_sweep(now);
        };
        let primaries: Vec<NodeId> = ring
            .replicas_of_partition(partition, ring.target_n())
            .into_iter()
            .cloned()
            .collect();
        // Every other ring member, and every node out of the ring that is up (a leaving node,
        // or one that left and still runs): a node that left holds nothing once `Left`.
        let mut others: Vec<NodeId> = ring
            .members()
            .iter()
            .map(|m| m.id.clone())
            .filter(|id| !primaries.contains(id))
            .collect();
        for member in self.gossip.members() {
            let id = NodeId::from(member.id().as_str());
            if member.is_live()
                && id != self.me
                && !primaries.contains(&id)
                && !others.contains(&id)
            {
                others.push(id);
            }
        }
        let request = ReapRequest {
            key: key.clone(),
            primaries,
            others,
            grace_ms: self.config.tombstone_grace_ms,
            timeout_ms: PEER_TIMEOUT_MS,
        };
        self.reaper.busy = true;
        let machine = Machine::Reap(ReapCoordinator::new(now.as_millis(), request));
        self.start_coordinator(now, Coordinator::background(machine, partition, key, now));
    }

    /// A reap attempt ended.
    pub(super) fn reap_finished(&mut self, now: Time, outcome: ReapOutcome) {
        self.reaper.busy = false;
        match outcome {
            ReapOutcome::Reaped => self.reaper.counts.reaped += 1,
            ReapOutcome::Kept(reason) => {
                self.reaper.counts.kept += 1;
                self.reaper.last_kept = Some(reason);
            }
        }
        self.reap_next(now);
    }
}

impl NodeCore {
    /// A store operation of the reaper finished.
    pub(super) fn reaper_store_done(
        &mut self,
        now: Time,
        after: AfterStore,
        result: Result<StoreResult, StoreError>,
    ) {
        let AfterStore::Scanned = after;
        self.reaper_scanned(now, result);
    }
}
