//! Invariant 9, lww: in a run whose bucket resolves by last write wins, every coordinator
//! resolves a key to the same value after healing, whatever its own clock says (nodes' clocks
//! differ by up to 10 s in half the runs): the winner is decided by the timestamps its writes'
//! coordinators stored with them, never by the reader. The resolved value is one of the
//! siblings the read returned, or a delete that won; a read that found values carries a
//! resolution.

use std::collections::BTreeMap;

use crate::sim::check::{ReadResult, Resolved, Violation};

/// This invariant's name in reports.
pub const NAME: &str = "lww";

/// Checks, per key, what every running member answered (by node name).
pub fn check(reads: &BTreeMap<Vec<u8>, Vec<(String, ReadResult)>>) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (key, answers) in reads {
        for (node, read) in answers {
            match &read.resolved {
                Resolved::Nothing if !read.values.is_empty() => {
                    let message = format!("{node} answered values without a resolution");
                    violations.push(Violation::on_key(NAME, key, message));
                }
                Resolved::Value(value) if !read.values.contains(value) => {
                    let message = format!("{node} resolved to a value that is not a sibling");
                    violations.push(Violation::on_key(NAME, key, message));
                }
                _ => {}
            }
        }
        let mut resolved = answers.iter().map(|(node, read)| (node, &read.resolved));
        if let Some((first_node, first)) = resolved.next() {
            for (node, other) in resolved {
                if other != first {
                    let message = format!(
                        "{first_node} resolved to {}, {node} to {}",
                        shown(first),
                        shown(other)
                    );
                    violations.push(Violation::on_key(NAME, key, message));
                }
            }
        }
    }
    violations
}

fn shown(resolved: &Resolved) -> String {
    match resolved {
        Resolved::Nothing => "nothing".into(),
        Resolved::Delete => "a delete".into(),
        Resolved::Value(value) => format!("{:?}", String::from_utf8_lossy(value)),
    }
}
