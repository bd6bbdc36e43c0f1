//! Requests the core serves: client reads and writes through quorum coordinators (paper 4.5),
//! put forwarding to a primary, the replica side of quorum operations, bucket and cluster
//! administration, and the peer requests of gossip, hints and handoff.
//!
//! Every request is answered exactly once, through [`NodeCore::respond`]. This module must not
//! know how requests arrive or how store operations are run.

use dynamo_quorum::{
    ClientContext, Command, GetCoordinator, GetRequest, PutCoordinator, PutRequest, Quorum,
    QuorumError, ReapCoordinator, ReplicaReply, ReplicaRequest, StandIns, Value,
};
use dynamo_resolve::Resolver;
use dynamo_ring::{NodeId, Ring, Role as ReplicaRole, Target};
use dynamo_storage::Durability;

use super::background::HintInFlight;
use super::{
    MAX_CLIENT_TIMEOUT_MS, NodeCore, PEER_TIMEOUT_MS, RequestId, StoreOp, StoreResult, failed,
};
use dynamo_protocol::{
    Access, BucketEntry, ClusterStatus, ErrorKind, GetReply, MAX_KEY_BYTES, MemberStatus, PutReply,
    Request, RequestOptions, Response, storage_key, valid_bucket_name,
};
use dynamo_protocol::{PeerIdentity, Role};

/// Where a client request on a key goes (see [`NodeCore::placement`]).
struct Placement {
    partition: u32,
    /// The extended preference list (paper 4.6).
    targets: Vec<Target>,
    /// The key's primaries that are down.
    down: Vec<NodeId>,
    /// Up nodes past the targets, in ring order, that may stand in for a silent target.
    spares: Vec<NodeId>,
}

