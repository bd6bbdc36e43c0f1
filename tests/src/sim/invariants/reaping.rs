//! Invariant 7, tombstones are reaped (paper 4.4 keeps deletes as versions; something must
//! remove them): once the cluster healed, every member is up or removed and the grace period
//! has run out, a key that every replica holds only as tombstones is removed for good within a
//! few sweeps. A member that is gone for good but still blocks the reaper (issue 26: after
//! `dynamo node remove`, 50 deleted keys stayed unreaped forever) fails this.

use dynamo_quorum::{is_deleted, newest_write_ms};

use crate::sim::check::Violation;
use crate::sim::invariants::convergence::ReplicaView;

/// This invariant's name in reports.
pub const NAME: &str = "reaping";

/// Checks that no replica still holds a tombstone set whose newest write is older than
/// `deadline_ms` (a time by which the reaper had every chance to remove it).
pub fn check(view: &ReplicaView, deadline_ms: u64) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (key, replicas) in view.keys() {
        let stale = replicas.iter().find_map(|(name, stored)| {
            let object = stored.as_ref()?;
            let old = is_deleted(object) && newest_write_ms(object) < deadline_ms;
            old.then_some(name)
        });
        if let Some(name) = stale {
            let message = format!(
                "{name} still holds a tombstone whose grace period ran out long ago; \
                 the reaper never removed it"
            );
            violations.push(Violation::on_key(NAME, key, message));
        }
    }
    violations
}
