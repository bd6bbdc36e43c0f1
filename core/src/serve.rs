//! The replica side of peer requests: quorum reads and writes of a coordinator (paper 4.5),
//! delivered hints (4.6), handoff batches, Merkle diffs and fetches (4.7), and the roots a
//! checker compares; and a client's read of this replica's copy of a key (client-side quorum
//! reads, 6.4). Each runs as one store operation and is answered with its result.
//!
//! This module must not know who coordinates or why a peer asks.

use dynamo_merkle::DiffRequest;
use dynamo_quorum::{Object, ReplicaReply, ReplicaRequest};
use dynamo_storage::Durability;

use dynamo_protocol::{ErrorKind, Response};

use super::{
    NodeCore, RequestId, StoreError, StoreErrorKind, StoreOp, StoreResult, failed, internal,
};

/// Most keys a peer may fetch in one request.
const MAX_FETCH_KEYS: usize = 4 * super::BATCH;

/// What a served request's store operation answers.
#[derive(Debug, Clone)]
pub(super) enum AfterStore {
    /// A client's read of this node's copy of storage key `key`, answered as a get with the
    /// copy's digest and the bucket's (N, R, PR).
    Copy {
        request: RequestId,
        key: Vec<u8>,
        resolver: dynamo_resolve::Resolver,
        quorum: dynamo_quorum::Quorum,
    },
    /// A replica request.
    Replica(RequestId),
    /// A delivered hint; the answer is the stored set.
    HintApplied(RequestId),
    /// A handoff batch.
    HandoffApplied(RequestId),
    /// A Merkle diff step.
    Diff(RequestId),
    /// A fetch of keys for anti-entropy.
    Fetch(RequestId),
    /// The Merkle roots of the partitions this node replicates.
    Roots(RequestId),
}

/// The store operation that serves a replica request on this node; a `fallback` (a node that
/// does not replicate the partition) reads its hints for the key too.
pub(super) fn replica_op(
    partition: u32,
    request: ReplicaRequest,
    durability: Durability,
    fallback: bool,
) -> StoreOp {
    match request {
        ReplicaRequest::Read { key } if fallback => StoreOp::GetWithHints { partition, key },
        ReplicaRequest::Read { key } => StoreOp::Get { partition, key },
        ReplicaRequest::Write {
            key,
            object,
            hint: None,
        } => StoreOp::Apply {
            partition,
            key,
            object,
            durability,
        },
        ReplicaRequest::Write {
            key,
            object,
            hint: Some(owner),
        } => StoreOp::PutHint {
            owner: owner.to_string(),
            partition,
            key,
            object,
            durability,
        },
        // Everything outside the replicas' data: hints, and the main store of a node that is
        // not a replica (or a copy not handed off yet). A non-primary holding the key in its
        // main store means the rings differ or a handoff is pending: the reaper must wait.
        // Synced first, like a primary's read for a reaper (which includes its hints too): an
        // answer must survive a power loss (a buffered drop of a copy would come back and
        // resurrect a reaped value).
        ReplicaRequest::ReadSynced { key } | ReplicaRequest::Holdings { key } => {
            StoreOp::GetSynced { partition, key }
        }
        ReplicaRequest::Reap { key, expected } => StoreOp::RemoveIfEqual {
            partition,
            key,
            expected,
            durability,
        },
    }
}

impl NodeCore {
    /// Whether this node stands in for others on `partition`: it does not replicate it under
    /// its ring (so what it holds of the partition's keys may be in its hint space).
    pub(super) fn is_fallback_for(&self, partition: u32) -> bool {
        self.ring.as_ref().is_some_and(|ring| {
            !ring
                .replicas_of_partition(partition, ring.target_n())
                .contains(&&self.me)
        })
    }
}

