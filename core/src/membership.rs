//! Membership decisions of the core (paper 4.8): reacting to gossip, which ring to adopt, the
//! claimant's ring changes, the bucket table, and this node's own status.
//!
//! The ring and the bucket table travel in gossip state; every node adopts the ring with the
//! highest `(version, digest)`, and the claimant (the live, alive ring member with the lowest
//! id) adds members that announce `Joining` (or are alive but missing) and removes those that
//! announce `Leaving`. A node that left stays out when restarted unless it is started with
//! `dynamo join` (`rejoin`); a leave is acknowledged once it is on disk. `RemoveNode` takes a
//! member that is down out of the ring on the node asked (its partitions go to others and
//! anti-entropy refills them); a node started with `join --replace NAME` names a dead member,
//! and the claimant drops it and adds the new node in one ring change, so nothing else moves.
//!
//! This module must not know how gossip messages travel or how the claim places partitions.

use std::collections::BTreeMap;

use dynamo_gossip::{Event, NodeId as GossipId, Status};
use dynamo_quorum::Quorum;
use dynamo_ring::{Member, NodeId, Ring, TransferPlan, key_position};

use super::{
    CoreEvent, MAX_BUCKET_N, MAX_BUCKETS, NodeCore, Output, STATE_BUCKETS, STATE_RING,
    STATE_STATUS, Time, context_key, encode_status, removal,
};
use dynamo_protocol::{BucketEntry, BucketProps, Request, valid_bucket_name};

/// Gossip key holding a member's ring (postcard).
pub(super) const RING_KEY: &str = "ring";
/// Gossip key holding a member's bucket table (postcard).
pub(super) const BUCKETS_KEY: &str = "buckets";
/// Gossip key under which a joining node names the dead member it replaces.
pub(super) const REPLACES_KEY: &str = "replaces";

pub(super) fn gossip_id(id: &NodeId) -> GossipId {
    GossipId::new(id.as_str())
}

/// Orders rings: higher version first, then a digest of the encoded ring so two claimants that
/// raced during a partition still agree once it heals. `bytes` is `ring` encoded, as gossiped.
fn rank_of(ring: &Ring, bytes: &[u8]) -> (u64, u128) {
    (ring.version(), key_position(bytes))
}

/// Checks a bucket definition: a valid name, 1 <= N <= `max_n`, and a valid quorum.
pub(super) fn check_bucket(props: &BucketProps, max_n: usize) -> Result<(), String> {
    if !valid_bucket_name(&props.name) {
        return Err(format!(
            "invalid bucket name {:?}: use 1 to 64 characters of a-z 0-9 _ -",
            props.name
        ));
    }
    let limit = max_n.min(MAX_BUCKET_N);
    if props.n > limit {
        return Err(format!(
            "n = {} is more than the ring spreads replicas for ({max_n}); use n <= {limit}",
            props.n,
        ));
    }
    let quorum = Quorum {
        pr: props.pr,
        pw: props.pw,
        ..Quorum::new(props.n, props.r, props.w)
    };
    quorum.validate().map_err(|e| e.to_string())
}

/// Merges bucket entries into `buckets`, the later `(stamp, by)` winning; returns whether
/// anything changed. Invalid entries are ignored.
pub(super) fn merge_bucket_entries(
    buckets: &mut BTreeMap<String, BucketEntry>,
    entries: Vec<BucketEntry>,
) -> bool {
    let mut changed = false;
    for entry in entries {
        let current = buckets.get(&entry.props.name);
        let newer = current
            .is_none_or(|current| (entry.stamp_ms, &entry.by) > (current.stamp_ms, &current.by));
        let room = current.is_some() || buckets.len() < MAX_BUCKETS;
        if newer && room && check_bucket(&entry.props, MAX_BUCKET_N).is_ok() {
            buckets.insert(entry.props.name.clone(), entry);
            changed = true;
        }
    }
    changed
}

impl NodeCore {
    /// After any gossip input: react to what changed (rings, buckets, claims, statuses) and
    /// send what gossip wants sent.
    pub(super) fn after_gossip(&mut self, now: Time) {
        // Only members whose ring or bucket table changed are decoded.
        let mut rings_from = Vec::new();
        let mut buckets_from = Vec::new();
        let mut removals_from = Vec::new();
        let mut keys_changed = false;
        while let Some(event) = self.gossip.poll_event() {
            if let Event::StateChanged { node, key } = event {
                match key.as_str() {
                    RING_KEY => rings_from.push(node),
                    BUCKETS_KEY => buckets_from.push(node),
                    removal::REMOVED_KEY => removals_from.push(node),
                    context_key::CONTEXT_KEY => keys_changed = true,
                    _ => {}
                }
            }
        }
        self.merge_buckets_from(&buckets_from);
        self.merge_removals_from(now, &removals_from);
        self.forget_removed(now);
        // Every member's key is read only when one changed, or while this node has none.
        if keys_changed || self.context_key.is_none() {
            self.settle_context_key();
        }
        if let Some(plan) = self.adopt_best_ring(&rings_from) {
            self.start_handoff(now, &plan);
        }
        if let Some(plan) = self.claim(now) {
            self.start_handoff(now, &plan);
        }
        self.update_own_status(now);
        self.flush_gossip();
    }