/// What to do with the result of a call or store operation the core started.
#[derive(Debug)]
pub(super) enum Pending {
    /// A coordinator's `ReadLocal`.
    CoordinatorRead(u64),
    /// A coordinator's `WriteLocal`.
    CoordinatorWrite(u64),
    /// A fallback coordinator's copy of its write, kept as a hint for the primary it stands in
    /// for; the write is reported to the coordinator once the hint is stored.
    CoordinatorHint {
        coordinator: u64,
        written: dynamo_quorum::Object,
    },
    /// A replica request a coordinator sent to `from` (this node or a peer).
    CoordinatorReply { coordinator: u64, from: NodeId },
    /// Serving a peer's replica request.
    ServeReplica(RequestId),
    /// Applying a delivered hint; the answer is the stored set.
    HintApplied(RequestId),
    /// Applying a handoff batch.
    HandoffApplied(RequestId),
    /// Hint counts for a status answer.
    StatusHints(RequestId, ClusterStatus),
    /// A put forwarded to a replica of its key.
    Forwarded { request: RequestId, to: NodeId },
    /// One peer's answer to a bucket-table push.
    BucketPush(u64),
    /// Node state saved.
    StateSaved(&'static str),
    /// The owners of held hints, at the start of a delivery round.
    HintOwners,
    /// Hints read for an owner.
    HintsRead,
    /// A hint sent to its owner or to a replica of its partition.
    HintDelivered(HintInFlight),
    /// A hint merged on this node, which replicates its partition now.
    HintAppliedHere(HintInFlight),
    /// A delivered hint checked for removal.
    HintRemoved,
    /// A handoff scan.
    HandoffScanned(u64),
    /// A handoff batch sent.
    HandoffSent(u64),
    /// Copies of an acknowledged handoff batch dropped.
    HandedOffDropped,
    /// A replica's versions of a handed-off batch, to decide whether the copies may go.
    DropCheckFetched(u64),
    /// A tombstone sweep's scan.
    ReaperScanned,
    /// Serving a peer's anti-entropy diff step.
    ServeDiff(RequestId),
    /// Serving a peer's anti-entropy fetch.
    ServeFetch(RequestId),
    /// An anti-entropy diff session started or moved (store).
    AeDiff(u64),
    /// A peer's answer to an anti-entropy diff step.
    AeDiffReply {
        id: u64,
        session: Box<dynamo_merkle::DiffInitiator>,
    },
    /// A peer's versions of differing keys.
    AeFetched(u64),
    /// Fetched versions merged here.
    AeApplied(u64),
    /// A replica's keys for a listing (store or peer).
    ListScanned { listing: u64 },
    /// Serving a peer's key scan.
    ServeScanKeys(RequestId),
    /// Reading the Merkle roots of the partitions this node replicates.
    Roots(RequestId),
}

/// Most keys a peer may fetch in one request.
const MAX_FETCH_KEYS: usize = 4 * super::BATCH;

/// A client's put or delete, as received.
pub(super) struct ClientWrite {
    bucket: String,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    context: Option<String>,
    options: RequestOptions,
    forwarded: bool,
    write_id: Option<dynamo_quorum::WriteId>,
}

/// A quorum machine the core runs.
pub(super) enum Machine {
    Put(PutCoordinator),
    Get(GetCoordinator),
    /// A tombstone reap the core started itself (no client waits for it).
    Reap(ReapCoordinator),
}

impl Machine {
    fn poll_command(&mut self) -> Option<Command> {
        match self {
            Machine::Put(m) => m.poll_command(),
            Machine::Get(m) => m.poll_command(),
            Machine::Reap(m) => m.poll_command(),
        }
    }
    fn handle_reply(&mut self, now: u64, from: &NodeId, reply: ReplicaReply) {
        match self {
            Machine::Put(m) => m.handle_reply(now, from, reply),
            Machine::Get(m) => m.handle_reply(now, from, reply),
            Machine::Reap(m) => m.handle_reply(now, from, reply),
        }
    }
    fn handle_timeout(&mut self, now: u64) {
        match self {
            Machine::Put(m) => m.handle_timeout(now),
            Machine::Get(m) => m.handle_timeout(now),
            Machine::Reap(m) => m.handle_timeout(now),
        }
    }
    fn poll_timeout(&self) -> Option<u64> {
        match self {
            Machine::Put(m) => m.poll_timeout(),
            Machine::Get(m) => m.poll_timeout(),
            Machine::Reap(m) => m.poll_timeout(),
        }
    }
    fn is_finished(&self) -> bool {
        match self {
            Machine::Put(m) => m.is_finished(),
            Machine::Get(m) => m.is_finished(),
            Machine::Reap(m) => m.is_finished(),
        }
    }
    /// Spare nodes it asked in place of silent or failed replicas.
    fn stand_ins(&self) -> usize {
        match self {
            Machine::Put(m) => m.stand_ins(),
            Machine::Get(m) => m.stand_ins(),
            Machine::Reap(_) => 0,
        }
    }
}

/// A running coordinator and whom it answers.
pub(super) struct Coordinator {
    machine: Machine,
    partition: u32,
    /// The client's request; read repair goes on after it is answered.
    request: RequestId,
    /// The storage key (contexts are bound to it).
    key: Vec<u8>,
    /// Primaries that were down when it started, named in availability errors.
    down: Vec<NodeId>,
    /// Its deadline in `coordinator_timers`.
    deadline: Option<u64>,
    /// When it started, to measure foreground latency.
    started: u64,
    /// Set when this node coordinates a put as a fallback: the primary it stands in for, whose
    /// hint must hold the coordinator's own copy (else that copy would stay in this node's
    /// main store, where no read or handoff looks for it).
    hint_for: Option<NodeId>,
    /// How the bucket resolves a get's siblings for the client.
    resolver: Resolver,
}

impl Coordinator {
    /// A coordinator of the core's own (a reap): nobody waits for its answer.
    pub(super) fn background(machine: Machine, partition: u32, key: Vec<u8>, now: u64) -> Self {
        Self {
            machine,
            partition,
            request: RequestId(u64::MAX),
            key,
            down: Vec::new(),
            deadline: None,
            started: now,
            hint_for: None,
            resolver: Resolver::Siblings,
        }
    }
}

/// The error reply for a failed quorum operation; availability errors name the primaries down.
fn quorum_error(error: &QuorumError, down: &[NodeId]) -> Response {
    let kind = match error {
        QuorumError::NotEnoughReplicas { .. } | QuorumError::Unavailable { .. } => {
            ErrorKind::Unavailable
        }
        QuorumError::Timeout { .. } => ErrorKind::Timeout,
        QuorumError::Config(_)
        | QuorumError::ContextForAnotherKey
        | QuorumError::TooManySiblings { .. } => ErrorKind::BadRequest,
        QuorumError::NotACoordinator { .. } | QuorumError::Local(_) => ErrorKind::Internal,
    };
    let mut message = error.to_string();
    if matches!(kind, ErrorKind::Unavailable | ErrorKind::Timeout) && !down.is_empty() {
        let names: Vec<&str> = down.iter().map(NodeId::as_str).collect();
        message.push_str("; down: ");
        message.push_str(&names.join(", "));
    }
    Response::error(kind, message)
}

/// The store operation that serves a replica request on this node; a `fallback` (a node that
/// does not replicate the partition) reads its hints for the key too.
fn replica_op(
    partition: u32,
    request: ReplicaRequest,
    durability: Durability,
    fallback: bool,
) -> StoreOp {
    match request {
        ReplicaRequest::Read { key } if fallback => StoreOp::GetWithHints { partition, key },
        ReplicaRequest::Read { key } => StoreOp::Get { partition, key },
        ReplicaRequest::ReadSynced { key } => StoreOp::GetSynced { partition, key },
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
        ReplicaRequest::Holdings { key } => StoreOp::GetWithHints { partition, key },
        ReplicaRequest::Reap { key, expected } => StoreOp::RemoveIfEqual {
            partition,
            key,
            expected,
            durability,
        },
    }
}

/// The replica reply for the result of [`replica_op`].
fn replica_reply(result: Result<StoreResult, String>) -> ReplicaReply {
    match result {
        Ok(StoreResult::Found(Some(object))) => ReplicaReply::Found(object),
        Ok(StoreResult::Found(None)) => ReplicaReply::NotFound,
        Ok(StoreResult::Stored(_) | StoreResult::Done) => ReplicaReply::Written,
        Ok(StoreResult::Reaped(reaped)) => ReplicaReply::Reaped(reaped),
        Ok(other) => failed(format!("unexpected store result {other:?}")),
        Err(error) => failed(error),
    }
}

/// Whether a certificate of `role` may send a request of `access`. A node may also read and
/// write (it forwards client requests to a key's replicas), but not change membership or
/// buckets: only an admin may.
pub(crate) fn role_allows(role: Role, access: Access) -> bool {
    match access {
        Access::Peer => role == Role::Node,
        Access::Admin => role == Role::Admin,
        Access::Write => role != Role::ReadOnly,
        Access::Read => true,
    }
}

fn internal(message: impl Into<String>) -> Response {
    Response::error(ErrorKind::Internal, message)
}

impl NodeCore {
    pub(super) fn dispatch(
        &mut self,
        now: u64,
        id: RequestId,
        from: &PeerIdentity,
        request: Request,
    ) {
        let access = request.access();
        if !role_allows(from.role, access) {
            let needs = match access {
                Access::Read => "the read-only, client or admin role",
                Access::Write => "the client or admin role",
                Access::Admin => "the admin role",
                Access::Peer => "the node role",
            };
            let message = format!(
                "{from} may not {}: that needs {needs}, and its certificate has the {} role",
                access.describe(),
                from.role
            );
            self.respond(id, Response::error(ErrorKind::Forbidden, message));
            return;
        }
        let client_request = matches!(
            request,
            Request::Get { .. }
                | Request::Put { .. }
                | Request::CreateBucket(_)
                | Request::Leave
                | Request::RemoveNode { .. }
                | Request::ListKeys { .. }
        );
        if client_request && self.shutting_down {
            let message = format!("{} is shutting down; try another node", self.me);
            self.respond(id, Response::error(ErrorKind::NotReady, message));
            return;
        }
        match request {
            Request::Get {
                bucket,
                key,
                options,
            } => self.client_get(now, id, &bucket, &key, options),
            Request::Put {
                bucket,
                key,
                value,
                context,
                options,
                forwarded,
                write_id,
            } => {
                let write = ClientWrite {
                    bucket,
                    key,
                    value,
                    context,
                    options,
                    forwarded,
                    write_id: write_id.map(dynamo_quorum::WriteId),
                };
                self.client_put(now, id, write);
            }
            Request::CreateBucket(props) => match self.record_bucket(now, props) {
                Ok(table) => self.push_buckets(now, id, &table),
                Err(message) => self.respond(id, Response::error(ErrorKind::BadRequest, message)),
            },
            Request::Buckets(entries) => {
                self.merge_buckets(entries);
                self.flush_gossip();
                self.respond(id, Response::Ack);
            }
            Request::ListBuckets => {
                let buckets = self.buckets().cloned().collect();
                self.respond(id, Response::Buckets(buckets));
            }
            Request::Status => self.status_request(now, id),
            Request::Ping(bytes) if bytes.len() <= dynamo_protocol::MAX_PING_BYTES => {
                self.respond(id, Response::Pong(bytes));
            }
            Request::Ping(bytes) => {
                let message = format!(
                    "a ping carries at most {} bytes, not {}",
                    dynamo_protocol::MAX_PING_BYTES,
                    bytes.len()
                );
                self.respond(id, Response::error(ErrorKind::BadRequest, message));
            }
            Request::Ring => {
                let ring = self.ring.clone().map(Box::new);
                self.respond(id, Response::Ring(ring));
            }
            // Answered once "leaving" is on disk, so a crash cannot undo an acknowledged leave.
            Request::Leave => {
                if let Err(message) = self.leave(now, id) {
                    self.respond(id, Response::error(ErrorKind::BadRequest, message));
                }
            }
            Request::Replica { partition, request }
                if matches!(
                    request,
                    ReplicaRequest::ReadSynced { .. } | ReplicaRequest::Holdings { .. }
                ) && self.handoffs.busy_with(partition) =>
            {
                // A reaper asks: a batch of this partition scanned for handoff may still be
                // sent (retried from memory), carrying versions older than the tombstone.
                let reply = failed(format!(
                    "{} is handing off partition {partition}; the tombstone must wait",
                    self.me
                ));
                self.respond(id, Response::Replica(reply));
            }
            Request::Replica {
                partition,
                request: ReplicaRequest::Reap { key, .. },
            } if self.anti_entropy.fetching(partition, &key) => {
                // A reaper asks to remove: versions of this key fetched by anti-entropy before
                // the tombstone reached the peer may still be merged here after the removal,
                // and would bring the deleted value back. The tombstone waits for a later sweep.
                let reply = failed(format!(
                    "{} is fetching this key by anti-entropy; the tombstone must wait",
                    self.me
                ));
                self.respond(id, Response::Replica(reply));
            }
            Request::Replica { partition, request } => {
                if matches!(request, ReplicaRequest::Write { hint: Some(_), .. }) {
                    self.hint_stored();
                }
                let fallback = self.is_fallback_for(partition);
                let op = replica_op(partition, request, self.config.replica_durability, fallback);
                self.store(op, Pending::ServeReplica(id));
            }
            Request::Gossip { reply_to, message } => {
                if let Err(error) = self.gossip.handle_datagram(
                    std::time::Duration::from_millis(now),
                    &reply_to,
                    &message,
                ) {
                    let detail = format!("gossip message from {} refused: {error}", from.name);
                    self.event(super::CoreEvent::Detail(detail));
                }
                self.after_gossip(now);
                self.respond(id, Response::Ack);
            }
            Request::DeliverHint {
                partition,
                key,
                object,
            } => {
                // The sender deletes its copy on our answer: it must be on disk.
                let op = StoreOp::Apply {
                    partition,
                    key,
                    object,
                    durability: Durability::Sync,
                };
                self.store(op, Pending::HintApplied(id));
            }
            Request::Handoff { partition, entries } if self.is_fallback_for(partition) => {
                // The sender drops its copy on our answer: a node that does not replicate the
                // partition (the two rings differ while a change spreads) must not take it, or
                // the copy would sit where no read or anti-entropy looks. The sender tries
                // again with the ring it has then.
                let _ = entries;
                let message = format!(
                    "{} does not replicate partition {partition} under its ring (version {}): hand it to a current replica",
                    self.me,
                    self.ring.as_ref().map_or(0, dynamo_ring::Ring::version)
                );
                self.respond(id, Response::error(ErrorKind::Unavailable, message));
            }
            Request::Handoff { partition, entries } => {
                let op = StoreOp::ApplyBatch {
                    partition,
                    entries,
                    durability: Durability::Sync,
                };
                self.store(op, Pending::HandoffApplied(id));
            }
            Request::CancelHandoff => match self.cancel_handoff(now) {
                Ok(dropped) => self.respond(id, Response::Cancelled(dropped)),
                Err(message) => self.respond(id, Response::error(ErrorKind::BadRequest, message)),
            },
            Request::RemoveNode { name } => match self.remove_node(now, &name) {
                Ok(ring) => self.respond(id, Response::Ring(Some(Box::new(ring)))),
                Err(message) => self.respond(id, Response::error(ErrorKind::BadRequest, message)),
            },
            Request::Diff { partition, request } => {
                let op = StoreOp::DiffAnswer { partition, request };
                self.store(op, Pending::ServeDiff(id));
            }
            Request::ListKeys {
                bucket,
                cursor,
                limit,
            } => self.client_list_keys(now, id, &bucket, cursor, limit),
            Request::ScanKeys {
                partition,
                bucket,
                after,
                limit,
            } => self.serve_scan_keys(id, partition, &bucket, after, limit),
            Request::PartitionRoots => {
                let partitions: Vec<u32> = self.ring.as_ref().map_or_else(Vec::new, |ring| {
                    (0..ring.partition_count())
                        .filter(|&p| {
                            ring.replicas_of_partition(p, ring.target_n())
                                .contains(&&self.me)
                        })
                        .collect()
                });
                self.store(StoreOp::MerkleRoots { partitions }, Pending::Roots(id));
            }
            Request::Fetch { partition, keys } => {
                if keys.len() > MAX_FETCH_KEYS {
                    let message = format!(
                        "a fetch may name at most {MAX_FETCH_KEYS} keys, got {}",
                        keys.len()
                    );
                    return self.respond(id, Response::error(ErrorKind::BadRequest, message));
                }
                self.store(
                    StoreOp::GetMany { partition, keys },
                    Pending::ServeFetch(id),
                );
            }
        }
    }

