//! Where the final diff step gets the `(key, hash)` lists of leaf segments.
//!
//! The tree stores no keys (to keep a thousand trees per node small), so a diff session asks
//! a [`SegmentSource`] for the keys of the few segments that differ. Storage implements the
//! trait later; [`KeyIndex`] is a plain in-memory implementation for tests, benchmarks and
//! small deployments. This module must not know the version-state types or the network.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::KeyHash;
use crate::shape::TreeShape;

/// One key and the hash of its full version state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyEntry {
    /// The key bytes.
    pub key: Vec<u8>,
    /// [`crate::key_hash`] of the key and its version state.
    pub hash: KeyHash,
}

/// Lists the keys of one leaf segment, as of the tree the session runs on.
///
/// Implementations return every present key whose [`TreeShape::segment_of`] is `segment`,
/// each once, with the same hash the tree was fed; order does not matter. Closures
/// `Fn(u32) -> Vec<KeyEntry>` implement it too.
pub trait SegmentSource {
    /// All `(key, hash)` entries of `segment`.
    fn segment_entries(&self, segment: u32) -> Vec<KeyEntry>;
}

impl<F> SegmentSource for F
where
    F: Fn(u32) -> Vec<KeyEntry>,
{
    fn segment_entries(&self, segment: u32) -> Vec<KeyEntry> {
        self(segment)
    }
}

/// An in-memory map from key to [`KeyHash`], grouped by leaf segment.
///
/// ```
/// use dynamo_merkle::{KeyIndex, MerkleTree, SegmentSource, TreeShape, key_hash};
/// let shape = TreeShape::default();
/// let mut index = KeyIndex::new(shape);
/// let mut tree = MerkleTree::new(shape);
/// let h = key_hash(b"k", b"v1");
/// let old = index.set(b"k", Some(h));
/// tree.update(b"k", old, Some(h));
/// assert_eq!(index.segment_entries(shape.segment_of(b"k")).len(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct KeyIndex {
    shape: TreeShape,
    segments: Vec<BTreeMap<Vec<u8>, KeyHash>>,
    len: usize,
}

impl KeyIndex {
    /// An empty index for trees of `shape`.
    pub fn new(shape: TreeShape) -> Self {
        KeyIndex {
            shape,
            segments: vec![BTreeMap::new(); shape.leaves()],
            len: 0,
        }
    }

    /// The shape whose segments this index groups by.
    pub fn shape(&self) -> TreeShape {
        self.shape
    }

    /// Sets (`Some`) or removes (`None`) a key's hash; returns its previous hash, which is the
    /// `old` argument [`crate::MerkleTree::update`] needs.
    pub fn set(&mut self, key: &[u8], hash: Option<KeyHash>) -> Option<KeyHash> {
        let segment = &mut self.segments[self.shape.segment_of(key) as usize];
        let old = match hash {
            Some(h) => segment.insert(key.to_vec(), h),
            None => segment.remove(key),
        };
        match (old.is_some(), hash.is_some()) {
            (false, true) => self.len += 1,
            (true, false) => self.len -= 1,
            _ => {}
        }
        old
    }

    /// The current hash of a key.
    pub fn get(&self, key: &[u8]) -> Option<KeyHash> {
        self.segments[self.shape.segment_of(key) as usize]
            .get(key)
            .copied()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is present.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every `(key, hash)`, grouped by segment.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], KeyHash)> + '_ {
        self.segments
            .iter()
            .flat_map(|s| s.iter().map(|(k, &h)| (k.as_slice(), h)))
    }
}

impl SegmentSource for KeyIndex {
    fn segment_entries(&self, segment: u32) -> Vec<KeyEntry> {
        self.segments
            .get(segment as usize)
            .map(|s| {
                s.iter()
                    .map(|(k, &hash)| KeyEntry {
                        key: k.clone(),
                        hash,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