    /// Turns gossip's transmits into calls whose answers are not needed.
    pub(super) fn flush_gossip(&mut self) {
        while let Some(transmit) = self.gossip.poll_transmit() {
            match transmit
                .message
                .encode(dynamo_gossip::DEFAULT_MAX_MESSAGE_BYTES)
            {
                Ok(message) => self.outputs.push_back(Output::Call {
                    id: None,
                    address: transmit.address,
                    request: Request::Gossip {
                        reply_to: self.config.address.clone(),
                        message,
                    },
                    timeout_ms: super::PEER_TIMEOUT_MS,
                }),
                Err(error) => self.problem(format!("could not encode a gossip message: {error}")),
            }
        }
    }

    /// Merges the bucket tables of `changed` members into ours.
    fn merge_buckets_from(&mut self, changed: &[GossipId]) {
        let tables: Vec<Vec<BucketEntry>> = changed
            .iter()
            .filter_map(|id| self.gossip.member(id)?.get(BUCKETS_KEY))
            .filter_map(|bytes| postcard::from_bytes(bytes).ok())
            .collect();
        self.merge_buckets(tables.into_iter().flatten().collect());
    }

    /// Merges entries into the table; publishes and saves it if anything changed.
    pub(super) fn merge_buckets(&mut self, entries: Vec<BucketEntry>) {
        if merge_bucket_entries(&mut self.buckets, entries) {
            self.publish_buckets(true);
        }
    }

    /// Puts the bucket table in gossip and, with `save`, in the store (so a full-cluster restart
    /// keeps every bucket); the table is encoded once for both.
    pub(super) fn publish_buckets(&mut self, save: bool) {
        let table: Vec<&BucketEntry> = self.buckets.values().collect();
        let bytes = match postcard::to_allocvec(&table) {
            Ok(bytes) => bytes,
            Err(error) => {
                return self.problem(format!("could not encode the bucket table: {error}"));
            }
        };
        if save {
            self.save_state(STATE_BUCKETS, bytes.clone(), None);
        }
        if let Err(error) = self.gossip.set(BUCKETS_KEY, bytes) {
            self.problem(format!("could not publish the bucket table: {error}"));
        }
    }

    /// Adopts the best ring one of the `changed` members publishes, if it beats ours; returns
    /// the transfers the change implies.
    fn adopt_best_ring(&mut self, changed: &[GossipId]) -> Option<TransferPlan> {
        let mut best: Option<(Ring, (u64, u128))> = None;
        for id in changed {
            let Some(bytes) = self.gossip.member(id).and_then(|m| m.get(RING_KEY)) else {
                continue;
            };
            let Ok(ring) = postcard::from_bytes::<Ring>(bytes) else {
                continue;
            };
            let rank = rank_of(&ring, bytes);
            if best.as_ref().is_none_or(|(_, b)| rank > *b) {
                best = Some((ring, rank));
            }
        }
        let (best, rank) = best?;
        if self.ring_rank.is_some_and(|current| current >= rank) {
            return None;
        }
        Some(self.adopt(best))
    }

    /// Makes `ring` the ring in use: saved, published, and the plan from the old one returned.
    fn adopt(&mut self, ring: Ring) -> TransferPlan {
        let plan = match &self.ring {
            Some(old) => TransferPlan::between(old, &ring),
            None => TransferPlan::default(),
        };
        if let Some(bytes) = self.install_ring(ring) {
            self.save_state(STATE_RING, bytes, None);
        }
        plan
    }

    /// Uses `ring` and publishes it; returns its encoding.
    pub(super) fn install_ring(&mut self, ring: Ring) -> Option<Vec<u8>> {
        let version = ring.version();
        let members = ring.members().len();
        let encoded = match postcard::to_allocvec(&ring) {
            Ok(bytes) => {
                self.ring_rank = Some(rank_of(&ring, &bytes));
                if let Err(error) = self.gossip.set(RING_KEY, bytes.clone()) {
                    self.problem(format!("could not publish the ring: {error}"));
                }
                Some(bytes)
            }
            Err(error) => {
                self.problem(format!("could not encode the ring: {error}"));
                None
            }
        };
        self.ring = Some(ring);
        self.ring_generation += 1;
        self.event(CoreEvent::RingAdopted { version, members });
        encoded
    }

