//! Fuzzes `dynamo_merkle::DiffRequest::decode` and the responder behind it
//! (`DiffResponder::handle_bytes`): what an anti-entropy responder does with every request
//! from its peer. Arbitrary bytes must decode or fail, never panic; a decoded request must
//! round-trip through `encode`/`decode` with `encoded_len` equal to the encoding's length; and
//! answering it from a small replica (4 × 2 tree, 40 keys) must give a reply or an error, never
//! a panic, whose bytes decode as a `DiffReply`.
#![no_main]

use std::sync::LazyLock;

use dynamo_fuzz::merkle_replica;
use dynamo_merkle::{DiffReply, DiffRequest, DiffResponder, KeyIndex, MerkleTree};
use libfuzzer_sys::fuzz_target;

static REPLICA: LazyLock<(MerkleTree, KeyIndex)> = LazyLock::new(merkle_replica);

fuzz_target!(|data: &[u8]| {
    let (tree, index) = &*REPLICA;
    let answered = DiffResponder::new().handle_bytes(tree, index, data);
    let Ok(request) = DiffRequest::decode(data) else {
        assert!(answered.is_err(), "answered a request that does not decode");
        return;
    };
    let bytes = request.encode();
    assert_eq!(bytes.len(), request.encoded_len());
    assert_eq!(DiffRequest::decode(&bytes).as_ref().ok(), Some(&request));
    let _ = request.shape();
    if let Ok(reply) = answered {
        assert!(
            DiffReply::decode(&reply).is_ok(),
            "the responder's reply does not decode"
        );
    }
});