    /// Routes the answer to a call.
    pub(super) fn on_call_result(
        &mut self,
        now: u64,
        pending: Pending,
        result: Result<Response, String>,
    ) {
        match pending {
            Pending::CoordinatorReply { coordinator, from } => {
                let reply = match result {
                    Ok(Response::Replica(reply)) => reply,
                    Ok(other) => failed(format!("unexpected answer {other:?}")),
                    Err(error) => failed(error),
                };
                self.coordinator_reply(now, coordinator, &from, reply);
            }
            Pending::ListScanned { listing } => {
                self.listing_scanned(now, listing, super::listing::scan_reply(result));
            }
            Pending::Forwarded { request, to } => {
                let response = result.unwrap_or_else(|error| {
                    Response::error(
                        ErrorKind::Unavailable,
                        format!("forwarding to {to}: {error}"),
                    )
                });
                self.respond(request, response);
            }
            Pending::BucketPush(push) => {
                if let Err(error) = result {
                    let detail =
                        format!("bucket table push failed ({error}); gossip will carry it");
                    self.event(super::CoreEvent::Detail(detail));
                }
                if let Some((request, remaining)) = self.bucket_pushes.get_mut(&push) {
                    *remaining = remaining.saturating_sub(1);
                    if *remaining == 0 {
                        let request = *request;
                        self.bucket_pushes.remove(&push);
                        self.respond(request, Response::Ack);
                    }
                }
            }
            Pending::HintDelivered(hint) => self.hint_delivered(now, hint, result),
            Pending::HandoffSent(transfer) => self.handoff_sent(now, transfer, &result),
            Pending::AeDiffReply { id, session } => {
                self.anti_entropy_diff_reply(now, id, session, result);
            }
            Pending::AeFetched(id) => self.anti_entropy_fetched(now, id, result),
            Pending::DropCheckFetched(id) => self.drop_check_fetched(id, &result),
            other => self.problem(format!("a call answered a store operation: {other:?}")),
        }
    }

