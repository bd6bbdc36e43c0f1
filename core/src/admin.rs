//! Cluster administration a node answers itself: pushing a changed bucket table to every
//! live member (answered once each push ended) and the cluster's status as this node sees it.
//!
//! This module must not know how buckets or membership are decided (`membership.rs`).

use dynamo_ring::{NodeId, Ring};

use dynamo_protocol::{BucketEntry, ClusterStatus, ErrorKind, MemberStatus, Request, Response};

use super::{
    CallError, CoreEvent, NodeCore, PEER_TIMEOUT_MS, PushId, RequestId, STATE_BUCKETS, SaveWaiter,
    StoreError, StoreOp, StoreResult, Time,
};

/// A bucket table push waiting for its answers.
#[derive(Debug)]
pub(super) struct BucketPush {
    /// The `CreateBucket` it answers.
    request: RequestId,
    /// Peers, and this node's own save, still to answer.
    remaining: usize,
    /// Why this node's own save failed, if it did.
    local_failure: Option<String>,
}

/// What an administrative call answers.
#[derive(Debug, Clone, Copy)]
pub(super) enum AfterCall {
    /// One peer's copy of a bucket table push.
    BucketPush(PushId),
}

/// What an administrative store operation answers.
#[derive(Debug)]
pub(super) enum AfterStore {
    /// Hint counts for a status answer.
    StatusHints(RequestId, Box<ClusterStatus>),
}

impl NodeCore {
    /// Pushes the bucket table to every live member and answers once each push ended, so the
    /// bucket is usable through any node at once; gossip carries it to members that missed it.
    pub(super) fn push_buckets(&mut self, now: Time, id: RequestId, table: &[BucketEntry]) {
        let peers = self.live_peers();
        let push = PushId(self.next_id().0);
        // Answered once every peer answered and this node's own copy is on disk: a bucket
        // acknowledged is a bucket some node has saved.
        self.bucket_pushes.insert(
            push,
            BucketPush {
                request: id,
                remaining: peers.len() + 1,
                local_failure: None,
            },
        );
        for peer in peers {
            let request = Request::Buckets(table.to_vec());
            self.call(
                now,
                &peer,
                request,
                PEER_TIMEOUT_MS,
                AfterCall::BucketPush(push),
            );
        }
        self.when_saved(STATE_BUCKETS, SaveWaiter::Push(push));
    }

    /// The cluster as this node sees it; hint counts come from the store.
    pub(super) fn status_request(&mut self, now: Time, id: RequestId) {
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
                    status: if self.is_removed_member(m.id()) {
                        "removed".into()
                    } else {
                        format!("{:?}", m.status()).to_lowercase()
                    },
                    up: self.is_up(&node),
                    in_ring: false,
                    partitions: 0,
                    ownership_percent: 0.0,
                    pending_hints: 0,
                    phi: (node != self.me)
                        .then(|| {
                            self.gossip
                                .phi(m.id(), std::time::Duration::from_millis(now.as_millis()))
                        })
                        .flatten(),
                    disk_full: self.is_disk_full(&node),
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
        let then = AfterStore::StatusHints(id, Box::new(status));
        self.store(StoreOp::PendingHints { owners }, then);
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
                disk_full: false,
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

impl NodeCore {
    /// A peer took a bucket table push (or did not: gossip carries it later).
    pub(super) fn admin_call_answered(
        &mut self,
        after: AfterCall,
        result: &Result<Response, CallError>,
    ) {
        let AfterCall::BucketPush(push) = after;
        if let Err(error) = result {
            let detail = format!("bucket table push failed ({error}); gossip will carry it");
            self.event(CoreEvent::Detail(detail));
        }
        self.bucket_push_answered(push, None);
    }

    /// One answer of a bucket push came: a peer's (whatever it was), or this node's own save
    /// (`local_failure` when it failed, which the client is told).
    pub(super) fn bucket_push_answered(&mut self, push: PushId, local_failure: Option<&str>) {
        let Some(entry) = self.bucket_pushes.get_mut(&push) else {
            return;
        };
        if let Some(failure) = local_failure {
            entry.local_failure = Some(failure.to_owned());
        }
        entry.remaining = entry.remaining.saturating_sub(1);
        if entry.remaining > 0 {
            return;
        }
        let Some(done) = self.bucket_pushes.remove(&push) else {
            return;
        };
        let response = match done.local_failure {
            None => Response::Ack,
            Some(failure) => Response::error(
                ErrorKind::Internal,
                format!("the bucket table could not be saved: {failure}"),
            ),
        };
        self.respond(done.request, response);
    }

    /// The hint counts of a status answer were read.
    pub(super) fn admin_store_done(
        &mut self,
        after: AfterStore,
        result: Result<StoreResult, StoreError>,
    ) {
        let AfterStore::StatusHints(request, mut status) = after;
        match result {
            Ok(StoreResult::Counts(counts)) => {
                for (member, pending) in status.members.iter_mut().zip(counts) {
                    member.pending_hints = pending;
                }
            }
            Ok(other) => {
                self.wrong_kind("hint counts", &other);
            }
            // The status is worth more than its hint counts.
            Err(_) => {}
        }
        self.respond(request, Response::Status(*status));
    }
}
