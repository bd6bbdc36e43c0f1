//! Transfer plans: which replica hands which key range to which node after a membership change
//! (paper 4.9: "when a node is added ... nodes that no longer have to store some of their keys
//! transfer those keys to X").
//!
//! This module must not know how data is moved, batched or acknowledged; `node` carries the
//! plan out. It only compares the replica sets of two rings.

use serde::{Deserialize, Serialize};

use crate::hash::KeyPosition;
use crate::member::NodeId;
use crate::ring::{PartitionId, Ring};

/// An inclusive range of ring positions, `start..=end`. It wraps around zero when
/// `start > end` (only random-token arcs do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyRange {
    /// First position in the range.
    pub start: KeyPosition,
    /// Last position in the range (inclusive).
    pub end: KeyPosition,
}

impl KeyRange {
    /// Whether `position` falls in the range.
    pub fn contains(&self, position: KeyPosition) -> bool {
        if self.start <= self.end {
            self.start <= position && position <= self.end
        } else {
            position >= self.start || position <= self.end
        }
    }

    /// The share of the whole hash space this range covers, in `(0, 1]`.
    pub fn len_fraction(&self) -> f64 {
        let width_minus_one = self.end.wrapping_sub(self.start);
        (width_minus_one as f64 + 1.0) / 2f64.powi(128)
    }
}

/// One replica of one partition that must be copied to a node that did not hold it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transfer {
    /// The partition whose keys move.
    pub partition: PartitionId,
    /// The positions of those keys.
    pub range: KeyRange,
    /// A node that holds the data under the old ring (preferably one that loses it).
    pub from: NodeId,
    /// The node that replicates the partition under the new ring and did not before.
    pub to: NodeId,
    /// Whether `from` still replicates the partition under the new ring (if false it may drop
    /// its copy once the transfer is acknowledged).
    pub from_retains: bool,
}

/// Every transfer needed to go from one ring version to the next.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TransferPlan {
    /// The ring version the data is laid out for now.
    pub from_version: u64,
    /// The ring version the plan reaches.
    pub to_version: u64,
    /// The transfers, by partition.
    pub transfers: Vec<Transfer>,
}

impl TransferPlan {
    /// The transfers from `old` to `new`: for every partition, each node in the new replica set
    /// (`target_n` of the new ring) that was not in the old one receives the partition from an
    /// old replica, preferably one that leaves the set. A node that adopts a ring it did not
    /// compute itself calls this to learn its part. Rings with different partition counts
    /// cannot be compared partition by partition: the plan is then empty.
    pub fn between(old: &Ring, new: &Ring) -> Self {
        let n = new.target_n();
        let mut transfers = Vec::new();
        if old.partition_count() != new.partition_count() {
            return Self {
                from_version: old.version(),
                to_version: new.version(),
                transfers,
            };
        }
        for partition in 0..new.partition_count() {
            let before = old.replicas_of_partition(partition, n);
            let after = new.replicas_of_partition(partition, n);
            let mut losing = before.iter().filter(|node| !after.contains(node));
            for &to in after.iter().filter(|node| !before.contains(node)) {
                let from = losing.next().or(before.first()).copied();
                let Some(from) = from else { continue };
                transfers.push(Transfer {
                    partition,
                    range: new.partition_range(partition),
                    from: from.clone(),
                    to: to.clone(),
                    from_retains: after.contains(&from),
                });
            }
        }
        Self {
            from_version: old.version(),
            to_version: new.version(),
            transfers,
        }
    }

    /// Whether nothing has to move.
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }

    /// The transfers `node` has to send.
    pub fn outgoing<'a>(&'a self, node: &'a NodeId) -> impl Iterator<Item = &'a Transfer> + 'a {
        self.transfers.iter().filter(move |t| &t.from == node)
    }

    /// The transfers `node` has to receive.
    pub fn incoming<'a>(&'a self, node: &'a NodeId) -> impl Iterator<Item = &'a Transfer> + 'a {
        self.transfers.iter().filter(move |t| &t.to == node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_range_membership_and_width() {
        let plain = KeyRange { start: 10, end: 20 };
        let wrapping = KeyRange {
            start: u128::MAX - 1,
            end: 1,
        };
        let cases = [
            (plain, 10, true),
            (plain, 20, true),
            (plain, 21, false),
            (wrapping, u128::MAX, true),
            (wrapping, 0, true),
            (wrapping, 2, false),
        ];
        for (range, position, expected) in cases {
            assert_eq!(range.contains(position), expected, "{range:?} {position}");
        }
        let whole = KeyRange {
            start: 0,
            end: u128::MAX,
        };
        assert!((whole.len_fraction() - 1.0).abs() < 1e-12);
        let half = KeyRange {
            start: 0,
            end: u128::MAX / 2,
        };
        assert!((half.len_fraction() - 0.5).abs() < 1e-12);
    }
}
