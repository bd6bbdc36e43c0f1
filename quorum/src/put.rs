//! The put (and delete) coordinator, paper section 4.5: "the coordinator generates the vector
//! clock for the new version and writes the new version locally. The coordinator then sends
//! the new version to the N highest-ranked reachable nodes. If at least W-1 nodes respond then
//! the write is considered successful."
//!
//! Steps: read the local versions to check the sibling limit, write locally (the store makes
//! the new dot atomically), send the resulting set to every other target (fallbacks with a hint,
//! 4.6), answer after W acknowledgements (PW of them from primaries), or fail as soon as the
//! quorum is out of reach or the deadline passes. This module must not know how the store makes
//! the write atomic or how messages travel.

use std::collections::VecDeque;

use dynamo_ring::{NodeId, Target};
use dynamo_vclock::{Actor, VClock};

use crate::config::{HARD_SIBLING_LIMIT, Quorum, SOFT_SIBLING_LIMIT};
use crate::context::ClientContext;
use crate::coordinate::Coordinate;
use crate::error::QuorumError;
use crate::message::{Command, ReplicaReply, Response, Warning};
use crate::tally::{Answer, StandIns, Tally};
use crate::value::{Object, Value, WriteId, named_writes};

/// A client's put (or, with [`Value::Tombstone`], delete).
#[derive(Debug, Clone)]
pub struct PutRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The context of the read this write follows; `None` for a blind write (it becomes a
    /// sibling of whatever is there).
    pub context: Option<ClientContext>,
    /// The new value.
    pub value: Value,
    /// This node: it must be one of the targets.
    pub coordinator: NodeId,
    /// This node's vector-clock actor (node id and storage epoch, so a node that lost its disk
    /// never reuses a counter).
    pub actor: Actor,
    /// The key's extended preference list (paper 4.6).
    pub targets: Vec<Target>,
    /// Who replaces a target that fails or stays silent (paper 4.6).
    pub stand_ins: StandIns,
    /// N, W, PW for this request.
    pub quorum: Quorum,
    /// How long the client waits at most.
    pub timeout_ms: u64,
    /// Last write wins: the write supersedes every version the coordinator holds, as if its
    /// context were theirs, so a bucket written blind keeps at most one sibling per concurrent
    /// coordinator instead of one per write (the bucket's resolver picks among those).
    pub supersede_local: bool,
}

/// A merge of versions read elsewhere (a restore from a backup): no new dot, only a join of
/// `object` with what the replicas hold, written like a put's new version (locally and made
/// durable first, then to every other target, answered after W acknowledgements).
#[derive(Debug, Clone)]
pub struct MergeRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The versions to merge.
    pub object: Object,
    /// This node: it must be one of the targets.
    pub coordinator: NodeId,
    /// The key's extended preference list (paper 4.6).
    pub targets: Vec<Target>,
    /// Who replaces a target that fails or stays silent (paper 4.6).
    pub stand_ins: StandIns,
    /// N, W, PW for this request.
    pub quorum: Quorum,
    /// How long the client waits at most.
    pub timeout_ms: u64,
}

/// What every put and merge starts from.
struct Start {
    key: Vec<u8>,
    coordinator: NodeId,
    targets: Vec<Target>,
    stand_ins: StandIns,
    quorum: Quorum,
    timeout_ms: u64,
}

/// Adds to `context` the other copies of writes it supersedes: when the context covers one dot
/// of a write id, or the reader saw that write (`seen`, from its context token), the other dots
/// of that write (a retry or a hedged attempt coordinated elsewhere) are the same client write
/// and must not survive as siblings of the new value. An actor's entry is raised only when
/// every live value of it above the context is such a copy, since a version vector entry
/// covers everything below it.
fn extend_over_retries(context: &mut VClock, stored: &Object, seen: &[WriteId]) {
    let superseded: std::collections::HashSet<_> = stored
        .iter()
        .filter(|(actor, counter, _)| context.get(actor) >= *counter)
        .filter_map(|(_, _, value)| value.write_id())
        .chain(seen.iter().copied())
        .collect();
    if superseded.is_empty() {
        return;
    }
    let history = stored.context();
    for (actor, entry) in history.iter() {
        let mut above = stored
            .iter()
            .filter(|(a, counter, _)| *a == actor && context.get(actor) < *counter)
            .peekable();
        if above.peek().is_none() {
            continue;
        }
        if above.all(|(_, _, value)| value.write_id().is_some_and(|id| superseded.contains(&id))) {
            context.witness(actor, entry);
        }
    }
}

