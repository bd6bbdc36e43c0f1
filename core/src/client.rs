//! Client reads and writes: the bucket's quorum with the request's overrides, the key's
//! placement on the ring (its extended preference list, the primaries that are down and the
//! spares that may stand in, paper 4.6), and a coordinator started here, or a put forwarded to
//! a primary of its key (4.5).
//!
//! This module must not know how a coordinator decides or how requests travel.

use dynamo_quorum::{
    GetCoordinator, GetRequest, MergeRequest, PutCoordinator, PutRequest, Quorum, ReplicaRequest,
    StandIns, Value,
};
use dynamo_resolve::Resolver;
use dynamo_ring::{NodeId, Role as ReplicaRole, Target};

use dynamo_protocol::{
    ErrorKind, MAX_KEY_BYTES, Request, RequestOptions, Response, storage_key, valid_bucket_name,
};

use super::coordinate::{Coordinator, Machine, quorum_error};
use super::serve::{AfterStore, replica_op};
use super::{CallError, MAX_CLIENT_TIMEOUT_MS, NodeCore, RequestId, Time};

/// What a client request's call answers.
#[derive(Debug)]
pub(super) enum AfterCall {
    /// A put forwarded to a replica of its key; its answer is the client's.
    Forwarded { request: RequestId, to: NodeId },
}

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

/// A restore's merge of versions, as received ([`Request::MergeVersions`]).
pub(super) struct ClientMerge {
    pub(super) bucket: String,
    pub(super) key: Vec<u8>,
    pub(super) object: dynamo_quorum::Object,
    pub(super) options: RequestOptions,
    pub(super) forwarded: bool,
}

/// A client's put or delete, as received.
pub(super) struct ClientWrite {
    pub(super) bucket: String,
    pub(super) key: Vec<u8>,
    pub(super) value: Option<Vec<u8>>,
    pub(super) context: Option<String>,
    pub(super) options: RequestOptions,
    pub(super) forwarded: bool,
    pub(super) write_id: Option<dynamo_quorum::WriteId>,
}

impl NodeCore {
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

    /// Whether `node` may be a target: up for a read; for a write, also with room on its disk.
    fn usable(&self, node: &NodeId, write: bool) -> bool {
        if write {
            self.takes_writes(node)
        } else {
            self.is_up(node)
        }
    }

    /// The ring, the key's partition and its extended preference list among the usable nodes
    /// (paper 4.6); refused while this node has no ring.
    fn targets(
        &self,
        key: &[u8],
        n: usize,
        write: bool,
    ) -> Result<(&dynamo_ring::Ring, u32, Vec<Target>), Response> {
        let Some(ring) = &self.ring else {
            return Err(Response::error(
                ErrorKind::NotReady,
                format!(
                    "{} has not received the ring yet; try another node",
                    self.me
                ),
            ));
        };
        let targets = ring.extended_preference_list(key, n, |node| self.usable(node, write));
        Ok((ring, ring.partition_of_key(key), targets))
    }

