//! Fuzzes `postcard::from_bytes::<dynamo_ring::Ring>`: the ring a node reads from every peer's
//! gossip state and from its own `ring.postcard`, validated when decoded. Arbitrary bytes must
//! decode or fail, never panic; a decoded ring must round-trip; and, since a ring that passed
//! validation is used at once, the queries the node runs on an adopted ring (placement,
//! preference lists, shares, and the claimant's `with_members`) must not panic on it either.
#![no_main]

use dynamo_fuzz::assert_round_trip;
use dynamo_ring::{Member, Ring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ring) = postcard::from_bytes::<Ring>(data) else {
        return;
    };
    assert_round_trip(&ring);
    // What the node does with a ring it adopted (see node::node): route keys, list replicas
    // with fallbacks, report ownership, and (as claimant) add or remove members.
    let n = ring.target_n();
    for key in [&b""[..], b"cart:alice", &[0xff; 16]] {
        let partition = ring.partition_of_key(key);
        let _ = ring.partition_range(partition);
        let _ = ring.partition_owner(partition);
        let primaries = ring.preference_list(key, n);
        assert!(primaries.len() <= ring.members().len());
        let mut up = false;
        let _ = ring.extended_preference_list(key, n, |_| {
            up = !up;
            up
        });
    }
    let _ = ring.partition_counts();
    let _ = ring.replica_shares(n.min(8));
    if ring.partition_count() <= 1024 && ring.members().len() <= 64 {
        let _ = ring.violations();
        let mut members = ring.members().to_vec();
        members.push(Member::new("fuzz-newcomer", "fuzz-zone", 1));
        if let Ok((next, _plan)) = ring.with_members(members) {
            assert_round_trip(&next);
        }
        let mut members = ring.members().to_vec();
        members.remove(0);
        if let Ok((next, _plan)) = ring.with_members(members) {
            assert_round_trip(&next);
        }
    }
});
