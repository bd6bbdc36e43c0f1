//! Fuzzes `dynamo_gossip::Message::decode` with the engine's default byte limit: every gossip
//! datagram a peer sends. Arbitrary bytes must decode (and pass `validate`) or fail, never
//! panic; a decoded message must encode within the same limit, decode to the same value, and
//! `encoded_len` must be the length of the encoding.
#![no_main]

use dynamo_gossip::{DEFAULT_MAX_MESSAGE_BYTES, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data, DEFAULT_MAX_MESSAGE_BYTES) else {
        return;
    };
    let bytes = match message.encode(DEFAULT_MAX_MESSAGE_BYTES) {
        Ok(bytes) => bytes,
        Err(error) => panic!("a decoded message does not encode within its limit: {error}"),
    };
    assert_eq!(bytes.len(), message.encoded_len());
    assert_eq!(
        Message::decode(&bytes, DEFAULT_MAX_MESSAGE_BYTES)
            .as_ref()
            .ok(),
        Some(&message)
    );
});