    /// The key's partition, its extended preference list, and the primaries that are down.
    /// For a write, a node whose disk is full counts as down: fallbacks take its writes with
    /// hints (see [`super::disk`]); reads still go to it.
    fn placement(&self, key: &[u8], n: usize, write: bool) -> Result<Placement, Response> {
        let usable = |node: &NodeId| self.usable(node, write);
        let (ring, partition, targets) = self.targets(key, n, write)?;
        // The first 3n distinct nodes clockwise: the n primaries, their fallbacks and n spares
        // when those are up (every client request walks this, so not the whole ring).
        let walk = ring.preference_list(key, 3 * n);
        let down = walk
            .iter()
            .take(n)
            .filter(|node| !usable(node))
            .map(|node| (*node).clone())
            .collect();
        // Paper 4.6: the nodes after the extended preference list that are up, in ring order,
        // stand in for targets that fail or stay silent (at most n of them).
        let spares = walk
            .into_iter()
            .skip(n)
            .filter(|node| usable(node) && !targets.iter().any(|t| &t.node == *node))
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

    /// How `bucket` resolves siblings (`siblings` for a bucket this node does not know).
    pub(super) fn resolver_of(&self, bucket: &str) -> Resolver {
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

    pub(super) fn client_get(
        &mut self,
        now: Time,
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
                } = self.placement(&key, quorum.n, false)?;
                let timeout_ms = self.client_timeout_ms(options);
                let request = GetRequest {
                    key: key.clone(),
                    targets,
                    stand_ins: self.stand_ins(spares, timeout_ms),
                    quorum,
                    timeout_ms,
                };
                let machine = GetCoordinator::new(now.as_millis(), request)
                    .map_err(|e| quorum_error(&e, &down))?;
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
                    answered: false,
                })
            });
        match prepared {
            Ok(coordinator) => self.start_coordinator(now, coordinator),
            Err(response) => self.respond(id, response),
        }
    }

    /// A client's read of this node's own copy of a key (client-side quorum reads, paper 6.4):
    /// served from the store alone, as a replica serves a coordinator's read (a fallback reads
    /// its hints too), if this node is one of the key's targets under its ring. A client with
    /// a stale ring is refused rather than told "not found" by a node that does not hold the
    /// key.
    pub(super) fn client_read_copy(&mut self, id: RequestId, bucket: &str, key: &[u8]) {
        let prepared = self
            .checked_request(bucket, key, RequestOptions::default())
            .and_then(|quorum| {
                let skey = storage_key(bucket, key);
                // Only the targets: a copy read needs neither the spares nor the primaries down.
                let (_, partition, targets) = self.targets(&skey, quorum.n, false)?;
                if !targets.iter().any(|t| t.node == self.me) {
                    let message = format!(
                        "{} is not a replica of this key under its ring (version {}); ask a coordinator",
                        self.me,
                        self.ring.as_ref().map_or(0, dynamo_ring::Ring::version)
                    );
                    return Err(Response::error(ErrorKind::NotReady, message));
                }
                Ok((partition, skey, quorum))
            });
        let (partition, skey, quorum) = match prepared {
            Ok(prepared) => prepared,
            Err(response) => return self.respond(id, response),
        };
        let fallback = self.is_fallback_for(partition);
        let read = ReplicaRequest::Read { key: skey.clone() };
        let op = replica_op(partition, read, self.config.replica_durability, fallback);
        let then = AfterStore::Copy {
            request: id,
            key: skey,
            resolver: self.resolver_of(bucket),
            quorum,
        };
        self.store(op, then);
    }

    pub(super) fn client_put(&mut self, now: Time, id: RequestId, write: ClientWrite) {
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
        let (placement, hint_for) = match self.write_placement(&skey, quorum.n, forwarded) {
            Ok(WritePlace::Here(placement, hint_for)) => (placement, hint_for),
            Ok(WritePlace::Forward(to)) => {
                let request = Request::Put {
                    bucket: bucket.to_owned(),
                    key,
                    value,
                    context,
                    options,
                    forwarded: true,
                    write_id: write_id.map(|id| id.0),
                };
                return self.forward_write(now, id, to, request, options);
            }
            Err(response) => return self.respond(id, response),
        };
        let Placement {
            partition,
            targets,
            down,
            spares,
        } = placement;
        let context = match context.as_deref().map(|token| self.open_context(token)) {
            None => None,
            Some(Ok(context)) => Some(context),
            Some(Err(error)) => {
                return self.respond(
                    id,
                    Response::error(ErrorKind::BadRequest, error.to_string()),
                );
            }
        };
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
        match PutCoordinator::new(now.as_millis(), request) {
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
                    answered: false,
                },
            ),
            Err(error) => self.respond(id, quorum_error(&error, &down)),
        }
    }
}

/// Longest actor name a merged version may carry (a node's is its name, `#`, its epoch and
/// a key incarnation).
const MAX_MERGED_ACTOR_BYTES: usize = 256;
/// Highest counter a merged version may carry: far above what any node reaches, and far
/// enough below `u64::MAX` that a later write's counter never saturates.
const MAX_MERGED_COUNTER: u64 = 1 << 48;
/// How far in the future (by this node's clock) a merged version may have been written.
const MAX_MERGED_AHEAD_MS: u64 = 24 * 3600 * 1000;

/// Where a client write is coordinated (see [`NodeCore::write_placement`]).
enum WritePlace {
    /// Here: the key's placement, and the primary this node stands in for if it is a fallback.
    Here(Placement, Option<NodeId>),
    /// At this replica of the key.
    Forward(NodeId),
}

impl NodeCore {
    /// Paper 4.5: a write is coordinated by one of the key's replicas, preferably a primary
    /// (a fallback coordinator would keep its copy outside the hint space). A forwarded write
    /// is coordinated here if this node is any target, so forwarding never loops.
    fn write_placement(
        &self,
        skey: &[u8],
        n: usize,
        forwarded: bool,
    ) -> Result<WritePlace, Response> {
        let placement = self.placement(skey, n, true)?;
        let targets = &placement.targets;
        let primary_here = targets
            .iter()
            .any(|t| t.node == self.me && t.role == ReplicaRole::Primary);
        let target_here = targets.iter().any(|t| t.node == self.me);
        if primary_here || (forwarded && target_here) {
            let hint_for = targets.iter().find_map(|t| match &t.role {
                ReplicaRole::Fallback { for_node } if t.node == self.me => Some(for_node.clone()),
                _ => None,
            });
            return Ok(WritePlace::Here(placement, hint_for));
        }
        if forwarded && self.disk.full {
            let message = format!("{}'s disk is full; ask another replica", self.me);
            return Err(Response::error(ErrorKind::Unavailable, message));
        }
        if forwarded {
            let message = format!(
                "{} does not replicate this key under its ring; the ring is changing, retry",
                self.me
            );
            return Err(Response::error(ErrorKind::NotReady, message));
        }
        targets
            .iter()
            .find(|t| t.role == ReplicaRole::Primary)
            .or_else(|| targets.first())
            .map(|t| WritePlace::Forward(t.node.clone()))
            .ok_or_else(|| Response::error(ErrorKind::Unavailable, "no replica of this key is up"))
    }