    /// Paper 4.8.1: membership changes are explicit. The claimant (the live, alive ring member
    /// with the lowest id) adds members that announce `Joining` and removes those that announce
    /// `Leaving`, once, and gossip spreads the new ring. Members removed for good are never
    /// added back, and taken out if a racing claim added one.
    fn claim(&mut self, now: Time) -> Option<TransferPlan> {
        if self.is_removed() {
            return None;
        }
        let ring = self.ring.as_ref()?;
        let alive_in_ring = |id: &NodeId| {
            ring.member(id).is_some()
                && self.is_up(id)
                && !self.is_removed_member(&gossip_id(id))
                && self
                    .gossip
                    .member(&gossip_id(id))
                    .is_some_and(|m| m.status() == Status::Alive)
        };
        let claimant = ring
            .members()
            .iter()
            .map(|m| &m.id)
            .find(|id| alive_in_ring(id))?;
        if *claimant != self.me {
            return None;
        }
        // Members a live joining node replaces (`dynamo join --replace`): only members that are
        // down, never the claimant.
        let replaced: Vec<NodeId> = self
            .gossip
            .members()
            .filter(|view| view.status() == Status::Joining && view.is_live())
            .filter_map(|view| view.get(REPLACES_KEY))
            .map(|name| NodeId::from(String::from_utf8_lossy(name).as_ref()))
            .filter(|dead| ring.member(dead).is_some() && !self.is_up(dead) && dead != claimant)
            .collect();
        let mut desired: Vec<Member> = ring
            .members()
            .iter()
            .filter(|member| {
                let status = self
                    .gossip
                    .member(&gossip_id(&member.id))
                    .map(|m| m.status());
                !matches!(status, Some(Status::Leaving | Status::Left))
                    && !replaced.contains(&member.id)
                    && !self.is_removed_member(&gossip_id(&member.id))
            })
            .cloned()
            .collect();
        for view in self.gossip.members() {
            let id = NodeId::from(view.id().as_str());
            // Joining members, and alive ones a racing claim left out (a status never goes
            // back to joining), are added.
            let wants_in = matches!(view.status(), Status::Joining | Status::Alive)
                && !self.removals.covers_member(&view);
            if wants_in && view.is_live() && ring.member(&id).is_none() {
                let identity = view.identity();
                desired.push(Member::new(
                    id,
                    identity.zone.clone(),
                    identity.capacity.max(1),
                ));
            }
        }
        let same = desired.len() == ring.members().len()
            && desired.iter().all(|m| ring.member(&m.id) == Some(m));
        if same || desired.is_empty() {
            return None;
        }
        match ring.with_members(desired) {
            Ok((next, _)) => {
                // A replaced member is removed for good: it must not hold up the reaper, nor
                // come back with what it holds.
                for dead in &replaced {
                    self.record_removal(now, dead);
                }
                Some(self.adopt(next))
            }
            Err(error) => {
                self.problem(format!("the claimant could not change the ring: {error}"));
                None
            }
        }
    }

    /// A joining node becomes alive once the ring includes it; a leaving node is done once
    /// the ring no longer includes it and its handoffs have finished. The status is saved
    /// whenever it changes.
    pub(super) fn update_own_status(&mut self, _now: Time) {
        let Some(status) = self.status() else {
            return;
        };
        let in_ring = self
            .ring
            .as_ref()
            .is_some_and(|r| r.member(&self.me).is_some());
        let next = match status {
            Status::Joining if in_ring => Some(Status::Alive),
            // Left only once its copies are all fully replicated elsewhere and dropped, so a
            // node that left can never bring a reaped key back, and once it holds no hint: a
            // hint may be the second copy of an acknowledged write (paper 4.6).
            Status::Leaving
                if !in_ring
                    && self.ring.is_some()
                    && !self.handoffs.pending()
                    && self.handoffs.holds_nothing()
                    && self.hints.holds_none() =>
            {
                Some(Status::Left)
            }
            _ => None,
        };
        if let Some(next) = next {
            if let Err(error) = self.gossip.set_status(next) {
                self.problem(format!("could not announce a status change: {error}"));
            } else {
                self.event(CoreEvent::StatusChanged(
                    String::from_utf8_lossy(encode_status(next)).into_owned(),
                ));
            }
        }
        let current = self.status();
        if current.is_some() && current != self.saved_status {
            self.saved_status = current;
            if let Some(status) = current {
                self.save_state(STATE_STATUS, encode_status(status).to_vec(), None);
            }
        }
    }

