//! Invariant 3, convergence (paper 4.7: replicas are synchronised in the background): after the
//! faults stop and the cluster had time to heal, every replica of every key holds an identical
//! version set. Checked before the final reads, so read repair cannot hide a replica that only
//! anti-entropy would have brought up to date.
//!
//! Agreeing sets must also resolve alike under every bucket resolver (issue 14: resolution is a
//! join, so replicas that received versions in different orders resolve to the same value). That
//! is checked here too: two sets with the same dots but different write timestamps would pass
//! the causal comparison and still disagree under `lww`.

use std::collections::BTreeMap;

use dynamo_quorum::{Object, is_deleted};
use dynamo_resolve::{Resolver, resolve};

use crate::sim::check::Violation;

/// This invariant's name in reports.
pub const NAME: &str = "convergence";

/// Each key's stored set on each of its replicas (`None`: the replica holds nothing).
#[derive(Debug, Default)]
pub struct ReplicaView {
    keys: BTreeMap<Vec<u8>, Vec<(String, Option<Object>)>>,
}

impl ReplicaView {
    /// Records what `replica` holds of `key`.
    pub fn add(&mut self, key: Vec<u8>, replica: String, stored: Option<Object>) {
        self.keys.entry(key).or_default().push((replica, stored));
    }

    /// Each key with what each of its replicas holds.
    pub fn keys(&self) -> impl Iterator<Item = (&Vec<u8>, &[(String, Option<Object>)])> {
        self.keys
            .iter()
            .map(|(key, replicas)| (key, replicas.as_slice()))
    }
}

/// Checks that the replicas of every key agree.
pub fn check(view: &ReplicaView) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (key, replicas) in &view.keys {
        let Some((first_name, first)) = replicas.first() else {
            continue;
        };
        for (name, stored) in &replicas[1..] {
            // A replica that reaped a tombstone and one that has not yet agree on the key:
            // both read as deleted.
            let same = match (first, stored) {
                (Some(a), Some(b)) => a.descends(b) && b.descends(a),
                (None, None) => true,
                (Some(object), None) | (None, Some(object)) => is_deleted(object),
            };
            if same
                && let (Some(a), Some(b)) = (first, stored)
                && let Some(resolver) = Resolver::ALL
                    .into_iter()
                    .find(|r| resolve(*r, a) != resolve(*r, b))
            {
                let message = format!(
                    "replicas {first_name} and {name} hold the same versions but resolve \
                     differently under {resolver}"
                );
                violations.push(Violation::on_key(NAME, key, message));
                break;
            }
            if !same {
                let count = |s: &Option<Object>| s.as_ref().map_or(0, Object::len);
                let message = format!(
                    "replicas disagree: {first_name} holds {} versions, {name} holds {}",
                    count(first),
                    count(stored)
                );
                violations.push(Violation::on_key(NAME, key, message));
                break;
            }
        }
    }
    violations
}

/// Checks that no node still holds hints after healing: every hint reached its owner or, when
/// the ring moved the partition, a current replica (paper 4.6; hints follow the ring). `held`
/// lists, per node, the owners it holds hints for and how many.
pub fn check_hints(held: &[(String, Vec<(String, usize)>)]) -> Vec<Violation> {
    held.iter()
        .filter(|(_, owners)| !owners.is_empty())
        .map(|(node, owners)| Violation {
            invariant: NAME,
            key: None,
            message: format!("{node} still holds hints after healing: {owners:?}"),
        })
        .collect()
}