/// The delete of what `context` covers in `stored` and of the writes the reader saw (`seen`):
/// a tombstone naming the client writes it supersedes (and those the deletes it supersedes
/// named), so late copies of them stay deleted; a plain tombstone when it supersedes none.
fn deletion(context: &VClock, stored: &Object, seen: &[WriteId]) -> Value {
    let covered = stored
        .iter()
        .filter(|(actor, counter, _)| context.get(actor) >= *counter)
        .map(|(_, _, value)| value);
    let superseded = named_writes(seen, covered);
    if superseded.is_empty() {
        Value::Tombstone
    } else {
        Value::Deleted { superseded }
    }
}

/// A successful put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOk {
    /// The versions of the key on the coordinator after the write.
    pub object: Object,
    /// Its causal context: write with it to supersede this version.
    pub context: VClock,
    /// Acknowledgements received when the client was answered.
    pub acknowledged: usize,
    /// Anything the client should know (many siblings).
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ReadingLocal,
    WritingLocal,
    Replicating,
    Done,
}

/// The state machine of one put; see the module docs.
#[derive(Debug)]
pub struct PutCoordinator {
    key: Vec<u8>,
    context: VClock,
    /// The client writes the request's context saw (see [`ClientContext::writes`]).
    seen: Vec<WriteId>,
    value: Option<Value>,
    actor: Actor,
    coordinator: NodeId,
    quorum: Quorum,
    started_ms: u64,
    deadline_ms: u64,
    phase: Phase,
    tally: Tally,
    object: Option<Object>,
    warnings: Vec<Warning>,
    commands: VecDeque<Command>,
    /// See [`PutRequest::supersede_local`].
    supersede_local: bool,
    /// A merge's versions ([`Self::merge`]), until the local read.
    merging: Option<Object>,
}

impl PutCoordinator {
    /// Starts a put at time `now`. Fails at once if the request cannot succeed: invalid quorum,
    /// a context read from another key, a coordinator outside the targets, or too few targets.
    pub fn new(now: u64, request: PutRequest) -> Result<Self, QuorumError> {
        let (context, seen) = match request.context {
            Some(context) if !context.belongs_to(&request.key) => {
                return Err(QuorumError::ContextForAnotherKey);
            }
            Some(context) => (context.clock, context.writes),
            None => (VClock::new(), Vec::new()),
        };
        let first = Command::ReadLocal {
            key: request.key.clone(),
        };
        let start = Start {
            key: request.key,
            coordinator: request.coordinator,
            targets: request.targets,
            stand_ins: request.stand_ins,
            quorum: request.quorum,
            timeout_ms: request.timeout_ms,
        };
        let mut put = Self::start(now, start, first, Phase::ReadingLocal)?;
        put.context = context;
        put.seen = seen;
        put.value = Some(request.value);
        put.actor = request.actor;
        put.supersede_local = request.supersede_local;
        Ok(put)
    }

    /// Starts a merge at time `now` ([`MergeRequest`]): the coordinator reads its copy, and
    /// unless the join would hold more than [`HARD_SIBLING_LIMIT`] versions, joins the versions
    /// into it durably ([`Command::SyncLocal`]); then the rest goes as for a put. Fails at once
    /// as [`Self::new`] does.
    pub fn merge(now: u64, request: MergeRequest) -> Result<Self, QuorumError> {
        let first = Command::ReadLocal {
            key: request.key.clone(),
        };
        let start = Start {
            key: request.key,
            coordinator: request.coordinator,
            targets: request.targets,
            stand_ins: request.stand_ins,
            quorum: request.quorum,
            timeout_ms: request.timeout_ms,
        };
        let mut merge = Self::start(now, start, first, Phase::ReadingLocal)?;
        merge.merging = Some(request.object);
        Ok(merge)
    }

