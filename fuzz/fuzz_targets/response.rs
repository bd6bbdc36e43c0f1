//! Fuzzes `postcard::from_bytes::<dynamo_protocol::Response>`: what a client or a
//! coordinating node decodes from every answer. Arbitrary bytes must decode or fail, never
//! panic; a decoded response must round-trip. `Response` holds `f64` shares (a NaN is not equal
//! to itself), so the round trip compares encodings.
#![no_main]

use dynamo_fuzz::assert_round_trip_bytes;
use dynamo_protocol::Response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = postcard::from_bytes::<Response>(data) {
        assert_round_trip_bytes(&response);
    }
});
