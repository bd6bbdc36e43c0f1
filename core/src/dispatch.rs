//! The entry of every request: the role its certificate carries must allow it (an operator
//! changes membership and buckets, an application reads and writes, a node does peer work),
//! then it goes to the part of the core that serves it.
//!
//! Every request is answered exactly once, through [`NodeCore::respond`]. This module must not
//! know how requests arrive or how store operations are run.

use dynamo_quorum::ReplicaRequest;
use dynamo_storage::Durability;

use dynamo_protocol::{Access, ErrorKind, PeerIdentity, Request, Response, Role};

use super::client::ClientWrite;
use super::serve::{AfterStore, replica_op};
use super::{NodeCore, RequestId, StoreOp, failed};

/// Most keys a peer may fetch in one request.
const MAX_FETCH_KEYS: usize = 4 * super::BATCH;

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

impl NodeCore {
    /// Serves `request` from `from`, or refuses it when its role does not allow it.
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
                self.store(op, AfterStore::Replica(id));
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
                self.store(op, AfterStore::HintApplied(id));
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
                self.store(op, AfterStore::HandoffApplied(id));
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
                self.store(op, AfterStore::Diff(id));
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
                self.store(StoreOp::MerkleRoots { partitions }, AfterStore::Roots(id));
            }
            Request::Fetch { partition, keys } => {
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
    }
}
