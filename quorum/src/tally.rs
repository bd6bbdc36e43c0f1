//! Bookkeeping shared by the coordinators: which targets were asked, which answered and how,
//! so late, duplicate and unsolicited replies are told apart from the ones that count.
//!
//! This module must not know what a reply means for a get or a put.

use dynamo_ring::{NodeId, Role, Target};

use crate::error::QuorumError;

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
}

impl Tally {
    pub(crate) fn new(targets: Vec<Target>) -> Self {
        let answers = vec![None; targets.len()];
        Self {
            targets,
            answers,
            failures: Vec::new(),
        }
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
