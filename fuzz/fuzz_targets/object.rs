//! Fuzzes `postcard::from_bytes::<dynamo_quorum::Object>` (a DVV set of values and tombstones):
//! what a replica decodes from every write, hint and handoff, and a coordinator from every
//! read reply. Arbitrary bytes must decode (sorted unique actors, `values <= counter`) or
//! fail, never panic; a decoded set must round-trip; and the operations a replica runs on it
//! must keep it valid: `sync` is idempotent and has the empty set as identity, and a local
//! write (`update`) on it yields a set that still encodes and decodes.
#![no_main]

use dynamo_fuzz::assert_round_trip;
use dynamo_quorum::{Object, Value, is_deleted, live_values};
use dynamo_vclock::{Actor, Causality};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(object) = postcard::from_bytes::<Object>(data) else {
        return;
    };
    assert_round_trip(&object);
    assert_eq!(object.sync(&object), object, "sync is not idempotent");
    assert_eq!(
        object.sync(&Object::empty()),
        object,
        "empty is not the identity"
    );
    assert_eq!(object.compare(&object), Causality::Equal);
    let _ = is_deleted(&object);
    let _ = live_values(&object);
    let context = object.context();
    for actor in ["a", "node-b#1", "zzz"] {
        let mut written = object.clone();
        written.update(&context, &Actor::from(actor), Value::Tombstone, u64::MAX);
        assert_round_trip(&written);
        assert!(written.descends(&object));
    }
});
