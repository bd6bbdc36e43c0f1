//! Invariant 5, sibling count (paper 4.4 and the DVV sets of `dynamo-vclock`): every value a
//! read returns is a write attempt on that key, returned once however many times it was
//! coordinated (clients retry a write that timed out, through another node, with the same write
//! id), and no value is returned next to a write whose context had seen it (a stale sibling).
//! The siblings of a read are therefore pairwise concurrent writes, never more than the truly
//! concurrent writers.

use std::collections::BTreeMap;

use crate::sim::check::{History, ReadResult, Violation};

/// This invariant's name in reports.
pub const NAME: &str = "siblings";

/// Checks every completed read.
pub fn check(history: &History, finals: &BTreeMap<Vec<u8>, ReadResult>) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (key, read) in history.all_reads(finals) {
        for (i, value) in read.values.iter().enumerate() {
            let shown = String::from_utf8_lossy(value);
            let Some(write) = history.write_of_value(value).filter(|w| w.key == *key) else {
                let message = format!("a read returned {shown}, which no client wrote to this key");
                violations.push(Violation::on_key(NAME, key, message));
                continue;
            };
            let copies = read.values.iter().filter(|v| *v == value).count();
            if copies > 1 && read.values[..i].contains(value) {
                let message = format!(
                    "a read returned {shown} {copies} times; it is one write (coordinated {} times)",
                    write.dots.len()
                );
                violations.push(Violation::on_key(NAME, key, message));
            }
            for other in &read.values {
                let Some(newer) = history.write_of_value(other) else {
                    continue;
                };
                if other != value && write.fully_seen_by(&newer.context) {
                    let message = format!(
                        "a read returned {shown} next to {}, whose writer had read it: a stale sibling",
                        String::from_utf8_lossy(other)
                    );
                    violations.push(Violation::on_key(NAME, key, message));
                }
            }
        }
    }
    violations
}