    /// A coordinator that begins with `first` in `phase`, once the quorum is valid, the
    /// coordinator is a target and enough targets are up. It makes no dot until given a
    /// value and an actor ([`Self::new`]).
    fn start(now: u64, start: Start, first: Command, phase: Phase) -> Result<Self, QuorumError> {
        let quorum = start.quorum;
        quorum.validate()?;
        if !start.targets.iter().any(|t| t.node == start.coordinator) {
            return Err(QuorumError::NotACoordinator {
                coordinator: start.coordinator,
            });
        }
        let tally = Tally::new(start.targets, start.stand_ins, now);
        tally.check_available(quorum.w, quorum.pw)?;
        Ok(Self {
            key: start.key,
            context: VClock::new(),
            seen: Vec::new(),
            value: None,
            actor: Actor::new(String::new()),
            coordinator: start.coordinator,
            quorum,
            started_ms: now,
            deadline_ms: now.saturating_add(start.timeout_ms),
            phase,
            tally,
            object: None,
            warnings: Vec::new(),
            commands: VecDeque::from([first]),
            supersede_local: false,
            merging: None,
        })
    }

    /// The result of [`Command::ReadLocal`]: the coordinator's current versions of the key.
    /// A write that would leave more than [`HARD_SIBLING_LIMIT`] siblings is refused here,
    /// before anything is written.
    pub fn handle_local_read(&mut self, now: u64, stored: Result<Option<Object>, String>) {
        if self.phase != Phase::ReadingLocal {
            return;
        }
        let stored = match stored {
            Ok(stored) => stored.unwrap_or_else(Object::empty),
            Err(reason) => return self.finish(Err(QuorumError::Local(reason))),
        };
        if let Some(object) = self.merging.take() {
            let joined = stored.sync(&object).len();
            if joined > HARD_SIBLING_LIMIT {
                return self.finish(Err(QuorumError::TooManySiblings {
                    siblings: joined,
                    limit: HARD_SIBLING_LIMIT,
                }));
            }
            self.phase = Phase::WritingLocal;
            self.commands.push_back(Command::SyncLocal {
                key: self.key.clone(),
                object,
            });
            return;
        }
        let Some(value) = self.value.take() else {
            return;
        };
        if let Some(id) = value.write_id()
            && stored
                .values()
                .any(|v| v.write_id() == Some(id) || v.superseded().contains(&id))
        {
            // A retry of a write this coordinator already holds, or one a delete here
            // superseded (its first attempt timed out at the client, or the request arrived
            // twice or late): no second version. What is held may be only buffered (a replica
            // write), so it is made durable first, then goes to the other targets like a fresh
            // write.
            self.phase = Phase::WritingLocal;
            self.commands.push_back(Command::SyncLocal {
                key: self.key.clone(),
                object: stored,
            });
            return;
        }
        if self.supersede_local {
            self.context.merge(&stored.context());
        }
        extend_over_retries(&mut self.context, &stored, &self.seen);
        let value = if value.is_tombstone() {
            deletion(&self.context, &stored, &self.seen)
        } else {
            value
        };
        let mut preview = stored;
        preview.update(&self.context, &self.actor, value.clone(), now);
        if preview.len() > HARD_SIBLING_LIMIT {
            return self.finish(Err(QuorumError::TooManySiblings {
                siblings: preview.len(),
                limit: HARD_SIBLING_LIMIT,
            }));
        }
        self.phase = Phase::WritingLocal;
        self.commands.push_back(Command::WriteLocal {
            key: self.key.clone(),
            context: self.context.clone(),
            value,
        });
    }

