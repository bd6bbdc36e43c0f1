//! Client-side quorum reads (paper 6.4 taken all the way): the copies of R of a key's
//! replicas, asked by the client itself and decided by [`dynamo_quorum::CopyQuorum`], with
//! the coordinated read as the fallback; and the counts of how reads ended.
//!
//! This module must not know how nodes serve a copy or coordinate a read; it only asks and
//! decides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use dynamo_protocol::{CopyReply, ErrorKind, Request, RequestOptions, Response, storage_key};
use dynamo_quorum::{CopyQuorum, Fallback, Verdict};

use super::{Attempt, Client, DEFAULT_HEDGE, GetOutcome};
use crate::address::NodeAddress;
use crate::transport::TransportError;

/// How a client-side read ended.
pub(super) enum CopyRead {
    /// R equal copies answered.
    Answered(GetOutcome),
    /// A coordinator must answer, and why.
    Fallback(Fallback),
    /// Not tried: a coordinator answers.
    NotTried,
}

/// What a client-side read asks: R of these candidates, for a bucket with this quorum.
struct CopyPlan {
    /// The read quorum of this read.
    r: usize,
    candidates: Vec<NodeAddress>,
    /// The bucket's N and default R, as the client knows them.
    n: usize,
    bucket_r: usize,
}

impl CopyPlan {
    /// Whether `copy`'s node knows the bucket's quorum as this plan does, where the request
    /// does not override it: a node that knows a higher R, or a primary read quorum, was
    /// told of a change the client has not fetched yet, and a coordinator must read.
    fn current(&self, copy: &CopyReply, options: RequestOptions) -> bool {
        copy.n == self.n
            && (options.r.is_some() || copy.r <= self.bucket_r)
            && (options.pr.is_some() || copy.pr == 0)
    }
}

/// How a client's reads were answered (see [`Client::read_paths`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadPaths {
    /// Answered from R replicas' equal copies.
    pub from_copies: u64,
    /// Answered by a coordinator because the copies differed (it repaired the stale ones).
    pub copies_differed: u64,
    /// Answered by a coordinator because too few replicas answered with a copy in time, or
    /// the bucket's quorum had changed since the client's last refresh.
    pub too_few_copies: u64,
    /// Answered by a coordinator without asking for copies (copy reads off, the bucket or ring
    /// not known yet, a primary read quorum, or too few replicas up).
    pub coordinated: u64,
}

#[derive(Debug, Default)]
pub(super) struct ReadPathCounters {
    pub(super) from_copies: AtomicU64,
    pub(super) copies_differed: AtomicU64,
    pub(super) too_few_copies: AtomicU64,
    pub(super) coordinated: AtomicU64,
}

/// The least time between two refreshes of the ring and buckets that copy reads ask for.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// How long a node that could not decode a copy read is not asked for copies.
const NO_COPIES_FOR: Duration = Duration::from_secs(60);

impl Client {
    /// How this client's reads were answered since it was made.
    pub fn read_paths(&self) -> ReadPaths {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ReadPaths {
            from_copies: count(&self.read_paths.from_copies),
            copies_differed: count(&self.read_paths.copies_differed),
            too_few_copies: count(&self.read_paths.too_few_copies),
            coordinated: count(&self.read_paths.coordinated),
        }
    }

