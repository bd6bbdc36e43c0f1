//! Invariant 2, no lost concurrency (paper 4.4: concurrent versions are kept as siblings for
//! the client to reconcile): no read, during the run or after it, leaves out the value of a
//! write its own context has seen, unless a client overwrote that write on purpose. So two
//! concurrent acknowledged writes both appear, never one silently dropped.

use std::collections::BTreeMap;

use super::durability::lossy;
use crate::sim::check::{History, ReadResult, Violation};

/// This invariant's name in reports.
pub const NAME: &str = "concurrency";

/// Checks every completed read.
pub fn check(history: &History, finals: &BTreeMap<Vec<u8>, ReadResult>) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (key, read) in history.all_reads(finals) {
        for write in history.writes() {
            let Some(value) = &write.value else { continue };
            if write.key != *key || !write.fully_seen_by(&read.clock) {
                continue;
            }
            if !read.values.contains(value) && !history.superseded(write) {
                let message = format!(
                    "a read whose context has seen {} returned only {:?}; nobody overwrote it",
                    String::from_utf8_lossy(value),
                    lossy(&read.values)
                );
                violations.push(Violation::on_key(NAME, key, message));
            }
        }
    }
    violations
}
