//! Invariant 8, listing: after healing, listing the bucket (`ListKeys`, page by page) names
//! exactly the keys whose final read found a value, each once: no live key is missed, and no
//! deleted or never-written key is listed. While the run goes on (nodes down, partitions,
//! rings changing between pages), a listing may miss keys, but names none twice and none no
//! client had written ([`during_run`]). An export of the bucket after healing (what `dynamo
//! backup` reads, issue 29) names every key once, with the very values the final read found
//! (deleted keys with none), and no key no client wrote ([`check_export`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::sim::check::{ReadResult, Violation};

/// This invariant's name in reports.
pub const NAME: &str = "listing";

/// Checks the listed keys (`None`: the listing failed) against the final reads.
pub fn check(finals: &BTreeMap<Vec<u8>, ReadResult>, listed: Option<&[Vec<u8>]>) -> Vec<Violation> {
    let Some(listed) = listed else {
        let message = "listing the bucket failed after healing".to_owned();
        return vec![Violation {
            invariant: NAME,
            key: None,
            message,
        }];
    };
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for key in listed {
        if !seen.insert(key) {
            let message = "listed twice".to_owned();
            violations.push(Violation::on_key(NAME, key, message));
        }
    }
    for (key, read) in finals {
        let live = !read.values.is_empty();
        if live != seen.contains(key) {
            let message = if live {
                "the final read found a value, but the listing misses the key"
            } else {
                "the listing names a key the final read did not find"
            };
            violations.push(Violation::on_key(NAME, key, message.to_owned()));
        }
    }
    violations
}

/// Checks an export of the bucket after healing (`None`: it failed) against the final reads.
pub fn check_export(
    finals: &BTreeMap<Vec<u8>, ReadResult>,
    exported: Option<&[(Vec<u8>, dynamo_quorum::Object)]>,
) -> Vec<Violation> {
    let Some(exported) = exported else {
        let message = "exporting the bucket failed after healing".to_owned();
        return vec![Violation {
            invariant: NAME,
            key: None,
            message,
        }];
    };
    let mut violations = Vec::new();
    let mut seen = BTreeMap::new();
    for (key, object) in exported {
        let mut values: Vec<Vec<u8>> = dynamo_quorum::live_values(object)
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        values.sort();
        if seen.insert(key, values).is_some() {
            let message = "exported twice".to_owned();
            violations.push(Violation::on_key(NAME, key, message));
        }
    }
    for (key, read) in finals {
        let mut expected = read.values.clone();
        expected.sort();
        let exported = seen.remove(key).unwrap_or_default();
        if exported != expected {
            let message = format!(
                "the export holds {} live values, the final read {}",
                exported.len(),
                expected.len()
            );
            violations.push(Violation::on_key(NAME, key, message));
        }
    }
    for (key, values) in seen {
        if !values.is_empty() {
            let message = "the export holds a value of a key no final read found".to_owned();
            violations.push(Violation::on_key(NAME, key, message));
        }
    }
    violations
}

/// The findings of listings clients completed during the run (see
/// `History::record_listing`).
pub fn during_run(findings: &[(Vec<u8>, String)]) -> Vec<Violation> {
    findings
        .iter()
        .map(|(key, message)| Violation::on_key(NAME, key, message.clone()))
        .collect()
}
