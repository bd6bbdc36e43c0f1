//! One member's versioned state, Scuttlebutt style: every change the owner makes gets the next
//! version number, only the latest version of each key is kept, and a peer that holds version
//! `v` needs exactly the entries with versions above `v`.
//!
//! This module must not know about the network, time or liveness: it stores versions, lists what
//! a peer lacks, and applies what a peer sent.

use std::collections::BTreeMap;

use crate::message::{Change, NodeMeta, VersionedChange};
use crate::types::{Identity, Status};

/// A value with the owner's version for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Versioned {
    pub(crate) value: Vec<u8>,
    pub(crate) version: u64,
}

/// Everything known about one member at one generation.
#[derive(Clone, Debug)]
pub(crate) struct NodeState {
    pub(crate) identity: Identity,
    pub(crate) heartbeat: u64,
    /// Complete up to this version: every change with a version at or below it is reflected.
    pub(crate) max_version: u64,
    pub(crate) status: Status,
    pub(crate) status_version: u64,
    pub(crate) entries: BTreeMap<String, Versioned>,
}

/// What applying a delta changed, for events.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub(crate) status: Option<Status>,
    pub(crate) keys: Vec<String>,
}

impl NodeState {
    /// A member's own fresh state: the status is its first versioned change.
    pub(crate) fn new_local(identity: Identity, status: Status) -> Self {
        Self {
            identity,
            heartbeat: 0,
            max_version: 1,
            status,
            status_version: 1,
            entries: BTreeMap::new(),
        }
    }

    /// An empty remote state to apply a from-zero delta to.
    pub(crate) fn new_remote(identity: Identity, heartbeat: u64) -> Self {
        Self {
            identity,
            heartbeat,
            max_version: 0,
            status: Status::Joining,
            status_version: 0,
            entries: BTreeMap::new(),
        }
    }

    pub(crate) fn meta(&self) -> NodeMeta {
        NodeMeta {
            address: self.identity.address.clone(),
            zone: self.identity.zone.clone(),
            capacity: self.identity.capacity,
        }
    }

    /// Owner-side: sets a key to the next version.
    pub(crate) fn set_local(&mut self, key: String, value: Vec<u8>) -> u64 {
        self.max_version += 1;
        self.entries.insert(
            key,
            Versioned {
                value,
                version: self.max_version,
            },
        );
        self.max_version
    }

    /// Owner-side: sets the status to the next version.
    pub(crate) fn set_status_local(&mut self, status: Status) -> u64 {
        self.max_version += 1;
        self.status = status;
        self.status_version = self.max_version;
        self.max_version
    }

    /// The changes a holder of `from` lacks, in ascending version order.
    pub(crate) fn changes_after(&self, from: u64) -> Vec<VersionedChange> {
        let mut changes: Vec<VersionedChange> = self
            .entries
            .iter()
            .filter(|(_, v)| v.version > from)
            .map(|(key, v)| VersionedChange {
                version: v.version,
                change: Change::Set {
                    key: key.clone(),
                    value: v.value.clone(),
                },
            })
            .collect();
        if self.status_version > from {
            changes.push(VersionedChange {
                version: self.status_version,
                change: Change::Status(self.status),
            });
        }
        changes.sort_unstable_by_key(|c| c.version);
        changes
    }

    /// Applies changes (already checked to be in ascending order and to start at or below our
    /// `max_version`), then records that we are complete up to `to_version`.
    pub(crate) fn apply(&mut self, changes: &[VersionedChange], to_version: u64) -> Applied {
        let mut applied = Applied::default();
        for change in changes {
            if change.version <= self.max_version {
                continue;
            }
            match &change.change {
                Change::Status(status) => {
                    if change.version > self.status_version {
                        self.status = *status;
                        self.status_version = change.version;
                        applied.status = Some(*status);
                    }
                }
                Change::Set { key, value } => {
                    let newer = self
                        .entries
                        .get(key)
                        .is_none_or(|old| old.version < change.version);
                    if newer {
                        self.entries.insert(
                            key.clone(),
                            Versioned {
                                value: value.clone(),
                                version: change.version,
                            },
                        );
                        applied.keys.push(key.clone());
                    }
                }
            }
        }
        self.max_version = self.max_version.max(to_version);
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owner() -> NodeState {
        NodeState::new_local(Identity::new("a", 1, "addr-a"), Status::Alive)
    }

    /// Scuttlebutt (paper 4.8.1 reconciliation): a peer holding version v needs only newer
    /// entries, oldest first, and only the latest version of each key.
    #[test]
    fn changes_after_lists_only_newer_latest_versions() {
        let mut state = owner();
        state.set_local("ring".into(), b"r1".to_vec()); // 2
        state.set_local("load".into(), b"l1".to_vec()); // 3
        state.set_local("ring".into(), b"r2".to_vec()); // 4
        let cases: [(u64, &[u64]); 4] = [(0, &[1, 3, 4]), (1, &[3, 4]), (3, &[4]), (4, &[])];
        for (from, expected) in cases {
            let versions: Vec<u64> = state
                .changes_after(from)
                .iter()
                .map(|c| c.version)
                .collect();
            assert_eq!(versions, expected, "from {from}");
        }
    }

    proptest! {
        /// Law: applying the owner's changes in any prefix-then-rest split yields the owner's
        /// state (deltas spread over several rounds converge to the same result).
        #[test]
        fn split_deltas_converge(
            ops in proptest::collection::vec((0u8..4, any::<u8>()), 1..30),
            split in 0usize..40,
        ) {
            let mut state = owner();
            for (key, value) in &ops {
                state.set_local(format!("k{key}"), vec![*value]);
            }
            let all = state.changes_after(0);
            let split = split.min(all.len());
            let mut replica = NodeState::new_remote(state.identity.clone(), 0);
            let first_to = if split == 0 { 0 } else { all[split - 1].version };
            replica.apply(&all[..split], first_to);
            let rest = state.changes_after(replica.max_version);
            replica.apply(&rest, state.max_version);
            prop_assert_eq!(&replica.entries, &state.entries);
            prop_assert_eq!(replica.status, state.status);
            prop_assert_eq!(replica.max_version, state.max_version);
        }
    }
}
