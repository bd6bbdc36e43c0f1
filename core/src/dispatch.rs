//! The entry of every request: the role its certificate carries must allow it (an operator
//! changes membership and buckets, an application reads and writes, a node does peer work),
//! then it goes to the part of the core that serves it.
//!
//! Every request is answered exactly once, through [`NodeCore::respond`]. This module must not
//! know how requests arrive or how store operations are run.

use dynamo_protocol::{Access, ErrorKind, PeerIdentity, Request, Response, Role};

use super::client::{ClientMerge, ClientWrite};
use super::listing::ListRequest;
use super::{NodeCore, RequestId, Time};

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
        now: Time,
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
        if self.refuse_if_removed(id, from, &request) {
            return;
        }
        if let Some(why) = self.stopped()
            && !matches!(request, Request::Status | Request::Ping(_))
        {
            let message = why.to_owned();
            return self.respond(id, Response::error(ErrorKind::NotReady, message));
        }
        let client_request = matches!(
            request,
            Request::Get { .. }
                | Request::ReadCopy { .. }
                | Request::Put { .. }
                | Request::CreateBucket(_)
                | Request::Leave
                | Request::RemoveNode { .. }
                | Request::ListKeys { .. }
                | Request::ExportVersions { .. }
                | Request::MergeVersions { .. }
        );
        if client_request && self.shutting_down {
            let message = format!("{} is shutting down; try another node", self.me);
            self.respond(id, Response::error(ErrorKind::NotReady, message));
            return;
        }
        // An export, or a peer's scan for one, carries the versions of the keys it lists.
        let export = matches!(
            request,
            Request::ExportVersions { .. } | Request::ScanVersions { .. }
        );
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
                // The pusher counts this as a copy of the table: answered once it is on disk.
                self.when_saved(super::STATE_BUCKETS, super::SaveWaiter::Request(id));
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
            Request::Replica { partition, request } => self.serve_replica(id, partition, request),
            Request::Gossip { reply_to, message } => {
                if let Err(error) = self.gossip.handle_datagram(
                    std::time::Duration::from_millis(now.as_millis()),
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
            } => self.serve_hint(id, partition, key, object),
            Request::Handoff { partition, entries } => self.serve_handoff(id, partition, entries),
            Request::CancelHandoff => match self.cancel_handoff(now) {
                Ok(dropped) => self.respond(id, Response::Cancelled(dropped)),
                Err(message) => self.respond(id, Response::error(ErrorKind::BadRequest, message)),
            },
            Request::RemoveNode { name } => match self.remove_node(now, &name) {
                Ok(ring) => self.respond(id, Response::Ring(Some(Box::new(ring)))),
                Err(message) => self.respond(id, Response::error(ErrorKind::BadRequest, message)),
            },
            Request::Diff { partition, request } => self.serve_diff(id, partition, request),
            Request::ListKeys {
                bucket,
                cursor,
                limit,
            }
            | Request::ExportVersions {
                bucket,
                cursor,
                limit,
            } => {
                let list = ListRequest {
                    bucket,
                    cursor,
                    limit,
                    versions: export,
                };
                self.client_list_keys(now, id, list);
            }
            Request::ScanKeys {
                partition,
                bucket,
                after,
                limit,
            }
            | Request::ScanVersions {
                partition,
                bucket,
                after,
                limit,
            } => self.serve_scan_keys(id, partition, &bucket, after, limit, export),
            Request::MergeVersions {
                bucket,
                key,
                object,
                options,
                forwarded,
            } => {
                let merge = ClientMerge {
                    bucket,
                    key,
                    object,
                    options,
                    forwarded,
                };
                self.client_merge(now, id, merge);
            }
            Request::PartitionRoots => self.serve_roots(id),
            Request::Fetch { partition, keys } => self.serve_fetch(id, partition, keys),
            Request::ReadCopy { bucket, key } => self.client_read_copy(id, &bucket, &key),
        }
    }
}
