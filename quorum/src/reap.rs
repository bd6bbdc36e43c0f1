//! Reaping tombstones: a delete leaves a tombstone, and the key is removed for good only when
//! every one of its N primaries holds exactly the same tombstone, it is older than a grace
//! period, and every other node answers that it holds no version of the key outside the
//! replicas (no hint, no copy waiting for handoff). Any doubt (a node down or silent,
//! different versions, a live sibling, a recent tombstone, a hint somewhere) keeps the
//! tombstone: deleted data must never come back. (Riak's history has the anomaly this guards
//! against: a hint delivered after the reap brought the deleted value back.)
//!
//! The reap itself is a compare-and-delete on each replica ([`ReplicaRequest::Reap`]), so a
//! write racing the reap survives. This module must not know how replicas store keys.

use std::collections::VecDeque;

use dynamo_ring::NodeId;

use crate::coordinate::Coordinate;
use crate::message::{Command, ReplicaReply, ReplicaRequest, Response};
use crate::value::{Object, is_deleted, newest_write_ms};

/// A request to reap `key`.
#[derive(Debug, Clone)]
pub struct ReapRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The key's N primaries (not fallbacks): all must hold the tombstone.
    pub primaries: Vec<NodeId>,
    /// Every other node that may hold versions of the key (all other members of the ring):
    /// all must answer that they hold none outside the replicas.
    pub others: Vec<NodeId>,
    /// The newest tombstone timestamp must be at least this old (milliseconds, in the same
    /// clock as the timestamps the coordinators wrote with).
    pub grace_ms: u64,
    /// How long to wait for the primaries.
    pub timeout_ms: u64,
}

/// How a reap attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReapOutcome {
    /// Every primary removed the key.
    Reaped,
    /// The tombstone stays, for the reason given.
    Kept(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reading,
    Reaping,
    Done,
}

/// The state machine of one reap attempt.
#[derive(Debug)]
pub struct ReapCoordinator {
    request: ReapRequest,
    deadline_ms: u64,
    phase: Phase,
    read: Vec<Option<Object>>,
    /// Which of `others` answered that they hold nothing.
    clear: Vec<bool>,
    reaped: Vec<Option<bool>>,
    commands: VecDeque<Command>,
}

impl ReapCoordinator {
    /// Starts a reap at time `now`: a read to every primary.
    pub fn new(now: u64, request: ReapRequest) -> Self {
        let reads = request.primaries.iter().map(|node| Command::Send {
            to: node.clone(),
            request: ReplicaRequest::ReadSynced {
                key: request.key.clone(),
            },
        });
        let holdings = request.others.iter().map(|node| Command::Send {
            to: node.clone(),
            request: ReplicaRequest::Holdings {
                key: request.key.clone(),
            },
        });
        let commands = reads.chain(holdings).collect();
        let count = request.primaries.len();
        let mut coordinator = Self {
            deadline_ms: now.saturating_add(request.timeout_ms),
            phase: Phase::Reading,
            read: vec![None; count],
            clear: vec![false; request.others.len()],
            reaped: vec![None; count],
            request,
            commands,
        };
        if count == 0 {
            coordinator.finish(ReapOutcome::Kept("no primaries".into()));
        }
        coordinator
    }

    fn handle_holdings(&mut self, now: u64, from: &NodeId, reply: ReplicaReply) {
        let Some(index) = self.request.others.iter().position(|n| n == from) else {
            return;
        };
        if self.phase != Phase::Reading {
            return;
        }
        match reply {
            ReplicaReply::NotFound => {
                self.clear[index] = true;
                self.maybe_reap(now);
            }
            ReplicaReply::Found(_) => self.finish(ReapOutcome::Kept(format!(
                "{from} still holds versions of the key (a hint or a copy not handed off yet)"
            ))),
            ReplicaReply::Failed(reason) => {
                self.finish(ReapOutcome::Kept(format!("{from} failed: {reason}")));
            }
            other => self.finish(ReapOutcome::Kept(format!(
                "unexpected reply from {from}: {other:?}"
            ))),
        }
    }

    fn maybe_reap(&mut self, now: u64) {
        if self.read.iter().any(Option::is_none) || self.clear.iter().any(|c| !c) {
            return;
        }
        let objects: Vec<&Object> = self.read.iter().flatten().collect();
        let Some(first) = objects.first().copied() else {
            return;
        };
        if !objects.iter().all(|o| *o == first) {
            return self.finish(ReapOutcome::Kept(
                "primaries hold different versions".into(),
            ));
        }
        if !is_deleted(first) {
            return self.finish(ReapOutcome::Kept("the key has live values".into()));
        }
        if now.saturating_sub(newest_write_ms(first)) < self.request.grace_ms {
            return self.finish(ReapOutcome::Kept(
                "the tombstone is younger than the grace period".into(),
            ));
        }
        self.phase = Phase::Reaping;
        for node in &self.request.primaries {
            self.commands.push_back(Command::Send {
                to: node.clone(),
                request: ReplicaRequest::Reap {
                    key: self.request.key.clone(),
                    expected: first.clone(),
                },
            });
        }
    }

    fn finish(&mut self, outcome: ReapOutcome) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        self.commands
            .push_back(Command::Respond(Response::Reap(outcome)));
    }
}

impl Coordinate for ReapCoordinator {
    /// A primary's answer (to the read, then to the reap), or another node's answer about
    /// what it holds.
    fn handle_reply(&mut self, now: u64, from: &NodeId, reply: ReplicaReply) {
        let Some(index) = self.request.primaries.iter().position(|n| n == from) else {
            return self.handle_holdings(now, from, reply);
        };
        match (self.phase, reply) {
            (Phase::Reading, ReplicaReply::Found(object)) => {
                if self.read[index].is_none() {
                    self.read[index] = Some(object);
                }
                self.maybe_reap(now);
            }
            (Phase::Reading, ReplicaReply::NotFound) => {
                self.finish(ReapOutcome::Kept(format!(
                    "{from} does not hold the tombstone"
                )));
            }
            (Phase::Reaping, ReplicaReply::Reaped(done)) => {
                if self.reaped[index].is_none() {
                    self.reaped[index] = Some(done);
                }
                if self.reaped.iter().all(Option::is_some) {
                    let all = self.reaped.iter().all(|r| *r == Some(true));
                    self.finish(if all {
                        ReapOutcome::Reaped
                    } else {
                        ReapOutcome::Kept("a write raced the reap on some primary".into())
                    });
                }
            }
            (Phase::Done, _) => {}
            (_, ReplicaReply::Failed(reason)) => {
                self.finish(ReapOutcome::Kept(format!("{from} failed: {reason}")));
            }
            (_, other) => {
                self.finish(ReapOutcome::Kept(format!(
                    "unexpected reply from {from}: {other:?}"
                )));
            }
        }
    }

    /// Gives up at the deadline; the tombstone stays.
    fn handle_timeout(&mut self, now: u64) {
        if self.phase != Phase::Done && now >= self.deadline_ms {
            self.finish(ReapOutcome::Kept("a primary did not answer in time".into()));
        }
    }

    /// When to call [`Self::handle_timeout`] next.
    fn poll_timeout(&self) -> Option<u64> {
        (self.phase != Phase::Done).then_some(self.deadline_ms)
    }

    /// The next effect to carry out.
    fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// Whether the attempt is over.
    fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }
}
