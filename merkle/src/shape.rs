//! The fixed shape of a Merkle tree: fan-out and depth.
//!
//! A shape is a pure value shared by both replicas of a key range; two trees can only be
//! compared when their shapes are equal. Node `n` of level `l` has children
//! `n * fanout .. (n + 1) * fanout` on level `l + 1`; level 0 is the root and level `depth`
//! holds the leaf *segments*. This module must not know about keys' meaning or about storage.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::MerkleError;

/// Largest supported number of leaf bits (2^24 leaves, 128 MiB of leaf hashes).
pub const MAX_LEAF_BITS: u32 = 24;

/// Fan-out and depth of a tree. The tree has `fanout^depth` leaf segments.
///
/// ```
/// use dynamo_merkle::TreeShape;
/// let shape = TreeShape::default();
/// assert_eq!(shape.fanout(), 16);
/// assert_eq!(shape.depth(), 3);
/// assert_eq!(shape.leaves(), 4096);
/// assert!(TreeShape::new(9, 1).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawShape", into = "RawShape")]
pub struct TreeShape {
    fanout_bits: u8,
    depth: u8,
}

#[derive(Serialize, Deserialize)]
struct RawShape {
    fanout_bits: u8,
    depth: u8,
}

impl TryFrom<RawShape> for TreeShape {
    type Error = MerkleError;
    fn try_from(raw: RawShape) -> Result<Self, MerkleError> {
        TreeShape::new(raw.fanout_bits, raw.depth)
    }
}

impl From<TreeShape> for RawShape {
    fn from(shape: TreeShape) -> Self {
        RawShape {
            fanout_bits: shape.fanout_bits,
            depth: shape.depth,
        }
    }
}

impl Default for TreeShape {
    /// Fan-out 16, depth 3: 4096 leaf segments, 4369 nodes, about 34 KiB per tree.
    fn default() -> Self {
        TreeShape {
            fanout_bits: 4,
            depth: 3,
        }
    }
}

impl fmt::Display for TreeShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fan-out {} depth {} ({} leaves)",
            self.fanout(),
            self.depth,
            self.leaves()
        )
    }
}

impl TreeShape {
    /// A shape with fan-out `2^fanout_bits` and `depth` levels below the root.
    ///
    /// Requires `1 <= fanout_bits <= 8`, `depth >= 1` and `fanout_bits * depth <= 24`.
    pub fn new(fanout_bits: u8, depth: u8) -> Result<Self, MerkleError> {
        let leaf_bits = u32::from(fanout_bits) * u32::from(depth);
        if !(1..=8).contains(&fanout_bits) || depth == 0 || leaf_bits > MAX_LEAF_BITS {
            return Err(MerkleError::InvalidShape { fanout_bits, depth });
        }
        Ok(TreeShape { fanout_bits, depth })
    }

    /// log2 of the fan-out.
    pub fn fanout_bits(self) -> u8 {
        self.fanout_bits
    }

    /// Children per inner node.
    pub fn fanout(self) -> usize {
        1 << self.fanout_bits
    }

    /// Levels below the root; level `depth()` holds the leaf segments.
    pub fn depth(self) -> u8 {
        self.depth
    }

    /// Bits of the key's placement hash that select its leaf segment.
    pub fn leaf_bits(self) -> u32 {
        u32::from(self.fanout_bits) * u32::from(self.depth)
    }

    /// Number of leaf segments.
    pub fn leaves(self) -> usize {
        1 << self.leaf_bits()
    }

    /// Number of nodes on `level` (1 for the root).
    pub fn level_len(self, level: u8) -> usize {
        1 << (u32::from(self.fanout_bits) * u32::from(level))
    }

    /// Total nodes in the tree, all levels.
    pub fn total_nodes(self) -> usize {
        (0..=self.depth).map(|l| self.level_len(l)).sum()
    }

    /// The leaf segment of a key with this placement hash (see [`crate::placement_hash`]).
    pub fn segment_of_placement(self, placement: u64) -> u32 {
        (placement >> (64 - self.leaf_bits())) as u32
    }

    /// The leaf segment a key falls into (depends on the key bytes only).
    pub fn segment_of(self, key: &[u8]) -> u32 {
        self.segment_of_placement(crate::hash::placement_hash(key))
    }

    /// The sub-bucket (`0..fanout`) of a key inside its segment: the next `fanout_bits` bits
    /// of the placement hash. Used by the diff session to split large segments.
    pub fn sub_bucket_of_placement(self, placement: u64) -> u8 {
        let shift = 64 - self.leaf_bits() - u32::from(self.fanout_bits);
        ((placement >> shift) as usize & (self.fanout() - 1)) as u8
    }
}
