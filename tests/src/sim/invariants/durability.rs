//! Invariant 1, durability (paper 4.5 and 4.6: a write acknowledged by W replicas is never
//! lost): after healing, a read with R = N has seen every acknowledged write, and returns its
//! value unless a client overwrote it on purpose with a context that had seen it.
//!
//! Runs wipe at most one disk, so every acknowledged write keeps a copy somewhere. A write a
//! reaped tombstone had seen is accounted for by that delete.

use std::collections::BTreeMap;

use crate::sim::check::{History, ReadResult, Violation};

/// This invariant's name in reports.
pub const NAME: &str = "durability";

/// Checks every acknowledged write against the final reads.
pub fn check(history: &History, finals: &BTreeMap<Vec<u8>, ReadResult>) -> Vec<Violation> {
    let mut violations = Vec::new();
    for write in history.writes().iter().filter(|w| w.acknowledged) {
        let what = write.value.as_deref().map_or_else(
            || "an acknowledged delete".to_owned(),
            |v| format!("acknowledged write {}", String::from_utf8_lossy(v)),
        );
        let Some(read) = finals.get(&write.key) else {
            let message = format!("{what}: the key could not be read after healing");
            violations.push(Violation::on_key(NAME, &write.key, message));
            continue;
        };
        if write.dots.is_empty() {
            let message = format!("{what}: no coordinator ever stored it");
            violations.push(Violation::on_key(NAME, &write.key, message));
            continue;
        }
        // Only the acknowledged coordination is promised; a duplicate of it (a message the
        // network delivered twice) is an unacknowledged write and may be lost.
        let acked = &write.acked_dots;
        if history.reaped_dots(write, acked) {
            // A delete superseded it, and the tombstone was reaped after the grace period.
            continue;
        }
        if !acked.iter().any(|(actor, n)| read.clock.get(actor) >= *n) {
            let message = format!(
                "{what} {:?} is not in the final read's context {:?}: it was lost",
                write.dots, read.clock
            );
            violations.push(Violation::on_key(NAME, &write.key, message));
            continue;
        }
        if let Some(value) = &write.value
            && !read.values.contains(value)
            && !history.superseded(write)
        {
            let message = format!(
                "{what} {:?} was dropped: the final read has seen it but returns only {:?}, and no client overwrote it",
                write.dots,
                lossy(&read.values)
            );
            violations.push(Violation::on_key(NAME, &write.key, message));
        }
    }
    violations
}

pub(crate) fn lossy(values: &[Vec<u8>]) -> Vec<String> {
    values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}
