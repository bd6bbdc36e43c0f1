//! Fuzzes `postcard::from_bytes::<Vec<dynamo_protocol::BucketEntry>>`: the bucket table a
//! node reads from every peer's gossip state (and from `Request::Buckets`). Arbitrary bytes
//! must decode or fail, never panic; a decoded table must round-trip.
#![no_main]

use dynamo_fuzz::assert_round_trip;
use dynamo_protocol::BucketEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = postcard::from_bytes::<Vec<BucketEntry>>(data) {
        assert_round_trip(&table);
    }
});