    /// A client-side quorum read: R replicas' copies, asked at once, with the next replica
    /// asked when one fails or the hedge delay passes, for at most a third of the read's
    /// timeout (so the coordinated read that may follow still has time).
    pub(super) async fn read_copies(
        &self,
        bucket: &str,
        key: &[u8],
        options: RequestOptions,
    ) -> CopyRead {
        if !(self.partition_aware && self.copy_reads) {
            return CopyRead::NotTried;
        }
        self.refresh_if_stale().await;
        let Some(mut plan) = self.copy_plan(bucket, key, options) else {
            return CopyRead::NotTried;
        };
        let request = Request::ReadCopy {
            bucket: bucket.into(),
            key: key.to_vec(),
        };
        let mut quorum = CopyQuorum::new(plan.r, plan.candidates.len());
        let candidates = std::mem::take(&mut plan.candidates);
        let hedge = self
            .copy_latencies
            .lock()
            .map_or(DEFAULT_HEDGE, |l| l.hedge_delay());
        let timeout = options
            .timeout_ms
            .map_or(self.timeout, Duration::from_millis)
            .min(self.timeout);
        let give_up = tokio::time::sleep(timeout / 3);
        tokio::pin!(give_up);
        let mut pending = self.ordered(candidates).into_iter();
        let mut asked: JoinSet<Attempt> = JoinSet::new();
        for _ in 0..plan.r {
            self.ask_next(&mut pending, &mut asked, &request);
        }
        let verdict = loop {
            tokio::select! {
                joined = asked.join_next() => {
                    // `None`: every replica asked has answered, undecided (cannot happen: the
                    // last answer decides); a panicked task counts as no verdict either.
                    let Some(Ok((address, started, result))) = joined else { break None };
                    self.suspects.observe(&self.resolver, address.clone(), &result);
                    let step = match result {
                        Ok(Response::Copy(copy)) if !plan.current(&copy, options) => {
                            // The bucket's quorum changed since the last refresh.
                            self.invalidate_after(MIN_REFRESH);
                            break Some(Verdict::AskCoordinator(Fallback::TooFewCopies));
                        }
                        Ok(Response::Copy(copy))
                            if matches!(copy.answer, Response::Get(_) | Response::NotFound { .. }) =>
                        {
                            if let Ok(mut latencies) = self.copy_latencies.lock() {
                                latencies.record(started.elapsed());
                            }
                            quorum.answered(copy.digest, copy.answer)
                        }
                        other => {
                            match other {
                                // Not a replica under its ring: ours is stale.
                                Ok(Response::Error(error)) if error.kind == ErrorKind::NotReady => {
                                    self.invalidate_after(MIN_REFRESH);
                                }
                                // A node that could not decode it although its version
                                // should have (one of an earlier version is refused
                                // before anything is sent: `Unsupported`).
                                Err(TransportError::NotUnderstood { .. }) => {
                                    if let Ok(mut no_copies) = self.no_copies.lock() {
                                        no_copies.insert(address, Instant::now() + NO_COPIES_FOR);
                                    }
                                }
                                _ => {}
                            }
                            self.ask_next(&mut pending, &mut asked, &request);
                            quorum.failed()
                        }
                    };
                    if let Some(verdict) = step {
                        break Some(verdict);
                    }
                }
                () = tokio::time::sleep(hedge), if pending.len() > 0 => {
                    self.ask_next(&mut pending, &mut asked, &request);
                }
                () = &mut give_up => {
                    break Some(Verdict::AskCoordinator(Fallback::TooFewCopies));
                }
            }
        };
        self.finish_in_background(asked);
        match verdict {
            Some(Verdict::Answer(Response::Get(reply))) => {
                CopyRead::Answered(GetOutcome::Found(reply))
            }
            Some(Verdict::Answer(Response::NotFound { context })) => {
                CopyRead::Answered(GetOutcome::NotFound { context })
            }
            Some(Verdict::AskCoordinator(why)) => CopyRead::Fallback(why),
            Some(Verdict::Answer(_)) | None => CopyRead::Fallback(Fallback::TooFewCopies),
        }
    }

    /// The read quorum of a client-side read of `key` and the replicas to ask, in ring order:
    /// its extended preference list (paper 4.6) among the members up at the last refresh,
    /// less those that could not decode a copy read lately. `None` when the client does not
    /// know the bucket or the ring, or a primary read quorum is asked (only a coordinator
    /// knows which answers come from primaries).
    fn copy_plan(&self, bucket: &str, key: &[u8], options: RequestOptions) -> Option<CopyPlan> {
        let no_copies: Vec<NodeAddress> = match self.no_copies.lock() {
            Ok(no_copies) if no_copies.is_empty() => Vec::new(),
            Ok(mut no_copies) => {
                let now = Instant::now();
                no_copies.retain(|_, until| *until > now);
                no_copies.keys().cloned().collect()
            }
            Err(_) => Vec::new(),
        };
        let routing = self.routing.lock().ok()?;
        let routing = routing.as_ref()?;
        let props = routing.buckets.get(bucket)?;
        let r = options.r.unwrap_or(props.r);
        if options.pr.unwrap_or(props.pr) > 0 || r == 0 || r > props.n {
            return None;
        }
        let skey = storage_key(bucket, key);
        let candidates: Vec<NodeAddress> = routing
            .ring
            .extended_preference_list(&skey, props.n, |node| routing.is_up(node))
            .into_iter()
            .filter_map(|target| routing.up_address(&target.node))
            .filter(|address| !no_copies.contains(address))
            .collect();
        (candidates.len() >= r).then_some(CopyPlan {
            r,
            candidates,
            n: props.n,
            bucket_r: props.r,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that knows a newer quorum for the bucket than the client's cached one (a higher
    /// R, a primary read quorum, another N) makes the client ask a coordinator, unless the
    /// request sets that quorum itself.
    #[test]
    fn a_copy_from_a_node_with_a_newer_quorum_is_not_trusted() {
        let plan = CopyPlan {
            r: 2,
            candidates: Vec::new(),
            n: 3,
            bucket_r: 2,
        };
        let copy = |n, r, pr| CopyReply {
            digest: 1,
            answer: Response::NotFound {
                context: String::new(),
            },
            n,
            r,
            pr,
        };
        let r_override = RequestOptions {
            r: Some(1),
            ..RequestOptions::default()
        };
        let pr_override = RequestOptions {
            pr: Some(0),
            ..RequestOptions::default()
        };
        let none = RequestOptions::default();
        let cases = [
            ("the same quorum", copy(3, 2, 0), none, true),
            ("a lower R", copy(3, 1, 0), none, true),
            ("a higher R", copy(3, 3, 0), none, false),
            ("a higher R, overridden", copy(3, 3, 0), r_override, true),
            ("a primary read quorum", copy(3, 2, 1), none, false),
            ("PR, overridden", copy(3, 2, 1), pr_override, true),
            ("another N", copy(2, 2, 0), r_override, false),
        ];
        for (name, copy, options, current) in cases {
            assert_eq!(plan.current(&copy, options), current, "{name}");
        }
    }
}
