//! Bookkeeping shared by the coordinators: which targets were asked, which answered and how,
//! so late, duplicate and unsolicited replies are told apart from the ones that count; and
//! which spare node stands in for a target that failed or stays silent (paper 4.6).
//!
//! This module must not know what a reply means for a get or a put.

use std::collections::VecDeque;

use dynamo_ring::{NodeId, Role, Target};

use crate::error::QuorumError;

/// Paper 4.6, "if A is temporarily down or unreachable during a write operation then a
/// replica that would normally have lived on A will now be sent to node D": the nodes a
/// coordinator may send a request to when a target fails or has not answered within
/// `after_ms`, before failure detection has marked it down. Each stand-in is a fallback for the
/// target it replaces (a write to it carries a hint for that target's owner).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandIns {
    /// Nodes past the key's extended preference list that are up, in ring order; none of them
    /// may be among the targets.
    pub spares: Vec<NodeId>,
    /// How long a target may stay silent before a spare stands in for it (it may still answer
    /// and count); `None`: only a target that failed is replaced.
    pub after_ms: Option<u64>,
}

/// How one target's request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Counts towards the quorum.
    Success,
    /// Answered, but does not count (a "not found" with `notfound_ok = false`).
    Neutral,
    /// Failed or unreachable.
    Failure,
}

/// The targets of one request and their answers.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    targets: Vec<Target>,
    answers: Vec<Option<Answer>>,
    failures: Vec<(NodeId, String)>,
    /// When each target was asked.
    asked_ms: Vec<u64>,
    /// Whether a spare stands in for each target already, and whether the target itself is a
    /// stand-in.
    replaced: Vec<bool>,
    stand_in: Vec<bool>,
    spares: VecDeque<NodeId>,
    stand_in_after_ms: Option<u64>,
}

impl Tally {
    pub(crate) fn new(targets: Vec<Target>, stand_ins: StandIns, now: u64) -> Self {
        let count = targets.len();
        Self {
            targets,
            answers: vec![None; count],
            failures: Vec::new(),
            asked_ms: vec![now; count],
            replaced: vec![false; count],
            stand_in: vec![false; count],
            spares: stand_ins.spares.into(),
            stand_in_after_ms: stand_ins.after_ms,
        }
    }

    /// Every target was asked at `now` (a put asks once its local write is done).
    pub(crate) fn asked_all(&mut self, now: u64) {
        self.asked_ms.fill(now);
    }

    /// Stand-ins added so far.
    pub(crate) fn stand_ins(&self) -> usize {
        self.stand_in.iter().filter(|s| **s).count()
    }

    /// Whether the target at `index` is a stand-in added by [`Tally::stand_in_for`].
    pub(crate) fn is_stand_in(&self, index: usize) -> bool {
        self.stand_in[index]
    }

    /// Adds the next spare as a stand-in for the target at `index` (asked at `now`), unless one
    /// stands in for it already or no spare is left. Returns the new target to ask.
    pub(crate) fn stand_in_for(&mut self, index: usize, now: u64) -> Option<Target> {
        if self.replaced[index] {
            return None;
        }
        let node = self.spares.pop_front()?;
        self.replaced[index] = true;
        let for_node = match &self.targets[index].role {
            Role::Primary => self.targets[index].node.clone(),
            Role::Fallback { for_node } => for_node.clone(),
        };
        let target = Target {
            node,
            role: Role::Fallback { for_node },
        };
        self.targets.push(target.clone());
        self.answers.push(None);
        self.asked_ms.push(now);
        self.replaced.push(false);
        self.stand_in.push(true);
        Some(target)
    }

    /// Targets silent past the stand-in delay at `now` that no spare stands in for yet (none
    /// while no spare is left).
    pub(crate) fn overdue(&self, now: u64) -> Vec<usize> {
        let Some(after) = self.stand_in_after_ms.filter(|_| !self.spares.is_empty()) else {
            return Vec::new();
        };
        (0..self.targets.len())
            .filter(|&i| {
                self.answers[i].is_none()
                    && !self.replaced[i]
                    && self.asked_ms[i].saturating_add(after) <= now
            })
            .collect()
    }

    /// When the next silent target becomes overdue, while a spare is left.
    pub(crate) fn next_overdue_ms(&self) -> Option<u64> {
        let after = self.stand_in_after_ms.filter(|_| !self.spares.is_empty())?;
        (0..self.targets.len())
            .filter(|&i| self.answers[i].is_none() && !self.replaced[i])
            .map(|i| self.asked_ms[i].saturating_add(after))
            .min()
    }

    pub(crate) fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Records `node`'s answer; `None` if the node was never asked or already answered (such
    /// replies must not count twice), otherwise the target's position.
    pub(crate) fn record(&mut self, node: &NodeId, answer: Answer) -> Option<usize> {
        let index = self.targets.iter().position(|t| &t.node == node)?;
        if self.answers[index].is_some() {
            return None;
        }
        self.answers[index] = Some(answer);
        Some(index)
    }

    pub(crate) fn record_failure(&mut self, node: &NodeId, reason: String) -> Option<usize> {
        let index = self.record(node, Answer::Failure)?;
        self.failures.push((node.clone(), reason));
        Some(index)
    }

    pub(crate) fn failures(&self) -> &[(NodeId, String)] {
        &self.failures
    }

    fn count(&self, primaries_only: bool, wanted: Option<Answer>) -> usize {
        self.targets
            .iter()
            .zip(&self.answers)
            .filter(|(t, _)| !primaries_only || t.role == Role::Primary)
            .filter(|(_, a)| **a == wanted)
            .count()
    }

    /// Answers that count towards the quorum.
    pub(crate) fn successes(&self) -> usize {
        self.count(false, Some(Answer::Success))
    }

    /// Answers from primaries that count towards PR/PW.
    pub(crate) fn primary_successes(&self) -> usize {
        self.count(true, Some(Answer::Success))
    }

    /// Targets that have not answered yet.
    pub(crate) fn pending(&self) -> usize {
        self.count(false, None)
    }

    /// Primaries that have not answered yet.
    pub(crate) fn pending_primaries(&self) -> usize {
        self.count(true, None)
    }

    /// Whether everyone answered.
    pub(crate) fn complete(&self) -> bool {
        self.pending() == 0
    }

    /// Primaries among the targets.
    pub(crate) fn primaries(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.role == Role::Primary)
            .count()
    }

    /// Fails at once when there are fewer targets than `required`, or fewer primaries than
    /// `required_primaries`: the quorum could never be reached.
    pub(crate) fn check_available(
        &self,
        required: usize,
        required_primaries: usize,
    ) -> Result<(), QuorumError> {
        for (available, required) in [
            (self.targets.len(), required),
            (self.primaries(), required_primaries),
        ] {
            if available < required {
                return Err(QuorumError::Unavailable {
                    available,
                    required,
                });
            }
        }
        Ok(())
    }

    /// Whether `required` successes (and `required_primaries` from primaries) are reached.
    pub(crate) fn reached(&self, required: usize, required_primaries: usize) -> bool {
        self.successes() >= required && self.primary_successes() >= required_primaries
    }

    /// Whether the pending answers can no longer make up the quorum; returns the quorum that
    /// failed as `(answered, required)`.
    pub(crate) fn unreachable(
        &self,
        required: usize,
        required_primaries: usize,
    ) -> Option<(usize, usize)> {
        if self.successes() + self.pending() < required {
            return Some((self.successes(), required));
        }
        if self.primary_successes() + self.pending_primaries() < required_primaries {
            return Some((self.primary_successes(), required_primaries));
        }
        None
    }
}
