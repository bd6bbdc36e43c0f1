//! The diff session (Dynamo paper section 4.7: replicas exchange the roots of their Merkle
//! trees, then the children of differing nodes, down to the leaves, to find the keys that are
//! out of sync while moving little data).

use std::collections::{BTreeMap, BTreeSet};

use dynamo_merkle::{
    BucketId, DiffInitiator, DiffReply, DiffRequest, DiffResponder, KeyDifference, KeyEntry,
    KeyHash, KeyIndex, MerkleError, MerkleTree, NodeHash, SegmentReply, Step, TreeShape,
    diff_in_memory, key_hash, naive_exchange_bytes,
};
use proptest::prelude::*;

/// Recognises the error a bad-input case must produce.
type ErrorCheck = fn(&MerkleError) -> bool;

/// One replica: a tree and the index the diff reads segment keys from.
struct Replica {
    tree: MerkleTree,
    index: KeyIndex,
}

impl Replica {
    fn new(shape: TreeShape, data: &BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        let mut r = Replica {
            tree: MerkleTree::new(shape),
            index: KeyIndex::new(shape),
        };
        for (k, state) in data {
            r.set(k, Some(state));
        }
        r
    }

    fn set(&mut self, key: &[u8], state: Option<&[u8]>) {
        let new = state.map(|s| key_hash(key, s));
        let old = self.index.set(key, new);
        self.tree.update(key, old, new);
    }
}

fn expected(a: &BTreeMap<Vec<u8>, Vec<u8>>, b: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<KeyDifference> {
    let keys: BTreeSet<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let local = a.get(k).map(|s| key_hash(k, s));
            let remote = b.get(k).map(|s| key_hash(k, s));
            (local != remote).then(|| KeyDifference {
                key: k.clone(),
                local,
                remote,
            })
        })
        .collect()
}

fn check(shape: TreeShape, a: &BTreeMap<Vec<u8>, Vec<u8>>, b: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let (ra, rb) = (Replica::new(shape, a), Replica::new(shape, b));
    let outcome = diff_in_memory(&ra.tree, &ra.index, &rb.tree, &rb.index).expect("diff session");
    let want = expected(a, b);
    assert_eq!(outcome.differences, want);
    let max = if want.is_empty() {
        1
    } else {
        u32::from(shape.depth()) + 2
    };
    assert!(
        outcome.stats.round_trips <= max,
        "{} round trips",
        outcome.stats.round_trips
    );
}

fn data(keys: impl IntoIterator<Item = u32>, state: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    keys.into_iter()
        .map(|i| (format!("k{i}").into_bytes(), state.as_bytes().to_vec()))
        .collect()
}

/// Keys that all fall in leaf segment 0 of `shape`.
fn same_segment_keys(shape: TreeShape, n: usize) -> Vec<u32> {
    (0u32..)
        .filter(|i| shape.segment_of(format!("k{i}").as_bytes()) == 0)
        .take(n)
        .collect()
}

