//! Members removed for good (`dynamo node remove`, or replaced by `dynamo join --replace`):
//! the cluster remembers them, so that one that is gone no longer holds anything up and one
//! that comes back cannot bring back what the cluster moved on from.
//!
//! A removed member stays in gossip as a member that is down (gossip forgets only members that
//! announced `Left`), and before this set existed the reaper waited for it forever (issue 26:
//! 50 deleted keys unreaped 90 s after a removal). A [`Removal`] names the member and the store
//! it wrote from (its vclock actor, which a wiped disk changes), travels in gossip under
//! [`REMOVED_KEY`], is merged by union and is saved. A member it covers:
//! - does not hold up the reaper (it answers for nothing any more);
//! - is not added back to the ring by the claimant, and is taken out if a racing claim did;
//! - shows as `removed` in the status;
//! - gets every request but gossip and status refused, so its hints, handoffs and replica
//!   copies (which may hold values whose tombstones were reaped since) never reach the cluster;
//! - and, when it is this node, stops serving and says how to come back: wipe the data
//!   directory and join again, which makes a new actor that no removal covers.
//!
//! A process of a removed name whose actor has not been heard yet is covered until it is. When
//! the remover did not know the member's actor (after a full-cluster restart nobody remembers
//! it), a store whose epoch (the wall-clock time its data began) is not after the removal is
//! covered: the old disk, restarted or not; a wiped one started later is not (a clock far behind
//! the remover's could cover it by mistake: start it under another name). A covered member
//! that is down is forgotten by gossip, so it holds nothing up even after its record is the
//! oldest and dropped.
//!
//! This module must not know how gossip travels or how state is saved.

use std::collections::BTreeSet;

use dynamo_gossip::{MemberView, NodeId as GossipId};
use dynamo_protocol::{ErrorKind, PeerIdentity, Request, Response, Role};
use dynamo_ring::NodeId;
use serde::{Deserialize, Serialize};

use super::{NodeCore, RequestId, STATE_REMOVED, Time};

/// Gossip key holding the removals a member knows (postcard of `Vec<Removal>`).
pub(super) const REMOVED_KEY: &str = "removed";
/// Gossip key holding a member's store actor (UTF-8).
pub(super) const ACTOR_KEY: &str = "actor";
/// The most removals remembered: the oldest are forgotten first (a forgotten record's member
/// is long gone from gossip, see [`NodeCore::forget_removed`]).
pub const MAX_REMOVALS: usize = 64;
/// How far ahead of this node's clock a gossiped removal may be dated (clocks disagree).
const MAX_FUTURE_MS: u64 = 3_600_000;
/// The most bytes the encoded removals take, well inside one gossip value (16 KiB).
const MAX_REMOVALS_BYTES: usize = 12 * 1024;

/// One member removed for good.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Removal {
    /// When it was removed, on the remover's clock (milliseconds); first so the oldest sorts
    /// first.
    pub removed_at_ms: u64,
    /// The member's name.
    pub name: String,
    /// The store actor it wrote under, if the remover had heard it.
    pub actor: Option<String>,
}

/// The removals this node knows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Removals(BTreeSet<Removal>);

impl Removals {
    /// Whether no member was ever removed.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes saved or gossiped removals.
    pub(super) fn decode(bytes: &[u8]) -> Result<Vec<Removal>, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// The encoding gossiped and saved.
    pub(super) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(&self.0.iter().collect::<Vec<_>>())
    }

    /// Adds `removals`; returns whether anything new was learnt. Keeps the newest
    /// [`MAX_REMOVALS`].
    pub(super) fn merge(&mut self, removals: impl IntoIterator<Item = Removal>) -> bool {
        let before = self.0.clone();
        self.0.extend(removals.into_iter().filter(valid));
        while self.0.len() > MAX_REMOVALS
            || self
                .encode()
                .map_or(true, |bytes| bytes.len() > MAX_REMOVALS_BYTES)
        {
            self.0.pop_first();
        }
        self.0 != before
    }

    /// Adds removals a peer gossiped, at `now_ms` on this node's clock; returns whether anything
    /// new was learnt. A record dated more than [`MAX_FUTURE_MS`] ahead is dropped.
    pub(super) fn merge_gossiped(&mut self, removals: Vec<Removal>, now_ms: u64) -> bool {
        let latest = now_ms.saturating_add(MAX_FUTURE_MS);
        self.merge(
            removals
                .into_iter()
                .filter(|removal| removal.removed_at_ms <= latest),
        )
    }

    /// Whether the process `name`, writing as `actor` (if known), is a member that was removed.
    pub(super) fn covers(&self, name: &str, actor: Option<&str>) -> bool {
        self.0.iter().any(|removal| {
            removal.name == name
                && match (removal.actor.as_deref(), actor) {
                    (Some(removed), Some(current)) => removed == current,
                    // The remover did not know its store: a store whose data predates the
                    // removal (its epoch is when its data began) is the old disk.
                    (None, Some(current)) => {
                        store_epoch(current).is_none_or(|epoch| epoch <= removal.removed_at_ms)
                    }
                    // Not heard yet: covered until it says which store it writes from.
                    (_, None) => true,
                }
        })
    }

    /// Whether the gossip member `view` is covered.
    pub(super) fn covers_member(&self, view: &MemberView<'_>) -> bool {
        let actor = view
            .get(ACTOR_KEY)
            .and_then(|bytes| std::str::from_utf8(bytes).ok());
        self.covers(view.id().as_str(), actor)
    }

    /// The removal of the member `view`, at `now_ms`.
    pub(super) fn of_member(view: &MemberView<'_>, now_ms: u64) -> Removal {
        Removal {
            removed_at_ms: now_ms.max(view.identity().generation),
            name: view.id().as_str().to_owned(),
            actor: view
                .get(ACTOR_KEY)
                .and_then(|bytes| std::str::from_utf8(bytes).ok())
                .map(str::to_owned),
        }
    }
}

