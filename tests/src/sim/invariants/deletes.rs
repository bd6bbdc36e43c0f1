//! Invariant 4, deletes stay deleted: once a delete is acknowledged and the cluster healed, no
//! value the deleting client had read (and so meant to delete) is returned again.

use std::collections::BTreeMap;

use crate::sim::check::{History, ReadResult, Violation};

/// This invariant's name in reports.
pub const NAME: &str = "deletes";

/// Checks every acknowledged delete against the final reads.
pub fn check(history: &History, finals: &BTreeMap<Vec<u8>, ReadResult>) -> Vec<Violation> {
    let mut violations = Vec::new();
    let deletes = history
        .writes()
        .iter()
        .filter(|w| w.acknowledged && w.value.is_none());
    for delete in deletes {
        let Some(read) = finals.get(&delete.key) else {
            continue;
        };
        for value in &read.values {
            let Some(write) = history.write_of_value(value) else {
                continue;
            };
            if write.fully_seen_by(&delete.context) {
                let message = format!(
                    "{} was deleted (an acknowledged delete had read it) and came back",
                    String::from_utf8_lossy(value)
                );
                violations.push(Violation::on_key(NAME, &delete.key, message));
            }
        }
    }
    violations
}