#[test]
fn edge_cases() {
    let shape = TreeShape::default();
    let small = TreeShape::new(2, 2).expect("valid shape");
    let one_segment = same_segment_keys(shape, 40);
    let mut one_segment_changed = data(one_segment.iter().copied(), "v1");
    one_segment_changed.insert(b"k-extra".to_vec(), b"v".to_vec());
    let first = format!("k{}", one_segment[0]).into_bytes();
    one_segment_changed.insert(first.clone(), b"v2".to_vec());
    let last = format!("k{}", one_segment[39]).into_bytes();
    one_segment_changed.remove(&last);

    let cases: Vec<(&str, TreeShape, BTreeMap<_, _>, BTreeMap<_, _>)> = vec![
        ("empty vs empty", shape, data([], ""), data([], "")),
        ("empty vs full", shape, data([], ""), data(0..500, "v1")),
        ("full vs empty", shape, data(0..500, "v1"), data([], "")),
        ("equal full", shape, data(0..500, "v1"), data(0..500, "v1")),
        ("one key vs none", shape, data([7], "v1"), data([], "")),
        (
            "one key both sides",
            shape,
            data([7], "v1"),
            data([7], "v1"),
        ),
        (
            "one key two states",
            shape,
            data([7], "v1"),
            data([7], "v2"),
        ),
        (
            "every key differs",
            shape,
            data(0..300, "v1"),
            data(0..300, "v2"),
        ),
        (
            "all keys in one segment, three differ",
            shape,
            data(one_segment.iter().copied(), "v1"),
            one_segment_changed,
        ),
        (
            "all keys in one segment vs empty",
            shape,
            data(one_segment.iter().copied(), "v1"),
            data([], ""),
        ),
        ("tiny tree, big segments", small, data(0..2000, "v1"), {
            let mut d = data(0..2000, "v1");
            d.insert(b"k5".to_vec(), b"v2".to_vec());
            d.remove(b"k6".as_slice());
            d.insert(b"new".to_vec(), b"v1".to_vec());
            d
        }),
    ];
    for (name, shape, a, b) in cases {
        eprintln!("case: {name}");
        check(shape, &a, &b);
        check(shape, &b, &a);
    }
}

/// Identical trees: one round trip, the root one way and a one-byte "equal" back.
#[test]
fn identical_trees_cost_one_round_trip() {
    let shape = TreeShape::default();
    let r = Replica::new(shape, &data(0..1000, "v"));
    let outcome = diff_in_memory(&r.tree, &r.index, &r.tree, &r.index).unwrap();
    assert!(outcome.differences.is_empty());
    assert_eq!(outcome.stats.round_trips, 1);
    // Enum tag + shape (2 bytes) + 8-byte root; tag-only reply.
    assert_eq!(outcome.stats.bytes_sent, 11);
    assert_eq!(outcome.stats.bytes_received, 1);
}

/// A few differing keys among many cost a small fraction of sending every key's hash, and
/// the responder's counters agree with the initiator's.
#[test]
fn small_difference_is_cheap() {
    let shape = TreeShape::default();
    let a_data = data(0..20_000, "v1");
    let mut b_data = a_data.clone();
    for i in [3u32, 5_000, 12_345, 19_999] {
        b_data.insert(format!("k{i}").into_bytes(), b"v2".to_vec());
    }
    let (a, b) = (Replica::new(shape, &a_data), Replica::new(shape, &b_data));
    let mut responder = DiffResponder::new();
    let (mut session, mut request) = DiffInitiator::start(&a.tree);
    let outcome = loop {
        let reply = responder
            .handle(&b.tree, &b.index, &request)
            .expect("reply");
        match session.on_reply(&a.tree, &a.index, reply).expect("step") {
            Step::Send(next) => request = next,
            Step::Done(outcome) => break outcome,
        }
    };
    assert_eq!(outcome.differences, expected(&a_data, &b_data));
    assert!(session.is_done());
    let naive = naive_exchange_bytes(a.index.iter());
    assert!(
        outcome.stats.total_bytes() * 20 < naive,
        "{outcome:?} vs {naive}"
    );
    let r = responder.stats();
    assert_eq!(r.round_trips, outcome.stats.round_trips);
    assert_eq!(r.bytes_sent, outcome.stats.bytes_received);
    assert_eq!(r.bytes_received, outcome.stats.bytes_sent);
}

