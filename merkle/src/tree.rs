//! The fixed-shape, incrementally maintained Merkle tree of one key range.
//!
//! Every node holds the XOR of the [`KeyHash`]es of all keys below it, so inserting,
//! updating or removing one key touches exactly one node per level (O(depth)), the result does
//! not depend on the order of updates, a rebuild from a full scan gives the identical tree, and
//! trees over disjoint key sets merge by XOR (the "tictac" property). The tree stores no keys:
//! listing a segment's keys is the job of a [`crate::SegmentSource`]. This module must not know
//! the version-state types, storage, or the network.

use serde::{Deserialize, Serialize};

use crate::error::MerkleError;
use crate::hash::{KeyHash, NodeHash, placement_hash};
use crate::shape::TreeShape;

/// A Merkle tree over one key range (one per ring partition a node replicates).
///
/// ```
/// use dynamo_merkle::{MerkleTree, TreeShape, key_hash};
/// let mut incremental = MerkleTree::new(TreeShape::default());
/// let v1 = key_hash(b"k", b"state-1");
/// let v2 = key_hash(b"k", b"state-2");
/// incremental.insert(b"k", v1);
/// incremental.update(b"k", Some(v1), Some(v2));
/// let rebuilt = MerkleTree::from_entries(TreeShape::default(), [(&b"k"[..], v2)]);
/// assert_eq!(incremental.root(), rebuilt.root());
/// assert_eq!(incremental, rebuilt);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TreeWire", into = "TreeWire")]
pub struct MerkleTree {
    shape: TreeShape,
    /// `levels[l]` holds the `fanout^l` node hashes of level `l`; `levels[depth]` are leaves.
    levels: Vec<Vec<NodeHash>>,
}

/// The serialized form: the shape and the leaves; inner levels are recomputed on decode.
#[derive(Serialize, Deserialize)]
struct TreeWire {
    shape: TreeShape,
    leaves: Vec<NodeHash>,
}

impl From<MerkleTree> for TreeWire {
    fn from(mut tree: MerkleTree) -> Self {
        let leaves = tree.levels.pop().unwrap_or_default();
        TreeWire {
            shape: tree.shape,
            leaves,
        }
    }
}

impl TryFrom<TreeWire> for MerkleTree {
    type Error = MerkleError;
    fn try_from(wire: TreeWire) -> Result<Self, MerkleError> {
        MerkleTree::from_leaves(wire.shape, wire.leaves)
    }
}

impl MerkleTree {
    /// An empty tree (every node hash is [`NodeHash::EMPTY`]).
    pub fn new(shape: TreeShape) -> Self {
        let levels = (0..=shape.depth())
            .map(|l| vec![NodeHash::EMPTY; shape.level_len(l)])
            .collect();
        MerkleTree { shape, levels }
    }

    /// Builds a tree from a full scan of `(key, key hash)` pairs, in any order.
    ///
    /// Each key must appear once; the result equals applying the same inserts incrementally.
    pub fn from_entries<K, I>(shape: TreeShape, entries: I) -> Self
    where
        K: AsRef<[u8]>,
        I: IntoIterator<Item = (K, KeyHash)>,
    {
        let mut leaves = vec![NodeHash::EMPTY; shape.leaves()];
        for (key, hash) in entries {
            let segment = shape.segment_of(key.as_ref());
            leaves[segment as usize] ^= hash;
        }
        Self::build_from_leaves(shape, leaves)
    }

    /// Builds a tree from its leaf segment hashes (for example decoded from a peer).
    pub fn from_leaves(shape: TreeShape, leaves: Vec<NodeHash>) -> Result<Self, MerkleError> {
        if leaves.len() != shape.leaves() {
            return Err(MerkleError::LeafCount {
                shape,
                expected: shape.leaves(),
                got: leaves.len(),
            });
        }
        Ok(Self::build_from_leaves(shape, leaves))
    }

    fn build_from_leaves(shape: TreeShape, leaves: Vec<NodeHash>) -> Self {
        let fanout = shape.fanout();
        let mut levels = vec![leaves];
        for _ in 0..shape.depth() {
            let below = levels.last().map_or(&[][..], Vec::as_slice);
            let above: Vec<NodeHash> = below
                .chunks_exact(fanout)
                .map(|children| children.iter().fold(NodeHash::EMPTY, |acc, &h| acc ^ h))
                .collect();
            levels.push(above);
        }
        levels.reverse();
        MerkleTree { shape, levels }
    }

    /// The tree's shape.
    pub fn shape(&self) -> TreeShape {
        self.shape
    }

    /// The root hash; equal roots mean (with overwhelming probability) equal key ranges.
    pub fn root(&self) -> NodeHash {
        self.levels[0][0]
    }

    /// The node hashes of `level` (0 = root, `depth` = leaves), or `None` past the leaves.
    pub fn level(&self, level: u8) -> Option<&[NodeHash]> {
        self.levels.get(level as usize).map(Vec::as_slice)
    }

    /// The leaf segment hashes.
    pub fn leaves(&self) -> &[NodeHash] {
        self.levels.last().map_or(&[], Vec::as_slice)
    }