    /// Routes the result of a store operation.
    pub(super) fn on_store_result(
        &mut self,
        now: u64,
        pending: Pending,
        result: Result<StoreResult, String>,
    ) {
        match pending {
            Pending::CoordinatorRead(coordinator) => {
                let read = match result {
                    Ok(StoreResult::Found(found)) => Ok(found),
                    Ok(other) => Err(format!("unexpected store result {other:?}")),
                    Err(error) => Err(error),
                };
                self.with_coordinator(now, coordinator, |machine| {
                    if let Machine::Put(put) = machine {
                        put.handle_local_read(now, read);
                    }
                });
            }
            Pending::CoordinatorWrite(coordinator) => {
                let hint_for = self
                    .coordinators
                    .get(&coordinator)
                    .and_then(|c| Some((c.hint_for.clone()?, c.partition, c.key.clone())));
                if let (Some((owner, partition, key)), Ok(StoreResult::Stored(written))) =
                    (hint_for, &result)
                {
                    self.hint_stored();
                    let op = StoreOp::PutHint {
                        owner: owner.to_string(),
                        partition,
                        key,
                        object: written.clone(),
                        durability: Durability::Sync,
                    };
                    let pending = Pending::CoordinatorHint {
                        coordinator,
                        written: written.clone(),
                    };
                    return self.store(op, pending);
                }
                let written = match result {
                    Ok(StoreResult::Stored(object)) => Ok(object),
                    Ok(other) => Err(format!("unexpected store result {other:?}")),
                    Err(error) => Err(error),
                };
                self.with_coordinator(now, coordinator, |machine| {
                    if let Machine::Put(put) = machine {
                        put.handle_local_write(now, written);
                    }
                });
            }
            Pending::CoordinatorHint {
                coordinator,
                written,
            } => {
                let written = result.map(|_| written);
                self.with_coordinator(now, coordinator, |machine| {
                    if let Machine::Put(put) = machine {
                        put.handle_local_write(now, written);
                    }
                });
            }
            Pending::CoordinatorReply { coordinator, from } => {
                self.coordinator_reply(now, coordinator, &from, replica_reply(result));
            }
            Pending::ServeReplica(request) => {
                self.respond(request, Response::Replica(replica_reply(result)));
            }
            Pending::HintApplied(request) => {
                let response = match result {
                    Ok(StoreResult::Stored(object)) => Response::Stored(object),
                    Ok(other) => internal(format!("unexpected store result {other:?}")),
                    Err(error) => internal(error),
                };
                self.respond(request, response);
            }
            Pending::HandoffApplied(request) => {
                let response = match result {
                    Ok(_) => Response::Ack,
                    Err(error) => internal(error),
                };
                self.respond(request, response);
            }
            Pending::StatusHints(request, mut status) => {
                if let Ok(StoreResult::Counts(counts)) = result {
                    for (member, pending) in status.members.iter_mut().zip(counts) {
                        member.pending_hints = pending;
                    }
                }
                self.respond(request, Response::Status(status));
            }
            Pending::StateSaved(name) => self.state_saved(name, result),
            Pending::ListScanned { listing } => {
                self.listing_scanned(now, listing, super::listing::scan_answer(result));
            }
            Pending::Roots(request) => {
                let response = match result {
                    Ok(StoreResult::Roots(roots)) => Response::Roots(roots),
                    Ok(other) => internal(format!("unexpected store result {other:?}")),
                    Err(error) => internal(error),
                };
                self.respond(request, response);
            }
            Pending::ServeScanKeys(request) => {
                let response = match super::listing::scan_answer(result) {
                    Ok(page) => Response::Keys(page),
                    Err(error) => internal(error),
                };
                self.respond(request, response);
            }
            Pending::HintOwners => self.hint_owners_read(now, result),
            Pending::HintsRead => self.hints_read(now, result),
            Pending::HintRemoved => self.hint_removed(now, result),
            Pending::HintAppliedHere(sent) => self.hint_applied_here(now, sent, result),
            Pending::HandoffScanned(transfer) => self.handoff_scanned(now, transfer, result),
            Pending::HandedOffDropped => self.handed_off_dropped(result),
            Pending::ReaperScanned => self.reaper_scanned(now, result),
            Pending::ServeDiff(request) => {
                let response = match result {
                    Ok(StoreResult::DiffAnswer(reply)) => Response::Diff(reply),
                    Ok(other) => internal(format!("unexpected store result {other:?}")),
                    Err(error) => Response::error(ErrorKind::BadRequest, error),
                };
                self.respond(request, response);
            }
            Pending::ServeFetch(request) => {
                let response = match result {
                    Ok(StoreResult::Scanned(entries)) => Response::Entries(entries),
                    Ok(other) => internal(format!("unexpected store result {other:?}")),
                    Err(error) => internal(error),
                };
                self.respond(request, response);
            }
            Pending::AeDiff(id) => self.anti_entropy_diff(now, id, result),
            Pending::AeApplied(id) => self.anti_entropy_applied(now, id, result),
            other => self.problem(format!("a store operation answered a call: {other:?}")),
        }
    }