impl NodeCore {
    /// Answers the served request with its store operation's result.
    pub(super) fn served(&mut self, after: AfterStore, result: Result<StoreResult, StoreError>) {
        let (request, response) = match after {
            AfterStore::Copy {
                request,
                key,
                resolver,
                quorum,
            } => (request, self.copy_answer(&key, resolver, quorum, result)),
            AfterStore::Replica(request) => {
                (request, Response::Replica(self.replica_reply(result)))
            }
            AfterStore::HintApplied(request) => {
                let response = match result {
                    Ok(StoreResult::Stored(object)) => Response::Stored(object),
                    Ok(other) => internal(self.wrong_kind("a delivered hint", &other)),
                    Err(error) => internal(error.to_string()),
                };
                (request, response)
            }
            AfterStore::HandoffApplied(request) => {
                let response = match result {
                    Ok(_) => Response::Ack,
                    Err(error) => internal(error.to_string()),
                };
                (request, response)
            }
            AfterStore::Diff(request) => {
                let response = match result {
                    Ok(StoreResult::DiffAnswer(reply)) => Response::Diff(reply),
                    Ok(other) => internal(self.wrong_kind("a diff answer", &other)),
                    // A malformed step is the peer's fault; a failing disk is ours.
                    Err(error) if error.kind == StoreErrorKind::Refused => {
                        Response::error(ErrorKind::BadRequest, error.message)
                    }
                    Err(error) => internal(error.message),
                };
                (request, response)
            }
            AfterStore::Fetch(request) => {
                let response = match result {
                    Ok(StoreResult::Scanned(entries)) => Response::Entries(entries),
                    Ok(other) => internal(self.wrong_kind("a fetch", &other)),
                    Err(error) => internal(error.to_string()),
                };
                (request, response)
            }
            AfterStore::Roots(request) => {
                let response = match result {
                    Ok(StoreResult::Roots(roots)) => Response::Roots(roots),
                    Ok(other) => internal(self.wrong_kind("the Merkle roots", &other)),
                    Err(error) => internal(error.to_string()),
                };
                (request, response)
            }
        };
        self.respond(request, response);
    }

    /// The answer to a client's read of this node's copy of `key`: what a get would answer
    /// from it alone, and the digest of its versions (postcard is deterministic and a version
    /// set keeps its actors sorted, so equal copies have equal digests).
    fn copy_answer(
        &mut self,
        key: &[u8],
        resolver: dynamo_resolve::Resolver,
        quorum: dynamo_quorum::Quorum,
        result: Result<StoreResult, StoreError>,
    ) -> Response {
        let object = match result {
            Ok(StoreResult::Found(object)) => object,
            Ok(other) => return internal(self.wrong_kind("a read of a copy", &other)),
            Err(error) => return internal(error.to_string()),
        };
        let digest = match &object {
            None => 0,
            Some(object) => match postcard::to_stdvec(object) {
                Ok(bytes) => dynamo_merkle::key_hash(key, &bytes).0,
                Err(error) => return internal(format!("encoding a copy: {error}")),
            },
        };
        let answer = self.get_answer(key, object.as_ref(), resolver);
        Response::Copy(Box::new(dynamo_protocol::CopyReply {
            digest,
            answer,
            n: quorum.n,
            r: quorum.r,
            pr: quorum.pr,
        }))
    }

    /// The replica reply for the result of [`replica_op`].
    pub(super) fn replica_reply(
        &mut self,
        result: Result<StoreResult, StoreError>,
    ) -> ReplicaReply {
        match result {
            Ok(StoreResult::Found(Some(object))) => ReplicaReply::Found(object),
            Ok(StoreResult::Found(None)) => ReplicaReply::NotFound,
            Ok(StoreResult::Stored(_) | StoreResult::Done) => ReplicaReply::Written,
            Ok(StoreResult::Reaped(reaped)) => ReplicaReply::Reaped(reaped),
            Ok(other) => failed(self.wrong_kind("a replica operation", &other)),
            Err(error) => failed(error.to_string()),
        }
    }
}

