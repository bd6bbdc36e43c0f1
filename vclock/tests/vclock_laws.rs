//! Property tests for vector clocks (paper §4.4) and context decoding (paper §4.1: the context
//! is opaque to clients, so whatever they send back must never crash a coordinator).

use dynamo_vclock::{Actor, Causality, Context, Entry, PruneConfig, VClock};
use proptest::prelude::*;

const ACTORS: [&str; 4] = ["a", "b", "c", "d"];

/// Clocks over a few actors with small counters; timestamps arbitrary.
fn any_clock() -> impl Strategy<Value = VClock> {
    prop::collection::vec((0..ACTORS.len(), 0..5_u64, 0..4_u64), 0..8).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(i, counter, timestamp)| (ACTORS[i], Entry { counter, timestamp }))
            .collect()
    })
}

/// Clocks whose timestamp is a function of (actor, counter), as with honest replicas: one
/// event, one time. Structural equality then coincides with causal equality.
fn honest_clock() -> impl Strategy<Value = VClock> {
    prop::collection::vec((0..ACTORS.len(), 0..5_u64), 0..8).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(i, counter)| {
                let timestamp = counter * 100 + i as u64;
                (ACTORS[i], Entry { counter, timestamp })
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Merge is a join: commutative, associative, idempotent (even with arbitrary timestamps).
    #[test]
    fn merge_is_a_semilattice_join(a in any_clock(), b in any_clock(), c in any_clock()) {
        prop_assert_eq!(a.merged(&b), b.merged(&a));
        prop_assert_eq!(a.merged(&b).merged(&c), a.merged(&b.merged(&c)));
        prop_assert_eq!(a.merged(&a), a.clone());
        let mut in_place = a.clone();
        in_place.merge(&b);
        prop_assert_eq!(in_place, a.merged(&b));
    }

    /// A clock descends both inputs of a merge, and the merge is the least such clock.
    #[test]
    fn merge_descends_its_inputs(a in any_clock(), b in any_clock()) {
        let m = a.merged(&b);
        prop_assert!(m.descends(&a) && m.descends(&b));
        for (actor, entry) in &m {
            prop_assert_eq!(entry.counter, a.get(actor).max(b.get(actor)));
        }
    }

    /// compare agrees with merge: Before iff merge(a,b) == b != a, After iff merge == a != b,
    /// Equal iff a == b, Concurrent otherwise; descends/dominates agree with compare.
    #[test]
    fn compare_agrees_with_merge(a in honest_clock(), b in honest_clock()) {
        let m = a.merged(&b);
        let expected = if a == b {
            Causality::Equal
        } else if m == b {
            Causality::Before
        } else if m == a {
            Causality::After
        } else {
            Causality::Concurrent
        };
        prop_assert_eq!(a.compare(&b), expected);
        prop_assert_eq!(b.compare(&a), expected.reverse());
        prop_assert_eq!(a.descends(&b), matches!(expected, Causality::Equal | Causality::After));
        prop_assert_eq!(a.dominates(&b), expected == Causality::After);
    }

    /// Compare ignores timestamps.
    #[test]
    fn compare_is_causal(a in any_clock(), b in any_clock()) {
        prop_assert_eq!(a.compare(&b) == Causality::Equal, a.iter().map(|(x, e)| (x.clone(), e.counter)).eq(b.iter().map(|(x, e)| (x.clone(), e.counter))));
    }

    /// A coordinator's increment makes a strictly newer version (paper §4.4).
    #[test]
    fn increment_dominates(a in any_clock(), i in 0..ACTORS.len(), now in 0..1000_u64) {
        let mut next = a.clone();
        let actor = Actor::from(ACTORS[i]);
        let n = next.increment(&actor, now);
        prop_assert_eq!(n, a.get(&actor) + 1);
        prop_assert!(next.dominates(&a));
        prop_assert_eq!(next.entry(&actor), Some(Entry { counter: n, timestamp: now }));
    }

    /// Pruning keeps a subset of entries, obeys the cap and is deterministic (paper §4.4).
    #[test]
    fn paper_prune_keeps_newest(entries in prop::collection::vec((0..40_u32, 1..5_u64, 0..20_u64), 0..40), max in 1..12_usize) {
        let clock: VClock = entries
            .into_iter()
            .map(|(i, counter, timestamp)| (format!("n{i:02}"), Entry { counter, timestamp }))
            .collect();
        let mut pruned = clock.clone();
        let changed = pruned.prune(0, &PruneConfig::truncate_to(max));
        prop_assert_eq!(pruned.len(), clock.len().min(max));
        prop_assert_eq!(changed, clock.len() > max);
        prop_assert!(clock.descends(&pruned));
        for (actor, entry) in &pruned {
            prop_assert_eq!(clock.entry(actor), Some(entry));
        }
        // Everything dropped is not newer than anything kept (ties broken by actor).
        let newest_dropped = clock.iter().filter(|(a, _)| pruned.entry(a).is_none()).map(|(a, e)| (e.timestamp, a.clone())).max();
        let oldest_kept = pruned.iter().map(|(a, e)| (e.timestamp, a.clone())).min();
        if let (Some(d), Some(k)) = (newest_dropped, oldest_kept) {
            prop_assert!(d < k);
        }
    }

    /// Serde (postcard) and context encodings round-trip every valid clock.
    #[test]
    fn encodings_round_trip(a in any_clock()) {
        let bytes = postcard::to_stdvec(&a).unwrap();
        prop_assert_eq!(postcard::from_bytes::<VClock>(&bytes).unwrap(), a.clone());
        let ctx = Context::new(a.clone());
        prop_assert_eq!(Context::from_bytes(&ctx.to_bytes()).unwrap(), ctx.clone());
        prop_assert_eq!(ctx.to_string().parse::<Context>().unwrap(), ctx);
    }

    /// Arbitrary bytes and text never panic the decoders.
    #[test]
    fn arbitrary_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64), text in ".{0,64}") {
        let _ = Context::from_bytes(&bytes);
        let _ = Context::from_text(&text);
        let _ = postcard::from_bytes::<VClock>(&bytes);
        let mut framed = b"DYC\x01".to_vec();
        framed.extend_from_slice(&bytes);
        let crc = crc32fast::hash(&framed);
        framed.extend_from_slice(&crc.to_le_bytes());
        // Checksum is valid, so this exercises the payload decoder and clock validation.
        if let Ok(ctx) = Context::from_bytes(&framed) {
            prop_assert_eq!(ctx.to_bytes(), framed);
        }
    }

    /// Any single corrupted byte or truncation of a real context is detected (CRC-32 catches
    /// every burst of up to 32 bits).
    #[test]
    fn corruption_is_detected(a in any_clock(), pos in any::<prop::sample::Index>(), flip in 1..=255_u8, cut in any::<prop::sample::Index>()) {
        let good = Context::new(a).to_bytes();
        let mut bad = good.clone();
        bad[pos.index(good.len())] ^= flip;
        prop_assert!(Context::from_bytes(&bad).is_err());
        prop_assert!(Context::from_bytes(&good[..cut.index(good.len())]).is_err());
    }
}