    /// Whether this node stands in for others on `partition`: it does not replicate it under
    /// its ring (so what it holds of the partition's keys may be in its hint space).
    pub(super) fn is_fallback_for(&self, partition: u32) -> bool {
        self.ring.as_ref().is_some_and(|ring| {
            !ring
                .replicas_of_partition(partition, ring.target_n())
                .contains(&&self.me)
        })
    }

    /// The bucket's quorum with the request's overrides, checked.
    fn quorum_for(&self, bucket: &str, options: RequestOptions) -> Result<Quorum, Response> {
        if !valid_bucket_name(bucket) {
            return Err(Response::error(
                ErrorKind::BadRequest,
                format!("invalid bucket name {bucket:?}: use 1 to 64 characters of a-z 0-9 _ -"),
            ));
        }
        let props = self.buckets.get(bucket).map(|e| e.props.clone()).ok_or_else(|| {
            Response::error(
                ErrorKind::BadRequest,
                format!(
                    "bucket {bucket} does not exist; create it with `dynamo bucket create {bucket}`"
                ),
            )
        })?;
        let quorum = Quorum {
            n: props.n,
            r: options.r.unwrap_or(props.r),
            w: options.w.unwrap_or(props.w),
            pr: options.pr.unwrap_or(props.pr),
            pw: options.pw.unwrap_or(props.pw),
            ..Quorum::default()
        };
        quorum
            .validate()
            .map_err(|e| Response::error(ErrorKind::BadRequest, e.to_string()))?;
        Ok(quorum)
    }

    /// The request's timeout: the client's choice, capped at a minute, or the node's default.
    fn client_timeout_ms(&self, options: RequestOptions) -> u64 {
        options
            .timeout_ms
            .unwrap_or(self.config.request_timeout_ms)
            .clamp(1, MAX_CLIENT_TIMEOUT_MS)
    }