impl NodeCore {
    /// Whether this node was removed from the cluster: it serves nothing until its data
    /// directory is wiped and it joins again.
    pub fn is_removed(&self) -> bool {
        !self.removals.is_empty()
            && self
                .gossip
                .member(self.gossip.id())
                .is_some_and(|me| self.removals.covers_member(&me))
    }

    /// Whether the member `id` (as gossip knows it now) was removed.
    pub(super) fn is_removed_member(&self, id: &GossipId) -> bool {
        !self.removals.is_empty()
            && self
                .gossip
                .member(id)
                .is_some_and(|view| self.removals.covers_member(&view))
    }

    /// Lets gossip forget every removed member that is down, so none holds anything up (the
    /// reaper waits for every member gossip knows) even once its record is dropped.
    pub(super) fn forget_removed(&mut self, now: Time) {
        if self.removals.is_empty() {
            return;
        }
        let gone: Vec<GossipId> = self
            .gossip
            .members()
            .filter(|view| !view.is_live() && self.removals.covers_member(view))
            .map(|view| view.id().clone())
            .collect();
        for id in gone {
            self.gossip
                .forget(&id, std::time::Duration::from_millis(now.as_millis()));
        }
    }

    /// Remembers that `id` was removed for good at `now`, and tells the cluster.
    pub(super) fn record_removal(&mut self, now: Time, id: &NodeId) {
        let removal = match self.gossip.member(&GossipId::new(id.as_str())) {
            Some(view) => Removals::of_member(&view, now.as_millis()),
            None => Removal {
                removed_at_ms: now.as_millis(),
                name: id.to_string(),
                actor: None,
            },
        };
        if self.removals.merge([removal]) {
            self.publish_removals(true);
        }
    }

    /// Merges the removals `changed` members gossip; publishes and saves them if anything was
    /// new. A record dated more than [`MAX_FUTURE_MS`] ahead of this node's clock is dropped: it
    /// would cover every later store of its name for good.
    pub(super) fn merge_removals_from(&mut self, now: Time, changed: &[GossipId]) {
        let learnt: Vec<Removal> = changed
            .iter()
            .filter_map(|id| self.gossip.member(id)?.get(REMOVED_KEY))
            .filter_map(|bytes| Removals::decode(bytes).ok())
            .flatten()
            .collect();
        if self.removals.merge_gossiped(learnt, now.as_millis()) {
            self.publish_removals(true);
        }
    }

    /// Puts the removals in gossip and, with `save`, in the store.
    pub(super) fn publish_removals(&mut self, save: bool) {
        if self.removals.is_empty() {
            return;
        }
        let bytes = match self.removals.encode() {
            Ok(bytes) => bytes,
            Err(error) => return self.problem(format!("could not encode the removals: {error}")),
        };
        if save {
            self.save_state(STATE_REMOVED, bytes.clone(), None);
        }
        if let Err(error) = self.gossip.set(REMOVED_KEY, bytes) {
            self.problem(format!("could not publish the removals: {error}"));
        }
        if self.is_removed() {
            self.problem(removed_message(self.me.as_str()));
        }
    }