proptest! {
    /// The diff of two random replicas is exactly the symmetric difference of their
    /// (key, version state) sets, within depth + 2 round trips.
    #[test]
    fn diff_is_exact_symmetric_difference(
        shape in prop_oneof![
            Just(TreeShape::new(1, 1).expect("valid shape")),
            Just(TreeShape::new(2, 2).expect("valid shape")),
            Just(TreeShape::new(4, 2).expect("valid shape")),
            Just(TreeShape::default()),
        ],
        a in prop::collection::btree_map(0u16..400, 0u8..3, 0..300),
        b in prop::collection::btree_map(0u16..400, 0u8..3, 0..300),
    ) {
        let conv = |m: BTreeMap<u16, u8>| -> BTreeMap<Vec<u8>, Vec<u8>> {
            m.into_iter().map(|(k, s)| (k.to_be_bytes().to_vec(), vec![s])).collect()
        };
        check(shape, &conv(a), &conv(b));
    }

    /// Replicas that reach the same final states through different histories and update
    /// orders have no differences (one round trip).
    #[test]
    fn update_order_does_not_matter(
        updates in prop::collection::vec((0u16..100, prop::option::of(0u8..4)), 0..150)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        let shape = TreeShape::new(2, 2).expect("valid shape");
        let (history, shuffled) = updates;
        let state = |s: Option<u8>| s.map(|s| vec![s]);
        // Replica A lives through the whole history, intermediate states and removes included.
        let mut ra = Replica::new(shape, &BTreeMap::new());
        for &(k, s) in &history {
            ra.set(&k.to_be_bytes(), state(s).as_deref());
        }
        // Replica B only sees each key's final state, in another order.
        let last: BTreeMap<u16, Option<u8>> = history.iter().copied().collect();
        let mut rb = Replica::new(shape, &BTreeMap::new());
        for &(k, _) in &shuffled {
            rb.set(&k.to_be_bytes(), state(last[&k]).as_deref());
        }
        let outcome = diff_in_memory(&ra.tree, &ra.index, &rb.tree, &rb.index).unwrap();
        prop_assert!(outcome.differences.is_empty());
        prop_assert_eq!(outcome.stats.round_trips, 1);
    }
}

fn pair() -> (Replica, Replica) {
    let shape = TreeShape::new(2, 2).expect("valid shape");
    (
        Replica::new(shape, &data(0..200, "a")),
        Replica::new(shape, &data(0..200, "b")),
    )
}

/// Bad input from a peer is a clear error, never a panic (anti-entropy talks to any replica).
#[test]
fn bad_requests_are_rejected() {
    let (a, b) = pair();
    let shape = a.tree.shape();
    let mut responder = DiffResponder::new();
    let root = DiffRequest::Root {
        shape,
        root: a.tree.root(),
    }
    .encode();
    let cases: Vec<(&str, Vec<u8>, ErrorCheck)> = vec![
        ("empty", vec![], |e| matches!(e, MerkleError::Decode { .. })),
        ("truncated", root[..root.len() - 3].to_vec(), |e| {
            matches!(e, MerkleError::Decode { .. })
        }),
        ("trailing", [root.clone(), vec![0]].concat(), |e| {
            matches!(e, MerkleError::TrailingBytes { extra: 1, .. })
        }),
        ("unknown tag", vec![42, 1, 1], |e| {
            matches!(e, MerkleError::Decode { .. })
        }),
        (
            "level past the leaves",
            DiffRequest::Children {
                shape,
                level: 2,
                nodes: vec![0],
            }
            .encode(),
            |e| matches!(e, MerkleError::OutOfRange { .. }),
        ),
        (
            "node out of range",
            DiffRequest::Children {
                shape,
                level: 1,
                nodes: vec![4],
            }
            .encode(),
            |e| matches!(e, MerkleError::OutOfRange { index: 4, .. }),
        ),
        (
            "too many nodes",
            DiffRequest::Children {
                shape,
                level: 0,
                nodes: vec![0, 0],
            }
            .encode(),
            |e| matches!(e, MerkleError::TooMany { .. }),
        ),
        (
            "segment out of range",
            DiffRequest::Segments {
                shape,
                segments: vec![16],
            }
            .encode(),
            |e| matches!(e, MerkleError::OutOfRange { index: 16, .. }),
        ),
        (
            "sub-bucket out of range",
            DiffRequest::Buckets {
                shape,
                buckets: vec![BucketId { segment: 0, sub: 4 }],
            }
            .encode(),
            |e| matches!(e, MerkleError::OutOfRange { index: 4, .. }),
        ),
    ];
    for (name, bytes, is_expected) in cases {
        let err = responder
            .handle_bytes(&b.tree, &b.index, &bytes)
            .expect_err(name);
        assert!(is_expected(&err), "{name}: {err}");
    }
    // Another tree shape gets a refusal the initiator turns into a clear error.
    let other = Replica::new(TreeShape::default(), &data(0..10, "a"));
    let err = diff_in_memory(&other.tree, &other.index, &b.tree, &b.index).unwrap_err();
    assert!(matches!(err, MerkleError::ShapeMismatch { .. }), "{err}");
}