impl NodeCore {
    /// A coordinator's replica request: read, write (a hint when it names an owner), holdings
    /// or reap, refused while a reap could bring a deleted value back.
    pub(super) fn serve_replica(&mut self, id: RequestId, partition: u32, request: ReplicaRequest) {
        if matches!(
            request,
            ReplicaRequest::ReadSynced { .. } | ReplicaRequest::Holdings { .. }
        ) && self.handoffs.busy_with(partition)
        {
            // A reaper asks: a batch of this partition scanned for handoff may still be sent
            // (retried from memory), carrying versions older than the tombstone.
            let reply = failed(format!(
                "{} is handing off partition {partition}; the tombstone must wait",
                self.me
            ));
            return self.respond(id, Response::Replica(reply));
        }
        if let ReplicaRequest::Reap { key, .. } = &request
            && self.anti_entropy.fetching(partition, key)
        {
            // A reaper asks to remove: versions of this key fetched by anti-entropy before the
            // tombstone reached the peer may still be merged here after the removal, and would
            // bring the deleted value back. The tombstone waits for a later sweep.
            let reply = failed(format!(
                "{} is fetching this key by anti-entropy; the tombstone must wait",
                self.me
            ));
            return self.respond(id, Response::Replica(reply));
        }
        let leaving = matches!(
            self.status(),
            Some(dynamo_gossip::Status::Leaving | dynamo_gossip::Status::Left)
        );
        if matches!(request, ReplicaRequest::Write { .. }) && leaving {
            // A coordinator with an older ring: a node that is leaving takes no more data, or
            // it could say `Left` with a copy still here (issue 26). A joining node does: the
            // ring that adds it may reach a coordinator before it reaches the node itself.
            let reply = failed(format!(
                "{} is leaving the cluster; write to a current replica",
                self.me
            ));
            return self.respond(id, Response::Replica(reply));
        }
        if matches!(request, ReplicaRequest::Write { hint: Some(_), .. }) {
            self.hint_stored();
        }
        let fallback = self.is_fallback_for(partition);
        let op = replica_op(partition, request, self.config.replica_durability, fallback);
        self.store(op, AfterStore::Replica(id));
    }

    /// A hint delivered to this node, applied durably: the sender deletes its copy on our
    /// answer.
    pub(super) fn serve_hint(
        &mut self,
        id: RequestId,
        partition: u32,
        key: Vec<u8>,
        object: Object,
    ) {
        if self.is_fallback_for(partition) {
            // The holder's ring is older than ours (or we left): the hint belongs to the
            // partition's current replicas, where reads, anti-entropy and the reaper look.
            return self.respond(id, self.not_a_replica(partition));
        }
        let op = StoreOp::Apply {
            partition,
            key,
            object,
            durability: Durability::Sync,
        };
        self.store(op, AfterStore::HintApplied(id));
    }

    /// The refusal of data for `partition`, which this node does not replicate under its ring.
    fn not_a_replica(&self, partition: u32) -> Response {
        let message = format!(
            "{} does not replicate partition {partition} under its ring (version {}): hand it to a current replica",
            self.me,
            self.ring.as_ref().map_or(0, dynamo_ring::Ring::version)
        );
        Response::error(ErrorKind::Unavailable, message)
    }

    /// A handoff batch, applied durably, or refused when this node does not replicate the
    /// partition under its ring: the sender drops its copy on our answer, and a copy here
    /// would sit where no read or anti-entropy looks (the sender retries with its next ring).
    pub(super) fn serve_handoff(
        &mut self,
        id: RequestId,
        partition: u32,
        entries: Vec<(Vec<u8>, Object)>,
    ) {
        if self.is_fallback_for(partition) {
            return self.respond(id, self.not_a_replica(partition));
        }
        let op = StoreOp::ApplyBatch {
            partition,
            entries,
            durability: Durability::Sync,
        };
        self.store(op, AfterStore::HandoffApplied(id));
    }

    /// A step of a peer's Merkle diff over `partition` (paper 4.7).
    pub(super) fn serve_diff(&mut self, id: RequestId, partition: u32, request: DiffRequest) {
        let op = StoreOp::DiffAnswer { partition, request };
        self.store(op, AfterStore::Diff(id));
    }

    /// The Merkle roots of every partition this node replicates, for a checker.
    pub(super) fn serve_roots(&mut self, id: RequestId) {
        let partitions: Vec<u32> = self.ring.as_ref().map_or_else(Vec::new, |ring| {
            (0..ring.partition_count())
                .filter(|&p| {
                    ring.replicas_of_partition(p, ring.target_n())
                        .contains(&&self.me)
                })
                .collect()
        });
        self.store(StoreOp::MerkleRoots { partitions }, AfterStore::Roots(id));
    }

    /// A peer's fetch of keys anti-entropy found different, bounded in keys.
    pub(super) fn serve_fetch(&mut self, id: RequestId, partition: u32, keys: Vec<Vec<u8>>) {
        if keys.len() > MAX_FETCH_KEYS {
            let message = format!(
                "a fetch may name at most {MAX_FETCH_KEYS} keys, got {}",
                keys.len()
            );
            return self.respond(id, Response::error(ErrorKind::BadRequest, message));
        }
        self.store(StoreOp::GetMany { partition, keys }, AfterStore::Fetch(id));
    }
}
