//! Placement, balance, spreading and movement properties of the ring (paper sections 4.2, 4.3,
//! 4.6, 4.9 and 6.2).

use dynamo_ring::{Layout, Member, NodeId, Ring, RingError, Role, Target, key_position};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn named(names: &[&str]) -> Vec<Member> {
    names.iter().map(|&n| Member::new(n, n, 1)).collect()
}

fn nodes(count: usize) -> Vec<Member> {
    (0..count)
        .map(|i| Member::new(format!("node-{i:03}"), format!("zone-{i:03}"), 1))
        .collect()
}

/// A key that falls in partition `p` of `ring`.
fn key_in_partition(ring: &Ring, p: u32) -> Vec<u8> {
    (0u32..1_000_000)
        .map(|i| format!("key-{i}").into_bytes())
        .find(|k| ring.partition_of_key(k) == p)
        .expect("some key lands in every partition")
}

fn owners(ring: &Ring) -> Vec<u32> {
    match ring.layout() {
        Layout::EqualPartitions { owners } => owners.clone(),
        Layout::RandomTokens { .. } => panic!("equal partitions expected"),
    }
}

fn primary(node: &str) -> Target {
    Target {
        node: node.into(),
        role: Role::Primary,
    }
}

fn fallback(node: &str, for_node: &str) -> Target {
    Target {
        node: node.into(),
        role: Role::Fallback {
            for_node: for_node.into(),
        },
    }
}