    /// What a restore may merge into `bucket`: what a put could have written (values within the
    /// size limit that the bucket's resolver reads), with dots and times a node could have
    /// made. A merge of anything else is refused before it reaches a replica.
    fn check_merged(
        &self,
        now: Time,
        bucket: &str,
        object: &dynamo_quorum::Object,
    ) -> Result<(), String> {
        if object.is_empty() {
            return Err("there are no versions to merge".into());
        }
        let resolver = self.resolver_of(bucket);
        for (actor, counter, value) in object.iter() {
            if actor.as_str().len() > MAX_MERGED_ACTOR_BYTES || counter > MAX_MERGED_COUNTER {
                return Err(format!(
                    "a version's dot ({} bytes of actor, counter {counter}) is not one a node makes",
                    actor.as_str().len()
                ));
            }
            if value.superseded().len() > dynamo_quorum::MAX_SUPERSEDED {
                return Err("a delete names more superseded writes than a node records".into());
            }
            let Some(bytes) = value.bytes() else {
                continue;
            };
            if bytes.len() > self.config.max_value_bytes {
                return Err(format!(
                    "a version holds {} bytes; the limit is {} bytes",
                    bytes.len(),
                    self.config.max_value_bytes
                ));
            }
            dynamo_resolve::validate(resolver, bytes)
                .map_err(|error| format!("bucket {bucket}: {error}"))?;
        }
        let newest = dynamo_quorum::newest_write_ms(object);
        if newest > now.as_millis().saturating_add(MAX_MERGED_AHEAD_MS) {
            return Err(format!(
                "a version was written at {newest} ms, more than a day ahead of {}'s clock",
                self.me
            ));
        }
        Ok(())
    }

    /// Sends a client write to the replica `to` that coordinates it; its answer is the
    /// client's.
    fn forward_write(
        &mut self,
        now: Time,
        id: RequestId,
        to: NodeId,
        request: Request,
        options: RequestOptions,
    ) {
        let timeout = self.client_timeout_ms(options).saturating_add(500);
        let node = to.clone();
        let then = AfterCall::Forwarded { request: id, to };
        self.call(now, &node, request, timeout, then);
    }

    /// A restore's [`Request::MergeVersions`]: the versions are checked as a put's value would
    /// be (key, size, the bucket's resolver), then joined into the key's replicas through the
    /// write path, coordinated and forwarded as a put is.
    pub(super) fn client_merge(&mut self, now: Time, id: RequestId, merge: ClientMerge) {
        let ClientMerge {
            bucket,
            key,
            object,
            options,
            forwarded,
        } = merge;
        let quorum = match self.checked_request(&bucket, &key, options) {
            Ok(q) => q,
            Err(response) => return self.respond(id, response),
        };
        if let Err(message) = self.check_merged(now, &bucket, &object) {
            return self.respond(id, Response::error(ErrorKind::BadRequest, message));
        }
        let skey = storage_key(&bucket, &key);
        let (placement, hint_for) = match self.write_placement(&skey, quorum.n, forwarded) {
            Ok(WritePlace::Here(placement, hint_for)) => (placement, hint_for),
            Ok(WritePlace::Forward(to)) => {
                let request = Request::MergeVersions {
                    bucket,
                    key,
                    object,
                    options,
                    forwarded: true,
                };
                return self.forward_write(now, id, to, request, options);
            }
            Err(response) => return self.respond(id, response),
        };
        let timeout_ms = self.client_timeout_ms(options);
        let request = MergeRequest {
            key: skey.clone(),
            object,
            coordinator: self.me.clone(),
            targets: placement.targets,
            stand_ins: self.stand_ins(placement.spares, timeout_ms),
            quorum,
            timeout_ms,
        };
        match PutCoordinator::merge(now.as_millis(), request) {
            Ok(machine) => self.start_coordinator(
                now,
                Coordinator {
                    machine: Machine::Put(machine),
                    partition: placement.partition,
                    request: id,
                    key: skey,
                    down: placement.down,
                    deadline: None,
                    started: now,
                    hint_for,
                    resolver: Resolver::Siblings,
                    answered: false,
                },
            ),
            Err(error) => self.respond(id, quorum_error(&error, &placement.down)),
        }
    }
}

impl NodeCore {
    /// The replica a put was forwarded to answered (or did not): its answer is the client's.
    pub(super) fn client_call_answered(
        &mut self,
        after: AfterCall,
        result: Result<Response, CallError>,
    ) {
        let AfterCall::Forwarded { request, to } = after;
        let response = result.unwrap_or_else(|error| {
            Response::error(
                ErrorKind::Unavailable,
                format!("forwarding to {to}: {error}"),
            )
        });
        self.respond(request, response);
    }
}