    /// The key's partition, its extended preference list, and the primaries that are down.
    fn placement(&self, key: &[u8], n: usize) -> Result<Placement, Response> {
        let Some(ring) = &self.ring else {
            return Err(Response::error(
                ErrorKind::NotReady,
                format!(
                    "{} has not received the ring yet; try another node",
                    self.me
                ),
            ));
        };
        let partition = ring.partition_of_key(key);
        let targets = ring.extended_preference_list(key, n, |node| self.is_up(node));
        // The first 3n distinct nodes clockwise: the n primaries, their fallbacks and n spares
        // when those are up (every client request walks this, so not the whole ring).
        let walk = ring.preference_list(key, 3 * n);
        let down = walk
            .iter()
            .take(n)
            .filter(|node| !self.is_up(node))
            .map(|node| (*node).clone())
            .collect();
        // Paper 4.6: the nodes after the extended preference list that are up, in ring order,
        // stand in for targets that fail or stay silent (at most n of them).
        let spares = walk
            .into_iter()
            .skip(n)
            .filter(|node| self.is_up(node) && !targets.iter().any(|t| &t.node == *node))
            .take(n)
            .cloned()
            .collect();
        Ok(Placement {
            partition,
            targets,
            down,
            spares,
        })
    }

    /// Who replaces a silent or failed target of a client request with `timeout_ms`.
    fn stand_ins(&self, spares: Vec<NodeId>, timeout_ms: u64) -> StandIns {
        let after_ms = (self.config.stand_in_after_ms > 0)
            .then(|| self.config.stand_in_after_ms.min(timeout_ms / 3));
        StandIns { spares, after_ms }
    }

    /// This node keeps a hint: counted, and hint delivery knows it holds one.
    fn hint_stored(&mut self) {
        self.counters.hints_stored += 1;
        self.hints.stored();
    }

    /// How `bucket` resolves siblings (`siblings` for a bucket this node does not know).
    fn resolver_of(&self, bucket: &str) -> Resolver {
        self.buckets
            .get(bucket)
            .map_or(Resolver::Siblings, |entry| entry.props.resolver)
    }