    /// The hashes of the `fanout` children of `node` on `level`, or `None` if there is no such
    /// inner node.
    pub fn children(&self, level: u8, node: u32) -> Option<&[NodeHash]> {
        if level >= self.shape.depth() {
            return None;
        }
        let fanout = self.shape.fanout();
        let start = (node as usize).checked_mul(fanout)?;
        self.levels
            .get(level as usize + 1)?
            .get(start..start + fanout)
    }

    /// Heap bytes used by the node hashes.
    pub fn heap_bytes(&self) -> usize {
        self.shape.total_nodes() * std::mem::size_of::<NodeHash>()
    }

    /// Adds a key that was absent, with hash `hash`. O(depth).
    pub fn insert(&mut self, key: &[u8], hash: KeyHash) {
        self.toggle(placement_hash(key), NodeHash(hash.0));
    }

    /// Removes a key that was present with hash `hash` (the hash it was inserted with). O(depth).
    pub fn remove(&mut self, key: &[u8], hash: KeyHash) {
        self.toggle(placement_hash(key), NodeHash(hash.0));
    }

    /// Moves a key from its `old` hash (`None` = absent) to its `new` hash (`None` = removed).
    ///
    /// The caller must pass the hash the tree last saw for this key; storage knows it because
    /// it holds the old version state. O(depth).
    pub fn update(&mut self, key: &[u8], old: Option<KeyHash>, new: Option<KeyHash>) {
        self.update_placed(placement_hash(key), old, new);
    }

    /// As [`MerkleTree::update`] with the key's [`crate::placement_hash`] already computed.
    pub fn update_placed(&mut self, placement: u64, old: Option<KeyHash>, new: Option<KeyHash>) {
        let delta = old.map_or(0, |h| h.0) ^ new.map_or(0, |h| h.0);
        if delta != 0 {
            self.toggle(placement, NodeHash(delta));
        }
    }

    fn toggle(&mut self, placement: u64, delta: NodeHash) {
        let fanout_bits = u32::from(self.shape.fanout_bits());
        let depth = u32::from(self.shape.depth());
        let leaf = self.shape.segment_of_placement(placement) as usize;
        for (level, nodes) in self.levels.iter_mut().enumerate() {
            let index = leaf >> ((depth - level as u32) * fanout_bits);
            nodes[index] ^= delta;
        }
    }

    /// Merges a tree over a *disjoint* key set into this one (tictac-style): the result is the
    /// tree of the union. Also undoes a previous merge of the same tree (XOR is its own inverse).
    pub fn merge_disjoint(&mut self, other: &MerkleTree) -> Result<(), MerkleError> {
        self.check_shape(other.shape)?;
        for (mine, theirs) in self.levels.iter_mut().zip(&other.levels) {
            for (a, &b) in mine.iter_mut().zip(theirs) {
                *a ^= b;
            }
        }
        Ok(())
    }

    /// The differing nodes of `level` between two trees of the same shape.
    pub fn differing_nodes(&self, other: &MerkleTree, level: u8) -> Result<Vec<u32>, MerkleError> {
        self.check_shape(other.shape)?;
        let (Some(a), Some(b)) = (self.level(level), other.level(level)) else {
            return Ok(Vec::new());
        };
        Ok(differing(a, b, 0).collect())
    }

    /// The leaf segments whose hashes differ, found by descending level by level from the
    /// root and only opening differing nodes (what a diff session does across the network).
    pub fn differing_segments(&self, other: &MerkleTree) -> Result<Vec<u32>, MerkleError> {
        self.check_shape(other.shape)?;
        let mut frontier = if self.root() == other.root() {
            Vec::new()
        } else {
            vec![0u32]
        };
        for level in 0..self.shape.depth() {
            let mut next = Vec::new();
            for &node in &frontier {
                if let (Some(a), Some(b)) =
                    (self.children(level, node), other.children(level, node))
                {
                    let base = node * self.shape.fanout() as u32;
                    next.extend(differing(a, b, base));
                }
            }
            frontier = next;
        }
        Ok(frontier)
    }

    /// Encodes the tree with postcard (shape and leaves; about 32 KiB for the default shape).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a tree written by [`MerkleTree::to_bytes`]; truncated or inconsistent bytes are
    /// an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MerkleError> {
        postcard::from_bytes(bytes).map_err(|source| MerkleError::Decode {
            what: "merkle tree",
            source,
        })
    }

    pub(crate) fn check_shape(&self, theirs: TreeShape) -> Result<(), MerkleError> {
        if self.shape == theirs {
            Ok(())
        } else {
            Err(MerkleError::ShapeMismatch {
                ours: self.shape,
                theirs,
            })
        }
    }
}

/// Indices (offset by `base`) where two equally long hash slices differ.
pub(crate) fn differing<'a>(
    a: &'a [NodeHash],
    b: &'a [NodeHash],
    base: u32,
) -> impl Iterator<Item = u32> + 'a {
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(move |(i, _)| base + i as u32)
}
