//! Hinted handoff's delivery side (paper 4.6): hints this node holds for others go to their
//! owners when those are up again.
//!
//! Delivery runs in rounds every [`HINT_INTERVAL_MS`]: for each owner of held hints a batch is
//! read and sent one hint at a time, and a hint is dropped only once the node it went to stored
//! a set that covers it. Hints follow the ring: a hint goes to its owner while the owner still
//! replicates the hint's partition (and only while it is up), else to a replica of the
//! partition under the current ring that is up (applied here when that is this node), so hints
//! for a node that left or was removed still reach the key's replicas. This module must not
//! know how calls travel or how the store runs.

use std::collections::VecDeque;

use dynamo_quorum::Value;
use dynamo_ring::NodeId;
use dynamo_storage::{Durability, Hint};

use super::{
    BATCH, CallError, CallErrorKind, CoreEvent, HINT_INTERVAL_MS, NodeCore, PEER_TIMEOUT_MS,
    StoreError, StoreOp, StoreResult, Time,
};
use dynamo_protocol::{Request, Response};

/// What a hint delivery's call answers.
#[derive(Debug)]
pub(super) enum AfterCall {
    /// A hint sent to its owner or a current replica.
    Delivered(HintInFlight),
}

/// What a hint delivery's store operation answers.
#[derive(Debug)]
pub(super) enum AfterStore {
    /// The owners of held hints.
    Owners,
    /// A batch of one owner's hints.
    Read,
    /// A hint applied here (this node is a current replica of its partition).
    AppliedHere(HintInFlight),
    /// A delivered hint dropped.
    Removed,
}

/// A hint sent on, kept to drop it once acknowledged.
#[derive(Debug)]
pub(super) struct HintInFlight {
    owner: String,
    hint: Hint<Value>,
    /// Whether it went to its owner (else to the current replicas of its partition).
    to_owner: bool,
    /// Current replicas still to receive it after this one (when the owner no longer
    /// replicates the partition): the hint is dropped only once every one of them holds it.
    then: Vec<NodeId>,
}

/// The state of hint delivery.
#[derive(Debug)]
pub(super) struct HintDelivery {
    /// When the next round starts, if none is running.
    next_round: Option<Time>,
    /// Owners still to serve in this round.
    owners: VecDeque<String>,
    /// Hints of the owner being served.
    queue: VecDeque<Hint<Value>>,
    /// The owner being served.
    owner: Option<String>,
    /// Whether the last look at the store found no hint held for another node (and none was
    /// stored since): a leaving node says `Left` only then, since its hints may be the only
    /// other copy of acknowledged writes.
    holds_none: bool,
}

impl HintDelivery {
    pub(super) fn new(now: Time) -> Self {
        Self {
            next_round: Some(now + HINT_INTERVAL_MS),
            owners: VecDeque::new(),
            queue: VecDeque::new(),
            owner: None,
            holds_none: false,
        }
    }

    /// A hint was stored here.
    pub(super) fn stored(&mut self) {
        self.holds_none = false;
    }

    /// Whether this node is known to hold no hint for another node.
    pub(super) fn holds_none(&self) -> bool {
        self.holds_none
    }

    pub(super) fn next_due(&self) -> Option<Time> {
        self.next_round
    }
}

impl NodeCore {
    /// Starts a hint round when one is due.
    pub(super) fn hints_tick(&mut self, now: Time) {
        if self.hints.next_round.is_some_and(|at| at <= now) {
            self.hints.next_round = None;
            self.store(StoreOp::HintOwners, AfterStore::Owners);
        }
    }

    pub(super) fn hint_owners_read(&mut self, now: Time, result: Result<StoreResult, StoreError>) {
        if let Ok(StoreResult::Owners(owners)) = result {
            self.hints.holds_none = owners.iter().all(|owner| owner == self.me.as_str());
            self.hints.owners = owners.into();
        } else {
            self.hints.holds_none = false;
            self.hints.owners.clear();
        }
        if self.hints.holds_none {
            self.update_own_status(now);
        }
        self.next_hint_owner(now);
    }

    /// Moves to the next owner of held hints, or ends the round.
    fn next_hint_owner(&mut self, now: Time) {
        self.hints.owner = None;
        self.hints.queue.clear();
        while let Some(owner) = self.hints.owners.pop_front() {
            if owner != self.me.as_str() {
                self.hints.owner = Some(owner.clone());
                let op = StoreOp::HintsFor {
                    owner,
                    limit: BATCH,
                };
                self.store(op, AfterStore::Read);
                return;
            }
        }
        self.hints.next_round = Some(now + HINT_INTERVAL_MS);
    }

    pub(super) fn hints_read(&mut self, now: Time, result: Result<StoreResult, StoreError>) {
        if let Ok(StoreResult::Hints(hints)) = result {
            self.hints.queue = hints.into();
        }
        self.deliver_next_hint(now);
    }

    /// Where a hint for `owner` of `partition` goes now: `Some((nodes, is_owner))`, or `None`
    /// while it must wait. That is its owner while the owner replicates the partition, else every
    /// current replica of the partition that is up. The hint is this node's copy of an
    /// acknowledged write, and one of those replicas may be the write's coordinator, which
    /// holds it already: delivering to that one alone and dropping the hint would leave a
    /// single copy. So it goes to all of them, and waits for a later round while fewer than two
    /// (or the whole preference list, when it is shorter) are up.
    fn hint_destinations(&self, owner: &NodeId, partition: u32) -> Option<(Vec<NodeId>, bool)> {
        let up = |node: &NodeId| self.takes_writes(node) && self.address_of(node).is_some();
        let Some(ring) = &self.ring else {
            return up(owner).then(|| (vec![owner.clone()], true));
        };
        let replicas = ring.replicas_of_partition(partition, ring.target_n());
        if replicas.contains(&owner) {
            return up(owner).then(|| (vec![owner.clone()], true));
        }
        let needed = replicas.len().clamp(1, 2);
        let live: Vec<NodeId> = replicas.into_iter().filter(|n| up(n)).cloned().collect();
        (live.len() >= needed).then_some((live, false))
    }

