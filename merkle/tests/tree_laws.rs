//! Laws of the incremental Merkle tree (Dynamo paper section 4.7: each node keeps one Merkle
//! tree per key range; a parent's hash covers its children, so equal roots mean equal ranges).

use std::collections::BTreeMap;

use dynamo_merkle::{KeyIndex, MerkleError, MerkleTree, NodeHash, TreeShape, key_hash};
use proptest::prelude::*;

fn shapes() -> impl Strategy<Value = TreeShape> {
    prop_oneof![
        Just(TreeShape::new(1, 1).expect("valid shape")),
        Just(TreeShape::new(2, 2).expect("valid shape")),
        Just(TreeShape::new(3, 2).expect("valid shape")),
        Just(TreeShape::default()),
    ]
}

/// (key id, new state or `None` to remove)
fn ops() -> impl Strategy<Value = Vec<(u8, Option<u8>)>> {
    prop::collection::vec((0u8..48, prop::option::weighted(0.8, any::<u8>())), 0..200)
}

fn key(id: u8) -> Vec<u8> {
    format!("key-{id}").into_bytes()
}

fn apply(shape: TreeShape, ops: &[(u8, Option<u8>)]) -> (MerkleTree, KeyIndex) {
    let mut tree = MerkleTree::new(shape);
    let mut index = KeyIndex::new(shape);
    for &(id, state) in ops {
        let k = key(id);
        let new = state.map(|s| key_hash(&k, &[s]));
        let old = index.set(&k, new);
        tree.update(&k, old, new);
    }
    (tree, index)
}

proptest! {
    /// Any sequence of inserts, updates and removes gives the same tree as a full rebuild.
    #[test]
    fn incremental_equals_rebuild(shape in shapes(), ops in ops()) {
        let (tree, index) = apply(shape, &ops);
        let rebuilt = MerkleTree::from_entries(shape, index.iter());
        prop_assert_eq!(tree.root(), rebuilt.root());
        prop_assert_eq!(&tree, &rebuilt);
        if index.is_empty() {
            prop_assert_eq!(tree.root(), NodeHash::EMPTY);
        }
    }

    /// The tree depends on the final key set only, not on the order the updates came in.
    #[test]
    fn order_independent(
        shape in shapes(),
        final_state in prop::collection::btree_map(0u8..64, any::<u8>(), 0..64)
            .prop_flat_map(|m| {
                let v: Vec<(u8, u8)> = m.into_iter().collect();
                (Just(v.clone()), Just(v).prop_shuffle())
            }),
    ) {
        let (in_order, shuffled) = final_state;
        let a: Vec<_> = in_order.iter().map(|&(k, s)| (k, Some(s))).collect();
        let b: Vec<_> = shuffled.iter().map(|&(k, s)| (k, Some(s))).collect();
        prop_assert_eq!(apply(shape, &a).0, apply(shape, &b).0);
    }

    /// Trees are values: the postcard encoding round-trips, and trees over disjoint key sets
    /// merge into the tree of the union (tictac-style).
    #[test]
    fn serialize_and_merge(shape in shapes(), ops in ops(), split in any::<u8>()) {
        let (tree, index) = apply(shape, &ops);
        prop_assert_eq!(&MerkleTree::from_bytes(&tree.to_bytes()).unwrap(), &tree);

        let (low, high): (Vec<_>, Vec<_>) = index.iter().partition(|(k, _)| k.len() % 2 == usize::from(split % 2));
        let mut merged = MerkleTree::from_entries(shape, low.clone());
        merged.merge_disjoint(&MerkleTree::from_entries(shape, high.clone())).unwrap();
        prop_assert_eq!(&merged, &tree);
        // XOR is its own inverse: merging `high` again leaves `low`.
        merged.merge_disjoint(&MerkleTree::from_entries(shape, high)).unwrap();
        prop_assert_eq!(merged, MerkleTree::from_entries(shape, low));
    }

    /// Level-by-level descent finds exactly the leaves whose hashes differ.
    #[test]
    fn descent_finds_differing_leaves(shape in shapes(), a in ops(), b in ops()) {
        let (ta, _) = apply(shape, &a);
        let (tb, _) = apply(shape, &b);
        let brute: Vec<u32> = ta.leaves().iter().zip(tb.leaves()).enumerate()
            .filter(|(_, (x, y))| x != y).map(|(i, _)| i as u32).collect();
        prop_assert_eq!(ta.differing_segments(&tb).unwrap(), brute.clone());
        prop_assert_eq!(ta.differing_nodes(&tb, shape.depth()).unwrap(), brute);
    }
}