    /// The result of [`Command::WriteLocal`]: the versions stored after the local write. The
    /// coordinator's own write counts as the first acknowledgement; the set goes to every other
    /// target.
    pub fn handle_local_write(&mut self, now: u64, stored: Result<Object, String>) {
        if self.phase != Phase::WritingLocal {
            return;
        }
        let object = match stored {
            Ok(object) => object,
            Err(reason) => {
                self.tally.record_failure(&self.coordinator, reason.clone());
                return self.finish(Err(QuorumError::Local(reason)));
            }
        };
        if object.len() > SOFT_SIBLING_LIMIT {
            self.warnings.push(Warning::ManySiblings(object.len()));
        }
        self.tally.record(&self.coordinator, Answer::Success);
        self.tally.asked_all(now);
        let (key, coordinator) = (&self.key, &self.coordinator);
        self.commands.extend(
            self.tally
                .targets()
                .iter()
                .filter(|target| target.node != *coordinator)
                .map(|target| Command::write_to(target, key, object.clone())),
        );
        self.object = Some(object);
        self.phase = Phase::Replicating;
        self.check_quorum();
    }

    /// Paper 4.6: the write goes to the next spare node, with a hint, in place of the target at
    /// `index` (which failed, or is silent past the stand-in delay).
    fn stand_in_for(&mut self, index: usize, now: u64) {
        let Some(object) = &self.object else {
            return;
        };
        if let Some(target) = self.tally.stand_in_for(index, now) {
            self.commands
                .push_back(Command::write_to(&target, &self.key, object.clone()));
        }
    }

    fn check_quorum(&mut self) {
        let (w, pw) = (self.quorum.w, self.quorum.pw);
        if self.tally.reached(w, pw) {
            let Some(object) = self.object.clone() else {
                return;
            };
            let ok = PutOk {
                context: object.context(),
                object,
                acknowledged: self.tally.successes(),
                warnings: std::mem::take(&mut self.warnings),
            };
            self.finish(Ok(ok));
        } else if let Some((answered, required)) = self.tally.unreachable(w, pw) {
            self.finish(Err(QuorumError::NotEnoughReplicas {
                answered,
                required,
                failed: self.tally.failures().to_vec(),
            }));
        }
    }

    fn finish(&mut self, outcome: Result<PutOk, QuorumError>) {
        self.phase = Phase::Done;
        self.commands
            .push_back(Command::Respond(Response::Put(outcome)));
    }
}

impl Coordinate for PutCoordinator {
    /// A replica's answer to the write. Replies from nodes that were never asked, duplicates,
    /// and replies after the client was answered change nothing.
    fn handle_reply(&mut self, now: u64, from: &NodeId, reply: ReplicaReply) {
        if self.phase != Phase::Replicating || from == &self.coordinator {
            return;
        }
        let failed = match reply {
            ReplicaReply::Written => {
                self.tally.record(from, Answer::Success);
                None
            }
            ReplicaReply::Failed(reason) => self.tally.record_failure(from, reason),
            other => self
                .tally
                .record_failure(from, format!("unexpected reply {other:?}")),
        };
        if let Some(index) = failed
            && !self.tally.reached(self.quorum.w, self.quorum.pw)
        {
            self.stand_in_for(index, now);
        }
        self.check_quorum();
    }

    /// Sends the write to a spare in place of each target silent past the stand-in delay, and
    /// fails the request if its deadline has passed. Otherwise a call does nothing.
    fn handle_timeout(&mut self, now: u64) {
        if self.phase == Phase::Replicating && now < self.deadline_ms {
            for index in self.tally.overdue(now) {
                self.stand_in_for(index, now);
            }
            return;
        }
        if self.phase == Phase::Done || now < self.deadline_ms {
            return;
        }
        self.finish(Err(QuorumError::Timeout {
            answered: self.tally.successes(),
            required: self.quorum.w,
            waited_ms: now - self.started_ms,
        }));
    }

    /// When to call [`Self::handle_timeout`] next, if the request is still open: the deadline,
    /// or sooner when a silent target is due to be stood in for.
    fn poll_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Done => None,
            Phase::Replicating => Some(
                self.tally
                    .next_overdue_ms()
                    .map_or(self.deadline_ms, |at| at.min(self.deadline_ms)),
            ),
            Phase::ReadingLocal | Phase::WritingLocal => Some(self.deadline_ms),
        }
    }

    /// The next effect to carry out.
    fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// Spare nodes asked in place of silent or failed targets (paper 4.6).
    fn stand_ins(&self) -> usize {
        self.tally.stand_ins()
    }

    /// Whether the client has been answered (later replies are ignored).
    fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }
}