#[test]
fn bad_replies_are_rejected() {
    let (a, _) = pair();
    let fanout = a.tree.shape().fanout();
    let foreign_key = (0u32..10_000)
        .map(|i| format!("x{i}").into_bytes())
        .find(|k| a.tree.shape().segment_of(k) != 0)
        .unwrap();
    let foreign = KeyEntry {
        key: foreign_key,
        hash: KeyHash(1),
    };
    let root_hashes = DiffReply::Hashes(vec![NodeHash(9); fanout]);
    let seg0 = DiffReply::Hashes(
        std::iter::once(NodeHash(9))
            .chain(a.tree.children(1, 0).unwrap()[1..].iter().copied())
            .chain(a.tree.children(1, 1).unwrap().iter().copied())
            .chain(a.tree.children(1, 2).unwrap().iter().copied())
            .chain(a.tree.children(1, 3).unwrap().iter().copied())
            .collect(),
    );
    // Each case: replies fed in order; the last one must fail as described.
    let cases: Vec<(&str, Vec<DiffReply>, ErrorCheck)> = vec![
        (
            "short hash list",
            vec![DiffReply::Hashes(vec![NodeHash(1)])],
            |e| matches!(e, MerkleError::WrongLength { .. }),
        ),
        (
            "segments before hashes",
            vec![DiffReply::Segments(vec![])],
            |e| matches!(e, MerkleError::UnexpectedMessage { .. }),
        ),
        (
            "wrong number of segment replies",
            vec![
                root_hashes.clone(),
                seg0.clone(),
                DiffReply::Segments(vec![]),
            ],
            |e| matches!(e, MerkleError::WrongLength { .. }),
        ),
        (
            "key listed under the wrong segment",
            vec![
                root_hashes.clone(),
                seg0.clone(),
                DiffReply::Segments(vec![SegmentReply::Entries(vec![foreign.clone()])]),
            ],
            |e| matches!(e, MerkleError::ForeignKey { segment: 0 }),
        ),
        (
            "wrong number of sub-bucket hashes",
            vec![
                root_hashes.clone(),
                seg0.clone(),
                DiffReply::Segments(vec![SegmentReply::SubHashes(vec![NodeHash(1)])]),
            ],
            |e| matches!(e, MerkleError::WrongLength { .. }),
        ),
    ];
    for (name, replies, is_expected) in cases {
        let (mut session, _) = DiffInitiator::start(&a.tree);
        let mut result = Ok(Step::Send(DiffRequest::Root {
            shape: a.tree.shape(),
            root: NodeHash(0),
        }));
        for reply in replies {
            result = session.on_reply(&a.tree, &a.index, reply);
        }
        let err = result.expect_err(name);
        assert!(is_expected(&err), "{name}: {err}");
        // A failed session refuses further input.
        assert_eq!(
            session.on_reply(&a.tree, &a.index, DiffReply::Equal),
            Err(MerkleError::SessionFinished)
        );
    }
    // Truncated reply bytes.
    let (mut session, _) = DiffInitiator::start(&a.tree);
    let bytes = root_hashes.encode();
    let err = session
        .on_reply_bytes(&a.tree, &a.index, &bytes[..bytes.len() - 1])
        .unwrap_err();
    assert!(matches!(err, MerkleError::Decode { .. }), "{err}");
}