type HashCase = (&'static [u8], &'static [u8], &'static [u8], bool);

/// The per-key hash covers the whole version state: a different sibling set is a different
/// hash, and a key's segment never moves when its state changes.
#[test]
fn key_hash_covers_version_state() {
    // (key, state 1, state 2, hashes equal)
    let cases: &[HashCase] = &[
        (b"k", b"siblings:[a@A1]", b"siblings:[a@A1]", true),
        (b"k", b"siblings:[a@A1]", b"siblings:[a@A1,b@B1]", false),
        (b"k", b"siblings:[a@A1]", b"siblings:[a@A2]", false),
        (b"k", b"value", b"tombstone@A3", false),
        (b"k", b"", b"", true),
    ];
    for &(k, s1, s2, equal) in cases {
        assert_eq!(
            key_hash(k, s1) == key_hash(k, s2),
            equal,
            "{s1:?} vs {s2:?}"
        );
    }
    assert_ne!(key_hash(b"k1", b"v"), key_hash(b"k2", b"v"));
}

#[test]
fn shapes_are_validated() {
    let cases: &[(u8, u8, bool)] = &[
        (0, 3, false),
        (1, 1, true),
        (4, 3, true),
        (8, 3, true),
        (9, 1, false),
        (4, 0, false),
        (4, 6, true),
        (4, 7, false),
        (1, 24, true),
        (1, 25, false),
    ];
    for &(bits, depth, ok) in cases {
        assert_eq!(TreeShape::new(bits, depth).is_ok(), ok, "{bits} {depth}");
    }
    let default = TreeShape::default();
    assert_eq!(default.leaves(), 4096);
    // 1024 partitions of default trees stay well under 100 MiB.
    assert!(MerkleTree::new(default).heap_bytes() * 1024 < 100 << 20);
}

#[test]
fn bad_tree_bytes_are_clear_errors() {
    let mut tree = MerkleTree::new(TreeShape::new(2, 2).expect("valid shape"));
    tree.insert(b"a", key_hash(b"a", b"1"));
    let bytes = tree.to_bytes();
    assert!(matches!(
        MerkleTree::from_bytes(&bytes[..bytes.len() - 1]),
        Err(MerkleError::Decode { .. })
    ));
    assert!(matches!(
        MerkleTree::from_bytes(&[]),
        Err(MerkleError::Decode { .. })
    ));
    // A shape byte outside the supported range.
    let mut bad_shape = bytes.clone();
    bad_shape[0] = 9;
    assert!(matches!(
        MerkleTree::from_bytes(&bad_shape),
        Err(MerkleError::Decode { .. })
    ));
    // Wrong leaf count for the shape.
    assert!(matches!(
        MerkleTree::from_leaves(
            TreeShape::new(2, 2).expect("valid shape"),
            vec![NodeHash::EMPTY; 3]
        ),
        Err(MerkleError::LeafCount {
            expected: 16,
            got: 3,
            ..
        })
    ));
    let other = MerkleTree::new(TreeShape::default());
    assert!(matches!(
        tree.clone().merge_disjoint(&other),
        Err(MerkleError::ShapeMismatch { .. })
    ));
    assert!(tree.differing_segments(&other).is_err());
}

#[test]
fn removing_everything_returns_to_empty() {
    let shape = TreeShape::default();
    let mut tree = MerkleTree::new(shape);
    let keys: BTreeMap<Vec<u8>, _> = (0..100u32)
        .map(|i| (i.to_be_bytes().to_vec(), key_hash(&i.to_be_bytes(), b"v")))
        .collect();
    for (k, &h) in &keys {
        tree.insert(k, h);
    }
    assert_ne!(tree, MerkleTree::new(shape));
    for (k, &h) in &keys {
        tree.remove(k, h);
    }
    assert_eq!(tree, MerkleTree::new(shape));
}