    fn deliver_next_hint(&mut self, now: Time) {
        let Some(owner) = self.hints.owner.clone() else {
            return self.next_hint_owner(now);
        };
        let owner_id = NodeId::from(owner.as_str());
        // Hints that must wait stay where they are; the next round looks again.
        let next = loop {
            let Some(hint) = self.hints.queue.pop_front() else {
                return self.next_hint_owner(now);
            };
            if let Some(destinations) = self.hint_destinations(&owner_id, hint.partition) {
                break (hint, destinations);
            }
        };
        let (hint, (mut destinations, to_owner)) = next;
        let to = destinations.remove(0);
        let sent = HintInFlight {
            owner,
            hint,
            to_owner,
            then: destinations,
        };
        self.send_hint(now, sent, &to);
    }

    /// Sends a hint to `to` (merged here when `to` is this node).
    fn send_hint(&mut self, now: Time, sent: HintInFlight, to: &NodeId) {
        if *to == self.me {
            // This node replicates the partition now: the hint is merged here.
            let op = StoreOp::Apply {
                partition: sent.hint.partition,
                key: sent.hint.key.clone(),
                object: sent.hint.versions.clone(),
                durability: Durability::Sync,
            };
            return self.store(op, AfterStore::AppliedHere(sent));
        }
        let request = Request::DeliverHint {
            partition: sent.hint.partition,
            key: sent.hint.key.clone(),
            object: sent.hint.versions.clone(),
        };
        self.call(
            now,
            to,
            request,
            PEER_TIMEOUT_MS,
            AfterCall::Delivered(sent),
        );
    }

    /// A hint was merged on this node (it replicates the hint's partition now).
    pub(super) fn hint_applied_here(
        &mut self,
        now: Time,
        sent: HintInFlight,
        result: Result<StoreResult, StoreError>,
    ) {
        // Applied here or not, the hint goes on as if a replica had answered.
        let response = match result {
            Ok(StoreResult::Stored(stored)) => Ok(Response::Stored(stored)),
            Ok(other) => {
                let message = self.wrong_kind("a hint applied here", &other);
                Err(CallError::new(CallErrorKind::Broken, message))
            }
            Err(error) => Err(CallError::new(
                CallErrorKind::Broken,
                format!("applying it here failed: {error}"),
            )),
        };
        self.hint_delivered(now, sent, response);
    }

    pub(super) fn hint_delivered(
        &mut self,
        now: Time,
        sent: HintInFlight,
        result: Result<Response, CallError>,
    ) {
        match result {
            Ok(Response::Stored(_)) if !sent.then.is_empty() => {
                // One more current replica must hold it before the hint may go.
                let mut sent = sent;
                let to = sent.then.remove(0);
                self.send_hint(now, sent, &to);
            }
            Ok(Response::Stored(stored)) => {
                self.counters.hints_delivered += 1;
                let op = StoreOp::RemoveHintIfCovered {
                    owner: sent.owner,
                    partition: sent.hint.partition,
                    key: sent.hint.key,
                    acknowledged: stored,
                    durability: self.config.replica_durability,
                };
                self.store(op, AfterStore::Removed);
            }
            // The receiver refused this one hint: skip it so it does not block the rest.
            Ok(other) => {
                self.event(CoreEvent::HintRefused {
                    owner: sent.owner,
                    reason: format!("{other:?}"),
                });
                self.deliver_next_hint(now);
            }
            // The owner is unreachable: try it again next round.
            Err(_) if sent.to_owner => self.next_hint_owner(now),
            // Another replica was unreachable: the next hint may go elsewhere.
            Err(_) => self.deliver_next_hint(now),
        }
    }

    pub(super) fn hint_removed(&mut self, now: Time, result: Result<StoreResult, StoreError>) {
        if let Err(error) = result {
            self.problem(format!("could not drop a delivered hint: {error}"));
        }
        self.deliver_next_hint(now);
    }
}

impl NodeCore {
    /// A hint's destination answered (or did not).
    pub(super) fn hints_call_answered(
        &mut self,
        now: Time,
        after: AfterCall,
        result: Result<Response, CallError>,
    ) {
        let AfterCall::Delivered(sent) = after;
        self.hint_delivered(now, sent, result);
    }

    /// A store operation of hint delivery finished.
    pub(super) fn hints_store_done(
        &mut self,
        now: Time,
        after: AfterStore,
        result: Result<StoreResult, StoreError>,
    ) {
        match after {
            AfterStore::Owners => self.hint_owners_read(now, result),
            AfterStore::Read => self.hints_read(now, result),
            AfterStore::AppliedHere(sent) => self.hint_applied_here(now, sent, result),
            AfterStore::Removed => self.hint_removed(now, result),
        }
    }

    /// This node keeps a hint: counted, and hint delivery knows it holds one.
    pub(super) fn hint_stored(&mut self) {
        self.counters.hints_stored += 1;
        self.hints.stored();
    }
}