    /// The bucket's quorum for a request on `key`, once the key's size is checked.
    fn checked_request(
        &self,
        bucket: &str,
        key: &[u8],
        options: RequestOptions,
    ) -> Result<Quorum, Response> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Response::error(
                ErrorKind::BadRequest,
                format!("keys must be 1 to {MAX_KEY_BYTES} bytes, got {}", key.len()),
            ));
        }
        self.quorum_for(bucket, options)
    }

    fn client_get(
        &mut self,
        now: u64,
        id: RequestId,
        bucket: &str,
        key: &[u8],
        options: RequestOptions,
    ) {
        let prepared = self
            .checked_request(bucket, key, options)
            .and_then(|quorum| {
                let key = storage_key(bucket, key);
                let Placement {
                    partition,
                    targets,
                    down,
                    spares,
                } = self.placement(&key, quorum.n)?;
                let timeout_ms = self.client_timeout_ms(options);
                let request = GetRequest {
                    key: key.clone(),
                    targets,
                    stand_ins: self.stand_ins(spares, timeout_ms),
                    quorum,
                    timeout_ms,
                };
                let machine =
                    GetCoordinator::new(now, request).map_err(|e| quorum_error(&e, &down))?;
                Ok(Coordinator {
                    machine: Machine::Get(machine),
                    partition,
                    request: id,
                    key,
                    down,
                    deadline: None,
                    started: now,
                    hint_for: None,
                    resolver: self.resolver_of(bucket),
                })
            });
        match prepared {
            Ok(coordinator) => self.start_coordinator(now, coordinator),
            Err(response) => self.respond(id, response),
        }
    }

    fn client_put(&mut self, now: u64, id: RequestId, write: ClientWrite) {
        let ClientWrite {
            bucket,
            key,
            value,
            context,
            options,
            forwarded,
            write_id,
        } = write;
        let bucket = bucket.as_str();
        let quorum = match self.checked_request(bucket, &key, options) {
            Ok(q) => q,
            Err(response) => return self.respond(id, response),
        };
        if let Some(value) = &value
            && value.len() > self.config.max_value_bytes
        {
            let message = format!(
                "the value is {} bytes; the limit is {} bytes",
                value.len(),
                self.config.max_value_bytes
            );
            return self.respond(id, Response::error(ErrorKind::BadRequest, message));
        }
        // A bucket never stores what its resolver could not read (a delete has no value).
        let resolver = self.resolver_of(bucket);
        if let Some(value) = &value
            && let Err(error) = dynamo_resolve::validate(resolver, value)
        {
            let message = format!("bucket {bucket}: {error}");
            return self.respond(id, Response::error(ErrorKind::BadRequest, message));
        }
        let skey = storage_key(bucket, &key);
        let Placement {
            partition,
            targets,
            down,
            spares,
        } = match self.placement(&skey, quorum.n) {
            Ok(p) => p,
            Err(response) => return self.respond(id, response),
        };
        let primary_here = targets
            .iter()
            .any(|t| t.node == self.me && t.role == ReplicaRole::Primary);
        let target_here = targets.iter().any(|t| t.node == self.me);
        // Paper 4.5: a put is coordinated by one of the key's replicas, preferably a primary
        // (a fallback coordinator would keep its copy outside the hint space). A forwarded put
        // is coordinated here if this node is any target, so forwarding never loops.
        if !(primary_here || (forwarded && target_here)) {
            if forwarded {
                let message = format!(
                    "{} does not replicate this key under its ring; the ring is changing, retry",
                    self.me
                );
                return self.respond(id, Response::error(ErrorKind::NotReady, message));
            }
            let first = targets
                .iter()
                .find(|t| t.role == ReplicaRole::Primary)
                .or_else(|| targets.first())
                .map(|t| t.node.clone());
            let Some(first) = first else {
                let message = "no replica of this key is up";
                return self.respond(id, Response::error(ErrorKind::Unavailable, message));
            };
            let request = Request::Put {
                bucket: bucket.to_owned(),
                key,
                value,
                context,
                options,
                forwarded: true,
                write_id: write_id.map(|id| id.0),
            };
            let timeout = self.client_timeout_ms(options).saturating_add(500);
            let pending = Pending::Forwarded {
                request: id,
                to: first.clone(),
            };
            return self.call(now, &first, request, timeout, pending);
        }
        let context = match context.as_deref().map(ClientContext::from_text) {
            None => None,
            Some(Ok(context)) => Some(context),
            Some(Err(error)) => {
                return self.respond(
                    id,
                    Response::error(ErrorKind::BadRequest, error.to_string()),
                );
            }
        };
        let hint_for = targets.iter().find_map(|t| match &t.role {
            ReplicaRole::Fallback { for_node } if t.node == self.me => Some(for_node.clone()),
            _ => None,
        });
        let timeout_ms = self.client_timeout_ms(options);
        let request = PutRequest {
            key: skey.clone(),
            context,
            value: value.map_or(Value::Tombstone, |bytes| Value::data(bytes, write_id)),
            coordinator: self.me.clone(),
            actor: self.actor.clone(),
            targets,
            stand_ins: self.stand_ins(spares, timeout_ms),
            quorum,
            timeout_ms,
            // Issue 14: a last-write-wins bucket keeps no history of writes a coordinator saw.
            supersede_local: resolver == Resolver::Lww,
        };
        match PutCoordinator::new(now, request) {
            Ok(machine) => self.start_coordinator(
                now,
                Coordinator {
                    machine: Machine::Put(machine),
                    partition,
                    request: id,
                    key: skey,
                    down,
                    deadline: None,
                    started: now,
                    hint_for,
                    resolver: Resolver::Siblings,
                },
            ),
            Err(error) => self.respond(id, quorum_error(&error, &down)),
        }
    }

    pub(super) fn start_coordinator(&mut self, now: u64, coordinator: Coordinator) {
        let id = self.next_id().0;
        self.coordinators.insert(id, Box::new(coordinator));
        self.with_coordinator(now, id, |_| {});
    }

    /// Feeds a replica's reply to a coordinator.
    fn coordinator_reply(&mut self, now: u64, id: u64, from: &NodeId, reply: ReplicaReply) {
        self.with_coordinator(now, id, |machine| machine.handle_reply(now, from, reply));
    }

    pub(super) fn coordinator_timeout(&mut self, now: u64, id: u64) {
        self.with_coordinator(now, id, |machine| machine.handle_timeout(now));
    }

    /// Gives coordinator `id` an input, then carries out its commands until it waits again.
    fn with_coordinator(&mut self, now: u64, id: u64, input: impl FnOnce(&mut Machine)) {
        let Some(mut coordinator) = self.coordinators.remove(&id) else {
            return; // finished already: a late reply
        };
        if let Some(deadline) = coordinator.deadline.take() {
            self.coordinator_timers.remove(&(deadline, id));
        }
        input(&mut coordinator.machine);
        while let Some(command) = coordinator.machine.poll_command() {
            match command {
                Command::ReadLocal { key } => {
                    let op = StoreOp::Get {
                        partition: coordinator.partition,
                        key,
                    };
                    self.store(op, Pending::CoordinatorRead(id));
                }
                Command::WriteLocal {
                    key,
                    context,
                    value,
                } => {
                    // The coordinator's copy is the durable one (paper 6.1).
                    let op = StoreOp::Update {
                        partition: coordinator.partition,
                        key,
                        context,
                        value,
                        now,
                        durability: Durability::Sync,
                    };
                    self.store(op, Pending::CoordinatorWrite(id));
                }
                Command::Send { to, request } => {
                    if matches!(coordinator.machine, Machine::Get(_))
                        && matches!(request, ReplicaRequest::Write { .. })
                    {
                        self.counters.read_repairs += 1;
                    }
                    let partition = coordinator.partition;
                    let pending = Pending::CoordinatorReply {
                        coordinator: id,
                        from: to.clone(),
                    };
                    if to == self.me {
                        let fallback = self.is_fallback_for(partition);
                        let op = replica_op(
                            partition,
                            request,
                            self.config.replica_durability,
                            fallback,
                        );
                        self.store(op, pending);
                    } else if let Some(address) = self.address_of(&to) {
                        let call = self.next_id();
                        self.pending.insert(call, pending);
                        self.outputs.push_back(super::Output::Call {
                            id: Some(call),
                            address,
                            request: Request::Replica { partition, request },
                            timeout_ms: PEER_TIMEOUT_MS,
                        });
                    } else {
                        let reply = failed(format!("the address of {to} is unknown"));
                        coordinator.machine.handle_reply(now, &to, reply);
                    }
                }
                Command::Respond(dynamo_quorum::Response::Reap(outcome)) => {
                    self.reap_finished(now, outcome);
                }
                Command::Respond(response) => {
                    // Stand-ins happen only before the client is answered.
                    self.counters.stand_ins += coordinator.machine.stand_ins() as u64;
                    let latency = now.saturating_sub(coordinator.started);
                    self.anti_entropy.observe_client(now, latency);
                    let answer = Self::client_answer(&coordinator, response);
                    if let Response::Error(error) = &answer
                        && matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
                    {
                        self.counters.quorum_failures += 1;
                    }
                    self.respond(coordinator.request, answer);
                }
            }
        }
        if coordinator.machine.is_finished() {
            // A coordinator answers before it finishes; should one not, its client still gets
            // an answer (a no-op when it was answered). A reap always reports its outcome.
            if !matches!(coordinator.machine, Machine::Reap(_)) {
                let message = "the coordinator stopped without an answer";
                self.respond(coordinator.request, internal(message));
            }
            return;
        }
        coordinator.deadline = coordinator.machine.poll_timeout();
        if let Some(deadline) = coordinator.deadline {
            self.coordinator_timers.insert((deadline, id));
        }
        self.coordinators.insert(id, coordinator);
    }

    /// The protocol answer for a coordinator's response.
    fn client_answer(coordinator: &Coordinator, response: dynamo_quorum::Response) -> Response {
        let key = &coordinator.key;
        match response {
            dynamo_quorum::Response::Get(Ok(ok)) => {
                let context = ok.object.as_ref().map_or_else(
                    || ClientContext::new(key, dynamo_vclock::VClock::new()),
                    |object| ClientContext::of_object(key, object),
                );
                let context = context.to_text();
                if ok.found() {
                    let resolution = ok
                        .object
                        .as_ref()
                        .and_then(|object| dynamo_resolve::resolve(coordinator.resolver, object))
                        .map(Box::new);
                    Response::Get(GetReply {
                        values: ok.values().into_iter().map(<[u8]>::to_vec).collect(),
                        context,
                        deleted: false,
                        resolution,
                    })
                } else {
                    Response::NotFound { context }
                }
            }
            dynamo_quorum::Response::Put(Ok(ok)) => Response::Put(PutReply {
                context: ClientContext::of_object(key, &ok.object).to_text(),
                acknowledged: ok.acknowledged,
                warnings: ok
                    .warnings
                    .iter()
                    .map(|w| match w {
                        dynamo_quorum::Warning::ManySiblings(n) => {
                            format!("the key has {n} siblings; read it and resolve them")
                        }
                    })
                    .collect(),
            }),
            dynamo_quorum::Response::Get(Err(error)) | dynamo_quorum::Response::Put(Err(error)) => {
                quorum_error(&error, &coordinator.down)
            }
            dynamo_quorum::Response::Reap(_) => internal("a reap answered a client request"),
        }
    }

    /// Pushes the bucket table to every live member and answers once each push ended, so the
    /// bucket is usable through any node at once; gossip carries it to members that missed it.
    fn push_buckets(&mut self, now: u64, id: RequestId, table: &[BucketEntry]) {
        let peers = self.live_peers();
        if peers.is_empty() {
            return self.respond(id, Response::Ack);
        }
        let push = self.next_id().0;
        self.bucket_pushes.insert(push, (id, peers.len()));
        for peer in peers {
            let request = Request::Buckets(table.to_vec());
            self.call(
                now,
                &peer,
                request,
                PEER_TIMEOUT_MS,
                Pending::BucketPush(push),
            );
        }
    }

    /// The cluster as this node sees it; hint counts come from the store.
    fn status_request(&mut self, now: u64, id: RequestId) {
        let mut members: Vec<MemberStatus> = self
            .gossip
            .members()
            .map(|m| {
                let node = NodeId::from(m.id().as_str());
                MemberStatus {
                    id: node.to_string(),
                    address: m.identity().address.clone(),
                    zone: m.identity().zone.clone(),
                    capacity: m.identity().capacity,
                    status: format!("{:?}", m.status()).to_lowercase(),
                    up: self.is_up(&node),
                    in_ring: false,
                    partitions: 0,
                    ownership_percent: 0.0,
                    pending_hints: 0,
                    phi: (node != self.me)
                        .then(|| {
                            self.gossip
                                .phi(m.id(), std::time::Duration::from_millis(now))
                        })
                        .flatten(),
                }
            })
            .collect();
        if let Some(ring) = &self.ring {
            add_ring_view(ring, &mut members);
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let owners = members.iter().map(|m| m.id.clone()).collect();
        let status = ClusterStatus {
            node: self.me.to_string(),
            ring_version: self.ring.as_ref().map_or(0, Ring::version),
            members,
            anti_entropy: Box::new(self.anti_entropy_status(now)),
            handoff: self.handoffs.status(),
            reaper: Box::new(self.reaper_status()),
            counters: Box::new(self.counters),
        };
        self.store(
            StoreOp::PendingHints { owners },
            Pending::StatusHints(id, status),
        );
    }
}

/// Adds what the ring says of each member (and members gossip has not heard of yet).
fn add_ring_view(ring: &Ring, members: &mut Vec<MemberStatus>) {
    let counts = ring.partition_counts();
    let shares = ring.replica_shares(ring.target_n());
    for (i, member) in ring.members().iter().enumerate() {
        if !members.iter().any(|m| m.id == member.id.as_str()) {
            members.push(MemberStatus {
                id: member.id.to_string(),
                address: String::new(),
                zone: member.zone.clone(),
                capacity: member.capacity,
                status: "unknown".into(),
                up: false,
                in_ring: true,
                partitions: 0,
                ownership_percent: 0.0,
                pending_hints: 0,
                phi: None,
            });
        }
        let Some(entry) = members.iter_mut().find(|m| m.id == member.id.as_str()) else {
            continue;
        };
        entry.in_ring = true;
        entry.partitions = counts[i].1;
        entry.ownership_percent = shares[i].1 * 100.0;
    }
}