    /// Refuses `request` when this node, or the node that sent it, was removed; returns
    /// whether it did. Gossip and status still work, so a removed node learns and shows why.
    pub(super) fn refuse_if_removed(
        &mut self,
        id: RequestId,
        from: &PeerIdentity,
        request: &Request,
    ) -> bool {
        if self.removals.is_empty()
            || matches!(
                request,
                Request::Gossip { .. } | Request::Status | Request::Ping(_) | Request::Ring
            )
        {
            return false;
        }
        let response = if self.is_removed() {
            Response::error(ErrorKind::NotReady, removed_message(self.me.as_str()))
        } else if from.role == Role::Node && self.is_removed_member(&GossipId::new(&from.name)) {
            let message = format!(
                "{} was removed from the cluster; nothing it sends is taken (wipe its data \
                 directory and start it with `dynamo join` to bring it back)",
                from.name
            );
            Response::error(ErrorKind::Forbidden, message)
        } else {
            return false;
        };
        self.respond(id, response);
        true
    }
}

/// What a removed node says about itself.
fn removed_message(name: &str) -> String {
    format!(
        "{name} was removed from the cluster (`dynamo node remove`) and serves nothing: what it \
         holds is no longer part of the cluster. Wipe its data directory and start it with \
         `dynamo join` to bring it back (or, if this is a new node, give it another name)"
    )
}

/// The longest store actor: a node id, `#` and an epoch.
const ACTOR_MAX_BYTES: usize = dynamo_storage::MAX_NODE_ID_BYTES + 21;

/// The epoch of a store actor `"{node}#{epoch}"` (when its data began), if it has one.
fn store_epoch(actor: &str) -> Option<u64> {
    actor.rsplit_once('#')?.1.parse().ok()
}

/// A removal from an untrusted peer is kept only if its fields are of sane size.
fn valid(removal: &Removal) -> bool {
    !removal.name.is_empty()
        && removal.name.len() <= dynamo_storage::MAX_NODE_ID_BYTES
        && removal
            .actor
            .as_ref()
            .is_none_or(|a| a.len() <= ACTOR_MAX_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removal(name: &str, actor: Option<&str>, at: u64) -> Removal {
        Removal {
            removed_at_ms: at,
            name: name.into(),
            actor: actor.map(str::to_owned),
        }
    }

    /// Who a removal covers: the same store always; without a known actor, a store whose data
    /// began before the removal; never a wiped node started again, never another name.
    #[test]
    fn a_removal_covers_the_removed_store_only() {
        let mut removals = Removals::default();
        removals.merge([
            removal("n4", Some("n4#100"), 5_000),
            removal("n5", None, 5_000),
        ]);
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("n4", Some("n4#100"), true),   // the same store, restarted or not
            ("n4", Some("n4#9000"), false), // wiped and joined again
            ("n4", None, true),             // actor not heard yet: not trusted yet
            ("n5", Some("n5#4000"), true),  // removed without a known actor: its old disk
            ("n5", Some("n5#6000"), false), // ... or a disk that began after the removal
            ("n5", Some("n5"), true),       // no epoch to tell by: covered
            ("n6", Some("n4#100"), false),  // another name
        ];
        for (name, actor, covered) in cases {
            assert_eq!(removals.covers(name, *actor), *covered, "{name} {actor:?}");
        }
    }

    /// Merging is a union, idempotent, bounded (the oldest go first), and drops records a peer
    /// made too large.
    #[test]
    fn removals_merge_as_a_bounded_union() {
        let mut removals = Removals::default();
        assert!(removals.merge([removal("a", None, 1)]));
        assert!(!removals.merge([removal("a", None, 1)]));
        assert!(!removals.merge([removal(&"x".repeat(300), None, 2)]));
        let many = (0..MAX_REMOVALS as u64 + 10).map(|i| removal(&format!("m{i}"), None, 10 + i));
        assert!(removals.merge(many));
        assert_eq!(removals.0.len(), MAX_REMOVALS);
        assert!(
            !removals.covers("a", Some("a#0")),
            "the oldest was forgotten"
        );
        let decoded = Removals::decode(&removals.encode().expect("encode")).expect("decode");
        assert_eq!(decoded.len(), MAX_REMOVALS);
    }

    /// A gossiped removal dated far ahead of this node's clock is dropped: with no actor it
    /// would cover every later store of its name for good.
    #[test]
    fn a_removal_from_the_far_future_is_dropped() {
        let mut removals = Removals::default();
        let now = 1_000_000;
        let gossiped = vec![
            removal("n7", None, u64::MAX),
            removal("n8", None, now + MAX_FUTURE_MS + 1),
            removal("n9", None, now + 60_000),
        ];
        assert!(removals.merge_gossiped(gossiped, now));
        assert!(!removals.covers("n7", Some("n7#2000000")));
        assert!(!removals.covers("n8", Some("n8#5")));
        assert!(
            removals.covers("n9", Some("n9#5")),
            "a minute of skew is taken"
        );
    }
}
