//! The get coordinator, paper sections 4.5 and 5: ask the N targets, answer after R replies
//! with every version that no other version supersedes, then repair the replicas that answered
//! with something strictly older (or nothing) once every target answered or the deadline passed.
//!
//! `notfound_ok` and `basic_quorum` follow Riak: with `notfound_ok` a "not found" counts towards
//! R; without it, it does not, and `basic_quorum` answers "not found" early once a majority of
//! the N replicas said not found or failed. This module must not know how replies arrive.

use std::collections::VecDeque;

use dynamo_ring::{NodeId, Target};
use dynamo_vclock::VClock;

use crate::config::Quorum;
use crate::coordinate::Coordinate;
use crate::error::QuorumError;
use crate::message::{Command, ReplicaReply, ReplicaRequest, Response};
use crate::tally::{Answer, StandIns, Tally};
use crate::value::{Object, is_deleted, live_values};

/// A client's get.
#[derive(Debug, Clone)]
pub struct GetRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The key's extended preference list (paper 4.6).
    pub targets: Vec<Target>,
    /// Who replaces a target that fails or stays silent (paper 4.6).
    pub stand_ins: StandIns,
    /// N, R, PR, `notfound_ok`, `basic_quorum` for this request.
    pub quorum: Quorum,
    /// How long the client waits at most.
    pub timeout_ms: u64,
}

/// A successful get: the reconciled versions, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetOk {
    /// The join of every version the answering replicas hold (dominated versions dropped), or
    /// `None` when none of them holds the key.
    pub object: Option<Object>,
    /// Replies that counted towards R when the client was answered.
    pub replies: usize,
}

impl GetOk {
    /// Whether the key exists: some sibling is not a tombstone.
    pub fn found(&self) -> bool {
        self.object.as_ref().is_some_and(|o| !is_deleted(o))
    }

    /// The data siblings (empty when not found or deleted).
    pub fn values(&self) -> Vec<&[u8]> {
        self.object.as_ref().map(live_values).unwrap_or_default()
    }

    /// The causal context to write with: it supersedes every version returned, tombstones
    /// included (empty when nothing was found).
    pub fn context(&self) -> VClock {
        self.object
            .as_ref()
            .map(Object::context)
            .unwrap_or_default()
    }
}

/// A replica's answer about the key.
#[derive(Debug, Clone)]
enum Heard {
    NotFound,
    Found(Object),
}

/// The state machine of one get; see the module docs.
#[derive(Debug)]
pub struct GetCoordinator {
    key: Vec<u8>,
    quorum: Quorum,
    started_ms: u64,
    deadline_ms: u64,
    tally: Tally,
    /// What each target answered with, by target position (`None`: failed or silent).
    heard: Vec<Option<Heard>>,
    responded: bool,
    finished: bool,
    commands: VecDeque<Command>,
}

impl GetCoordinator {
    /// Starts a get at time `now`: a read request to every target.
    pub fn new(now: u64, request: GetRequest) -> Result<Self, QuorumError> {
        let quorum = request.quorum;
        quorum.validate()?;
        let tally = Tally::new(request.targets, request.stand_ins, now);
        tally.check_available(quorum.r, quorum.pr)?;
        let commands = tally
            .targets()
            .iter()
            .map(|t| Command::Send {
                to: t.node.clone(),
                request: ReplicaRequest::Read {
                    key: request.key.clone(),
                },
            })
            .collect();
        Ok(Self {
            heard: vec![None; tally.targets().len()],
            key: request.key,
            quorum,
            started_ms: now,
            deadline_ms: now.saturating_add(request.timeout_ms),
            tally,
            responded: false,
            finished: false,
            commands,
        })
    }

    /// Paper 4.6: the read goes to the next spare node in place of the target at `index`
    /// (which failed, or is silent past the stand-in delay); a spare holding a hint for the
    /// key answers with it.
    fn stand_in_for(&mut self, index: usize, now: u64) {
        if let Some(target) = self.tally.stand_in_for(index, now) {
            self.heard.push(None);
            self.commands.push_back(Command::Send {
                to: target.node,
                request: ReplicaRequest::Read {
                    key: self.key.clone(),
                },
            });
        }
    }

    /// The join of every version received so far.
    fn merged(&self) -> Option<Object> {
        self.found_objects()
            .fold(None, |acc: Option<Object>, object| {
                Some(match acc {
                    None => object.clone(),
                    Some(acc) => acc.sync(object),
                })
            })
    }

    fn found_objects(&self) -> impl Iterator<Item = &Object> {
        self.heard.iter().filter_map(|h| match h {
            Some(Heard::Found(object)) => Some(object),
            _ => None,
        })
    }