    /// Paper 4.8.1: an administrator asked this node to leave; `request` is answered once the
    /// new status is saved.
    pub(super) fn leave(&mut self, now: Time, request: super::RequestId) -> Result<(), String> {
        if self.ring.as_ref().is_some_and(|r| r.members().len() <= 1) {
            return Err("the last member of a cluster cannot leave it".into());
        }
        self.gossip
            .set_status(Status::Leaving)
            .map_err(|e| e.to_string())?;
        self.event(CoreEvent::StatusChanged("leaving".into()));
        self.saved_status = Some(Status::Leaving);
        self.save_state(
            STATE_STATUS,
            encode_status(Status::Leaving).to_vec(),
            Some(request),
        );
        self.update_own_status(now);
        self.flush_gossip();
        Ok(())
    }

    /// An administrator takes `name`, a member that is down, out of the ring: the new ring is
    /// adopted here and gossiped; its partitions move to other members, filled by
    /// anti-entropy from the surviving replicas, and hints held for it follow the ring. The
    /// removal is remembered cluster-wide (see [`removal`]). A member already out of the ring
    /// (one that died while leaving or joining) is only remembered as removed.
    pub(super) fn remove_node(&mut self, now: Time, name: &str) -> Result<Ring, String> {
        let id = NodeId::from(name);
        let ring = self
            .ring
            .as_ref()
            .ok_or_else(|| format!("{} has no ring yet; try another node", self.me))?;
        if id == self.me {
            return Err(format!("{name} cannot remove itself; use `dynamo leave`"));
        }
        if self.is_up(&id) {
            return Err(format!(
                "{name} is up; a live member leaves with `dynamo leave` (remove is for nodes that are gone)"
            ));
        }
        if ring.member(&id).is_none() {
            let gone_for_good = self.gossip.member(&gossip_id(&id)).is_some_and(|view| {
                view.status() != Status::Left && !self.removals.covers_member(&view)
            });
            if !gone_for_good {
                return Err(format!("{name} is not a member of the cluster"));
            }
            let ring = ring.clone();
            self.record_removal(now, &id);
            self.flush_gossip();
            return Ok(ring);
        }
        let members: Vec<Member> = ring
            .members()
            .iter()
            .filter(|m| m.id != id)
            .cloned()
            .collect();
        let (next, _) = ring.with_members(members).map_err(|e| e.to_string())?;
        self.record_removal(now, &id);
        let plan = self.adopt(next.clone());
        self.start_handoff(now, &plan);
        self.flush_gossip();
        Ok(next)
    }

    /// Records a bucket created or changed here; returns the table to push to peers.
    pub(super) fn record_bucket(
        &mut self,
        now: Time,
        props: BucketProps,
    ) -> Result<Vec<BucketEntry>, String> {
        let max_n = self.ring.as_ref().map_or(MAX_BUCKET_N, Ring::target_n);
        check_bucket(&props, max_n)?;
        // What is stored was written for the resolver it has: another would misread it.
        if let Some(current) = self.buckets.get(&props.name)
            && current.props.resolver != props.resolver
        {
            return Err(format!(
                "bucket {} resolves by {}; a bucket's resolver is chosen when it is created",
                props.name, current.props.resolver
            ));
        }
        if !self.buckets.contains_key(&props.name) && self.buckets.len() >= MAX_BUCKETS {
            return Err(format!(
                "a cluster holds at most {MAX_BUCKETS} buckets; {} exist",
                self.buckets.len()
            ));
        }
        // Later than what is there even if this node's clock is behind.
        let stamp_ms = self
            .buckets
            .get(&props.name)
            .map_or(0, |e| e.stamp_ms.saturating_add(1))
            .max(now.as_millis());
        let entry = BucketEntry {
            props,
            stamp_ms,
            by: self.me.to_string(),
        };
        self.buckets.insert(entry.props.name.clone(), entry);
        self.publish_buckets(true);
        self.flush_gossip();
        Ok(self.buckets.values().cloned().collect())
    }

    /// Addresses of the live members other than this node.
    pub(super) fn live_peers(&self) -> Vec<NodeId> {
        self.gossip
            .members()
            .filter(|m| m.is_live() && m.id().as_str() != self.me.as_str())
            .map(|m| NodeId::from(m.id().as_str()))
            .collect()
    }
}
