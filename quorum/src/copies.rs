//! Client-side quorum reads (paper 6.4, client-driven coordination taken all the way): a
//! client asks R of a key's replicas for their own copy instead of asking one node to
//! coordinate, which saves the coordinator's hop and its requests to the other replicas.
//!
//! A [`CopyQuorum`] gathers the copies of one read and decides. Each copy comes with a digest
//! of the versions the replica holds. When R copies carry the same digest, every replica asked
//! holds the same versions, so the answer built from any one of them is the answer a
//! coordinator would have built from their merge. When two differ, a coordinator must merge
//! them and repair the stale replica (paper 4.5), so the read goes to one; and so it does when
//! fewer than R replicas can answer (a coordinator stands spares in for them, paper 4.6). The
//! client never merges versions and never writes a replica: nodes take versions only from
//! nodes.
//!
//! This module must not know how requests travel, what an answer holds, which replicas are
//! asked first, or when to hedge; it only decides what the copies add up to.

/// What the copies of a read add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<A> {
    /// R replicas hold the same copy: the answer built from it is the read's.
    Answer(A),
    /// Ask a coordinator: the copies differ (it repairs them), or too few replicas answered.
    AskCoordinator(Fallback),
}

/// Why a client-side read goes to a coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Two replicas hold different versions.
    Diverged,
    /// Fewer than R replicas can still answer.
    TooFewCopies,
}

/// The copies of one client-side read, until R agree or they cannot; `A` is the answer each
/// replica builds from its copy.
///
/// ```
/// use dynamo_quorum::{CopyQuorum, Fallback, Verdict};
///
/// // R = 2 of 3 replicas: two equal copies answer the read.
/// let mut read = CopyQuorum::new(2, 3);
/// assert_eq!(read.answered(7, "book"), None);
/// assert_eq!(read.answered(7, "book"), Some(Verdict::Answer("book")));
/// // A copy that differs sends the read to a coordinator, which repairs the stale replica.
/// let mut read = CopyQuorum::new(2, 3);
/// read.answered(7, "book");
/// assert_eq!(read.answered(8, "pen"), Some(Verdict::AskCoordinator(Fallback::Diverged)));
/// ```
#[derive(Debug, Clone)]
pub struct CopyQuorum<A> {
    r: usize,
    /// Candidates that have not answered yet (asked or not).
    remaining: usize,
    /// The first copy's digest and answer.
    first: Option<(u64, A)>,
    /// Copies equal to the first.
    agreeing: usize,
    decided: bool,
}

impl<A> CopyQuorum<A> {
    /// A read that needs `r` equal copies from `candidates` replicas.
    pub fn new(r: usize, candidates: usize) -> Self {
        Self {
            r,
            remaining: candidates,
            first: None,
            agreeing: 0,
            decided: false,
        }
    }

    /// A replica's copy: the digest of its versions and the answer built from them; the
    /// verdict once the read is decided (then later calls return `None`).
    pub fn answered(&mut self, digest: u64, answer: A) -> Option<Verdict<A>> {
        if self.decided {
            return None;
        }
        self.remaining = self.remaining.saturating_sub(1);
        match &self.first {
            None => self.first = Some((digest, answer)),
            Some((first, _)) if *first != digest => {
                return Some(self.decide(Verdict::AskCoordinator(Fallback::Diverged)));
            }
            Some(_) => {}
        }
        self.agreeing += 1;
        if self.agreeing >= self.r
            && let Some((_, answer)) = self.first.take()
        {
            return Some(self.decide(Verdict::Answer(answer)));
        }
        self.too_few()
    }

    /// Ask a coordinator when the copies that can still come cannot make R.
    fn too_few(&mut self) -> Option<Verdict<A>> {
        if self.agreeing + self.remaining < self.r {
            return Some(self.decide(Verdict::AskCoordinator(Fallback::TooFewCopies)));
        }
        None
    }

    /// A replica failed, refused or stayed silent past the client's timeout.
    pub fn failed(&mut self) -> Option<Verdict<A>> {
        if self.decided {
            return None;
        }
        self.remaining = self.remaining.saturating_sub(1);
        self.too_few()
    }

    fn decide(&mut self, verdict: Verdict<A>) -> Verdict<A> {
        self.decided = true;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input to a read: a copy with its digest (the answer is the digest too), or a failure.
    #[derive(Clone, Copy)]
    enum Input {
        Holds(u64),
        Failed,
    }
    use Input::{Failed, Holds};

    /// A case: its name, R, the candidates, the inputs in order, and the verdict (`None`:
    /// still undecided).
    type Case<'a> = (&'a str, usize, usize, &'a [Input], Option<Verdict<u64>>);

    /// Paper 6.4 with the quorum rule of 4.5: R equal copies answer; a difference or too few
    /// copies send the read to a coordinator.
    #[test]
    fn the_copies_decide_as_a_quorum_would() {
        use Verdict::{Answer, AskCoordinator};
        let diverged = Some(AskCoordinator(Fallback::Diverged));
        let too_few = Some(AskCoordinator(Fallback::TooFewCopies));
        let cases: &[Case<'_>] = &[
            (
                "two equal copies of three",
                2,
                3,
                &[Holds(5), Holds(5)],
                Some(Answer(5)),
            ),
            (
                "equal not-founds",
                2,
                3,
                &[Holds(0), Holds(0)],
                Some(Answer(0)),
            ),
            ("R = 1 answers at once", 1, 3, &[Holds(9)], Some(Answer(9))),
            ("R = 3 needs all three", 3, 3, &[Holds(4), Holds(4)], None),
            (
                "R = 3, three equal",
                3,
                3,
                &[Holds(4), Holds(4), Holds(4)],
                Some(Answer(4)),
            ),
            (
                "a stale copy",
                2,
                3,
                &[Holds(5), Holds(6)],
                diverged.clone(),
            ),
            ("a missing copy", 2, 3, &[Holds(0), Holds(6)], diverged),
            ("one failure, a spare left", 2, 3, &[Failed, Holds(5)], None),
            (
                "a failure, then two equal",
                2,
                3,
                &[Holds(5), Failed, Holds(5)],
                Some(Answer(5)),
            ),
            (
                "two failures of three",
                2,
                3,
                &[Failed, Holds(5), Failed],
                too_few.clone(),
            ),
            ("fewer candidates than R", 2, 1, &[Holds(5)], too_few),
        ];
        for (name, r, candidates, inputs, expect) in cases {
            let mut read = CopyQuorum::new(*r, *candidates);
            let mut verdict = None;
            for input in *inputs {
                let step = match input {
                    Holds(digest) => read.answered(*digest, *digest),
                    Failed => read.failed(),
                };
                if let Some(step) = step {
                    assert!(verdict.is_none(), "{name}: decided twice");
                    verdict = Some(step);
                }
            }
            assert_eq!(&verdict, expect, "{name}");
        }
    }

    /// Once decided, later copies change nothing (a slow replica answering after a hedge).
    #[test]
    fn late_copies_are_ignored() {
        let mut read = CopyQuorum::new(1, 3);
        assert_eq!(read.answered(3, "a"), Some(Verdict::Answer("a")));
        assert_eq!(read.answered(4, "b"), None);
        assert_eq!(read.failed(), None);
    }
}