    fn check_quorum(&mut self) {
        let (r, pr) = (self.quorum.r, self.quorum.pr);
        let found_any = self.found_objects().next().is_some();
        let not_found = self
            .heard
            .iter()
            .filter(|h| matches!(h, Some(Heard::NotFound)))
            .count();
        if self.tally.reached(r, pr) {
            let ok = GetOk {
                object: self.merged(),
                replies: self.tally.successes(),
            };
            return self.respond(Ok(ok));
        }
        let majority = self.quorum.n / 2 + 1;
        let negative = not_found + self.tally.failures().len();
        let basic_quorum_says_not_found = self.quorum.basic_quorum
            && !self.quorum.notfound_ok
            && !found_any
            && negative >= majority;
        if basic_quorum_says_not_found {
            // A replica that failed is not a "not found" (Riak's get FSM): with any failure among
            // the majority the answer is an error, never a not found nobody saw.
            let failed = self.tally.failures().to_vec();
            let outcome = if failed.is_empty() {
                Ok(GetOk {
                    object: None,
                    replies: self.tally.successes(),
                })
            } else {
                Err(QuorumError::NotEnoughReplicas {
                    answered: self.tally.successes(),
                    required: r,
                    failed,
                })
            };
            return self.respond(outcome);
        }
        if let Some((answered, required)) = self.tally.unreachable(r, pr) {
            let outcome = if !found_any && not_found > 0 && self.tally.failures().is_empty() {
                Ok(GetOk {
                    object: None,
                    replies: answered,
                })
            } else {
                Err(QuorumError::NotEnoughReplicas {
                    answered,
                    required,
                    failed: self.tally.failures().to_vec(),
                })
            };
            self.respond(outcome);
        }
    }

    fn respond(&mut self, outcome: Result<GetOk, QuorumError>) {
        self.responded = true;
        self.commands
            .push_back(Command::Respond(Response::Get(outcome)));
    }

    /// Read repair: the merged versions go to every replica that answered with something
    /// strictly older or with nothing, and only to those.
    fn repair_and_finish(&mut self) {
        self.finished = true;
        let Some(merged) = self.merged() else { return };
        for (index, (target, heard)) in self.tally.targets().iter().zip(&self.heard).enumerate() {
            if self.tally.is_stand_in(index) {
                // Not a replica of the key: it answered for a silent one, which gets the
                // versions by its own repair or hint, not a hint of a hint.
                continue;
            }
            let stale = match heard {
                Some(Heard::Found(object)) => *object != merged,
                Some(Heard::NotFound) => true,
                None => false, // failed or silent: nothing known, nothing sent
            };
            if !stale {
                continue;
            }
            self.commands
                .push_back(Command::write_to(target, &self.key, merged.clone()));
        }
    }
}

impl Coordinate for GetCoordinator {
    /// A replica's answer. Replies from nodes never asked and duplicates change nothing.
    fn handle_reply(&mut self, now: u64, from: &NodeId, reply: ReplicaReply) {
        if self.finished {
            return;
        }
        let mut failed = None;
        let recorded = match reply {
            ReplicaReply::Found(object) => self
                .tally
                .record(from, Answer::Success)
                .map(|i| (i, Heard::Found(object))),
            ReplicaReply::NotFound => {
                let answer = if self.quorum.notfound_ok {
                    Answer::Success
                } else {
                    Answer::Neutral
                };
                self.tally
                    .record(from, answer)
                    .map(|i| (i, Heard::NotFound))
            }
            ReplicaReply::Failed(reason) => {
                failed = self.tally.record_failure(from, reason);
                None
            }
            other => {
                failed = self
                    .tally
                    .record_failure(from, format!("unexpected reply {other:?}"));
                None
            }
        };
        if let Some((index, heard)) = recorded {
            self.heard[index] = Some(heard);
        }
        if let Some(index) = failed
            && !self.responded
        {
            self.stand_in_for(index, now);
        }
        if !self.responded {
            self.check_quorum();
        }
        if self.tally.complete() {
            self.repair_and_finish();
        }
    }

    /// At the deadline: fail the client if it is still waiting, and repair with the replies
    /// that did arrive. A call before the deadline does nothing.
    fn handle_timeout(&mut self, now: u64) {
        if self.finished {
            return;
        }
        if now < self.deadline_ms {
            if !self.responded {
                for index in self.tally.overdue(now) {
                    self.stand_in_for(index, now);
                }
            }
            return;
        }
        if !self.responded {
            self.respond(Err(QuorumError::Timeout {
                answered: self.tally.successes(),
                required: self.quorum.r,
                waited_ms: now - self.started_ms,
            }));
        }
        self.repair_and_finish();
    }

    /// When to call [`Self::handle_timeout`] next, if the coordinator still waits for replies:
    /// the deadline, or sooner when a silent target is due to be stood in for.
    fn poll_timeout(&self) -> Option<u64> {
        if self.finished {
            return None;
        }
        let stand_in = (!self.responded)
            .then(|| self.tally.next_overdue_ms())
            .flatten();
        Some(stand_in.map_or(self.deadline_ms, |at| at.min(self.deadline_ms)))
    }

    /// The next effect to carry out.
    fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// Spare nodes asked in place of silent or failed targets (paper 4.6).
    fn stand_ins(&self) -> usize {
        self.tally.stand_ins()
    }

    /// Whether the client was answered and read repair was sent: nothing more will happen.
    fn is_finished(&self) -> bool {
        self.finished
    }
}