/// Paper 4.3 and 4.6 on a 4-node, 8-partition ring with N = 3: the preference list, and the
/// fallbacks with one and two dead nodes.
#[test]
fn fallbacks_with_one_and_two_dead_nodes() {
    let ring = Ring::equal_partitions(8, 3, named(&["a", "b", "c", "d"])).unwrap();
    assert_eq!(
        owners(&ring),
        vec![0, 1, 2, 3, 0, 1, 2, 3],
        "round-robin claim"
    );
    let key = key_in_partition(&ring, 0);
    let cases: &[(&[&str], &[Target])] = &[
        (&[], &[primary("a"), primary("b"), primary("c")]),
        (&["a"], &[primary("b"), primary("c"), fallback("d", "a")]),
        (&["c"], &[primary("a"), primary("b"), fallback("d", "c")]),
        (&["d"], &[primary("a"), primary("b"), primary("c")]),
        (&["a", "b"], &[primary("c"), fallback("d", "a")]),
        (&["b", "d"], &[primary("a"), primary("c")]),
        (&["a", "b", "c", "d"], &[]),
    ];
    for (dead, expected) in cases {
        let up = |node: &NodeId| !dead.contains(&node.as_str());
        let got = ring.extended_preference_list(&key, 3, up);
        assert_eq!(&got, expected, "dead: {dead:?}");
    }
    let names: Vec<&str> = ring
        .preference_list(&key, 3)
        .iter()
        .map(|n| n.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

/// Paper 4.2: positions are MD5 big-endian, and partition p holds the positions whose top bits
/// are p.
#[test]
fn partitions_cut_the_md5_space_evenly() {
    let ring = Ring::equal_partitions(1024, 3, nodes(10)).unwrap();
    for i in 0..1000 {
        let key = format!("k{i}");
        let position = key_position(key.as_bytes());
        let partition = ring.partition_of(position);
        assert_eq!(partition as u128, position >> 118);
        assert!(ring.partition_range(partition).contains(position));
    }
    let single = Ring::equal_partitions(1, 1, nodes(1)).unwrap();
    assert_eq!(single.partition_of(u128::MAX), 0);
    assert!(single.partition_range(0).contains(0));
}

#[test]
fn invalid_rings_are_refused_with_a_clear_error() {
    let duplicate = vec![Member::new("a", "z", 1), Member::new("a", "y", 1)];
    let cases: Vec<(Result<Ring, RingError>, RingError)> = vec![
        (
            Ring::equal_partitions(12, 3, nodes(3)),
            RingError::PartitionsNotPowerOfTwo(12),
        ),
        (
            Ring::equal_partitions(0, 3, nodes(3)),
            RingError::PartitionsNotPowerOfTwo(0),
        ),
        (
            Ring::equal_partitions(4, 3, nodes(5)),
            RingError::MorePartitionsNeeded {
                members: 5,
                partitions: 4,
            },
        ),
        (
            Ring::equal_partitions(8, 0, nodes(3)),
            RingError::ZeroReplicas,
        ),
        (Ring::equal_partitions(8, 3, vec![]), RingError::NoMembers),
        (
            Ring::equal_partitions(8, 3, duplicate),
            RingError::DuplicateMember("a".into()),
        ),
        (
            Ring::equal_partitions(8, 3, vec![Member::new("a", "z", 0)]),
            RingError::ZeroCapacity("a".into()),
        ),
        (
            Ring::random_tokens(0, 3, nodes(3), &mut StdRng::seed_from_u64(1)),
            RingError::ZeroTokens,
        ),
    ];
    for (got, expected) in cases {
        assert_eq!(got, Err(expected));
    }
    let ring = Ring::equal_partitions(8, 3, nodes(3)).unwrap();
    assert_eq!(
        ring.remove_member(&"nobody".into()).map(|_| ()),
        Err(RingError::UnknownMember("nobody".into()))
    );
    assert_eq!(
        ring.add_member(Member::new("node-000", "z", 1)).map(|_| ()),
        Err(RingError::DuplicateMember("node-000".into()))
    );
}

/// The ring is a value gossip can carry: postcard round trip, and a malformed ring from a peer
/// is an error rather than a panic later.
#[test]
fn rings_round_trip_and_malformed_rings_are_rejected() {
    let ring = Ring::equal_partitions(64, 3, nodes(5)).unwrap();
    let bytes = postcard::to_allocvec(&ring).unwrap();
    let back: Ring = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, ring);

    let tokens = Ring::random_tokens(8, 3, nodes(5), &mut StdRng::seed_from_u64(7)).unwrap();
    let back: Ring = postcard::from_bytes(&postcard::to_allocvec(&tokens).unwrap()).unwrap();
    assert_eq!(back, tokens);

    for cut in 0..bytes.len() {
        assert!(postcard::from_bytes::<Ring>(&bytes[..cut]).is_err());
    }
    // Flip every byte in turn: decoding either fails or yields a ring that answers queries.
    for i in 0..bytes.len() {
        let mut corrupt = bytes.clone();
        corrupt[i] ^= 0xff;
        if let Ok(ring) = postcard::from_bytes::<Ring>(&corrupt) {
            let _ = ring.preference_list(b"key", 3);
            let _ = ring.violations();
        }
    }
}

/// Strategy 1 with a seeded RNG is reproducible, and its preference lists are still N
/// distinct nodes.
#[test]
fn random_tokens_are_reproducible_from_the_seed() {
    let a = Ring::random_tokens(16, 3, nodes(6), &mut StdRng::seed_from_u64(42)).unwrap();
    let b = Ring::random_tokens(16, 3, nodes(6), &mut StdRng::seed_from_u64(42)).unwrap();
    let c = Ring::random_tokens(16, 3, nodes(6), &mut StdRng::seed_from_u64(43)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.partition_count(), 96);
    for i in 0..500 {
        let key = format!("k{i}");
        let list = a.preference_list(key.as_bytes(), 3);
        assert_eq!(list.len(), 3);
        assert!(list[0] != list[1] && list[1] != list[2] && list[0] != list[2]);
        let partition = a.partition_of_key(key.as_bytes());
        assert!(
            a.partition_range(partition)
                .contains(key_position(key.as_bytes()))
        );
        assert_eq!(list[0], a.partition_owner(partition));
    }
    assert_eq!(
        a.add_member(Member::new("x", "x", 1)).map(|_| ()),
        Err(RingError::NotEqualPartitions)
    );
}

/// A cluster with S > N nodes of equal capacity, or at least N + 1 zones of equal weight, can
/// be spread without breaches; the claim finds such a spread.
#[test]
fn feasible_configurations_have_no_violations() {
    for q in [8u32, 16, 64, 256, 1024] {
        for s in 4..=20usize {
            if s > q as usize {
                continue;
            }
            let ring = Ring::equal_partitions(q, 3, nodes(s)).unwrap();
            assert_eq!(ring.violations(), vec![], "q={q} s={s}");
        }
    }
    // Four zones of two nodes each: zones are spread too.
    let zoned: Vec<Member> = (0..8)
        .map(|i| Member::new(format!("n{i}"), format!("zone-{}", i % 4), 1))
        .collect();
    let ring = Ring::equal_partitions(256, 3, zoned).unwrap();
    assert_eq!(ring.violations(), vec![]);
}

/// With exactly N nodes (or zones) and Q not a multiple of N, some window must repeat: the claim
/// keeps the breaches few and preference lists still hold N distinct nodes.
#[test]
fn infeasible_configurations_keep_breaches_few() {
    let ring = Ring::equal_partitions(1024, 3, nodes(3)).unwrap();
    let breaches = ring.violations().len();
    assert!(breaches > 0 && breaches <= 4, "{breaches} breaches");
    for p in 0..1024 {
        assert_eq!(ring.replicas_of_partition(p, 3).len(), 3);
    }
}

/// Capacity weights (paper 6.2 and 5: heterogeneity): a node of capacity 2 owns twice the
/// partitions.
#[test]
fn capacity_weights_ownership() {
    let members = vec![
        Member::new("small-1", "a", 1),
        Member::new("small-2", "b", 1),
        Member::new("big", "c", 2),
        Member::new("small-3", "d", 1),
        Member::new("small-4", "e", 1),
    ];
    let ring = Ring::equal_partitions(1024, 3, members).unwrap();
    let counts: Vec<(String, u32)> = ring
        .partition_counts()
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
    let big = counts.iter().find(|(n, _)| n == "big").unwrap().1;
    assert!((340..=342).contains(&big), "{counts:?}");
    for (name, count) in &counts {
        if name != "big" {
            assert!((170..=171).contains(count), "{counts:?}");
        }
    }
}

/// Paper 4.9 and 6.2: a join moves about 1/(S+1) of the keys, all of them to the new node;
/// nothing moves between two old nodes, and the replica sets only gain the newcomer.
#[test]
fn a_join_moves_a_fair_share_only_to_the_new_node() {
    let keys: Vec<Vec<u8>> = (0..20_000)
        .map(|i| format!("user:{i}").into_bytes())
        .collect();
    for s in [4usize, 7, 12, 30] {
        let ring = Ring::equal_partitions(1024, 3, nodes(s)).unwrap();
        let newcomer = Member::new("newcomer", "zone-new", 1);
        let (grown, plan) = ring.add_member(newcomer).unwrap();
        assert_eq!(grown.version(), ring.version() + 1);
        assert_eq!(grown.violations(), vec![], "s={s}");
        let mut moved = 0;
        for key in &keys {
            let before = ring.preference_list(key, 3);
            let after = grown.preference_list(key, 3);
            if before[0] != after[0] {
                moved += 1;
                assert_eq!(after[0].as_str(), "newcomer");
            }
            for node in &after {
                assert!(before.contains(node) || node.as_str() == "newcomer");
            }
        }
        let fraction = f64::from(moved) / keys.len() as f64;
        let expected = 1.0 / (s as f64 + 1.0);
        assert!(
            (fraction - expected).abs() < 0.2 * expected,
            "s={s}: moved {fraction:.4}, expected about {expected:.4}"
        );
        assert!(plan.transfers.iter().all(|t| t.to.as_str() == "newcomer"));
        assert!(!plan.is_empty());
    }
}

/// Paper 4.9: a leave moves only the leaver's partitions, and the plan hands them over. When
/// that leaves tail violations (a round-robin ring minus one node cannot be re-spread without
/// moving other partitions), the operator's explicit re-spread clears them.
#[test]
fn a_leave_moves_only_the_leavers_partitions() {
    for s in [5usize, 8, 31] {
        let ring = Ring::equal_partitions(1024, 3, nodes(s)).unwrap();
        let leaver = ring.members()[s / 2].id.clone();
        let (shrunk, plan) = ring.remove_member(&leaver).unwrap();
        for p in 0..1024 {
            let before = ring.partition_owner(p);
            if before != &leaver {
                assert_eq!(shrunk.partition_owner(p), before, "partition {p}");
            }
            let old_set = ring.replicas_of_partition(p, 3);
            if shrunk.violations().is_empty() {
                for node in shrunk.replicas_of_partition(p, 3) {
                    if !old_set.contains(&node) {
                        assert!(old_set.contains(&&leaver), "partition {p} gained {node}");
                    }
                }
            }
        }
        assert!(
            plan.transfers
                .iter()
                .all(|t| t.from == leaver || t.from_retains)
        );
        assert!(plan.outgoing(&leaver).count() > 0);

        let (respread, _) = shrunk.respread().unwrap();
        assert_eq!(respread.violations().len(), 0, "s={s} after re-spread");
        let (again, again_plan) = respread.respread().unwrap();
        assert_eq!(again, respread, "re-spreading a clean ring changes nothing");
        assert!(again_plan.is_empty());
    }
}

fn arbitrary_members() -> impl Strategy<Value = Vec<Member>> {
    prop::collection::vec((1u32..=3, 0u8..6), 1..14).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (capacity, zone))| {
                Member::new(format!("n{i:02}"), format!("z{zone}"), capacity)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Paper 4.3: a preference list holds min(N, S) distinct nodes and starts at the owner of
    /// the key's partition; fallbacks never repeat a node either.
    #[test]
    fn preference_lists_are_distinct(
        members in arbitrary_members(),
        q_bits in 4u32..9,
        n in 1usize..5,
        key in prop::collection::vec(any::<u8>(), 0..32),
        dead_mask in any::<u16>(),
    ) {
        let ring = Ring::equal_partitions(1 << q_bits, n, members.clone()).unwrap();
        let list = ring.preference_list(&key, n);
        prop_assert_eq!(list.len(), n.min(members.len()));
        for (i, node) in list.iter().enumerate() {
            prop_assert!(!list[..i].contains(node));
        }
        prop_assert_eq!(list[0], ring.partition_owner(ring.partition_of_key(&key)));

        let dead = |node: &NodeId| {
            let index = ring.members().iter().position(|m| &m.id == node).unwrap();
            dead_mask & (1 << index) != 0
        };
        let targets = ring.extended_preference_list(&key, n, |node| !dead(node));
        let alive = ring.members().iter().filter(|m| !dead(&m.id)).count();
        prop_assert_eq!(targets.len(), n.min(members.len()).min(alive));
        for (i, target) in targets.iter().enumerate() {
            prop_assert!(!dead(&target.node));
            prop_assert!(targets[..i].iter().all(|t| t.node != target.node));
            if let Role::Fallback { for_node } = &target.role {
                prop_assert!(dead(for_node) && list.contains(&for_node));
            }
        }
    }

    /// Paper 6.2: every node owns its capacity-weighted share of the Q partitions, within one
    /// partition (unless its share is so large that it would have to sit next to itself).
    #[test]
    fn ownership_is_within_one_partition_of_the_share(
        members in arbitrary_members(),
        q_bits in 4u32..11,
        n in 1usize..4,
    ) {
        let q = 1u32 << q_bits;
        prop_assume!(members.len() <= q as usize);
        let ring = Ring::equal_partitions(q, n, members.clone()).unwrap();
        let total: u32 = members.iter().map(|m| m.capacity).sum();
        // Shares above Q / window are capped (a node cannot sit next to itself), and tiny
        // shares are raised to one partition; both redistribute to the others.
        let window = n.min(members.len()) as u32;
        let share = |capacity: u32| f64::from(q) * f64::from(capacity) / f64::from(total);
        let capped = members
            .iter()
            .any(|m| share(m.capacity) > f64::from(q / window) || share(m.capacity) < 1.0);
        let counts = ring.partition_counts();
        prop_assert_eq!(counts.iter().map(|(_, c)| c).sum::<u32>(), q);
        if !capped {
            for (node, count) in counts {
                let expected = share(ring.member(node).unwrap().capacity);
                prop_assert!((f64::from(count) - expected).abs() < 1.0, "{} owns {} for share {}", node, count, expected);
            }
        }
    }

    /// Deterministic: the order members are listed in does not matter, on any machine.
    #[test]
    fn placement_ignores_member_order(members in arbitrary_members(), seed in any::<u64>()) {
        let mut shuffled = members.clone();
        let mut rng = StdRng::seed_from_u64(seed);
        rand::seq::SliceRandom::shuffle(shuffled.as_mut_slice(), &mut rng);
        let a = Ring::equal_partitions(64, 3, members).unwrap();
        let b = Ring::equal_partitions(64, 3, shuffled).unwrap();
        prop_assert_eq!(a, b);
    }

    /// Paper 4.9: any change moves a partition only away from a leaver or from a node above
    /// its new share, and only towards a node below its share; a plain join moves only to the
    /// newcomer, a plain leave only the leaver's partitions.
    #[test]
    fn changes_move_only_what_they_must(
        members in arbitrary_members(),
        joiners in 0usize..3,
        leave_mask in any::<u16>(),
    ) {
        let q = 128u32;
        let ring = Ring::equal_partitions(q, 3, members.clone()).unwrap();
        let mut next: Vec<Member> = members
            .iter()
            .enumerate()
            .filter(|(i, _)| leave_mask & (1 << i) == 0)
            .map(|(_, m)| m.clone())
            .collect();
        for j in 0..joiners {
            next.push(Member::new(format!("joiner-{j}"), format!("z{j}"), 1));
        }
        prop_assume!(!next.is_empty());
        let (changed, plan) = ring.with_members(next.clone()).unwrap();
        let stayed = |id: &NodeId| members.iter().any(|m| &m.id == id) && next.iter().any(|m| &m.id == id);
        let count_in = |r: &Ring, id: &NodeId| (0..q).filter(|&p| r.partition_owner(p) == id).count();
        for p in 0..q {
            let before = ring.partition_owner(p);
            let after = changed.partition_owner(p);
            if before != after && stayed(before) {
                prop_assert!(count_in(&ring, before) > count_in(&changed, before));
                prop_assert!(!stayed(after) || count_in(&changed, after) > count_in(&ring, after));
            }
        }
        prop_assert_eq!(plan.from_version, ring.version());
        prop_assert_eq!(plan.to_version, changed.version());
        for transfer in &plan.transfers {
            prop_assert!(changed.replicas_of_partition(transfer.partition, 3).contains(&&transfer.to));
            prop_assert!(ring.replicas_of_partition(transfer.partition, 3).contains(&&transfer.from));
        }
    }
}
