//! Fuzzes `dynamo_merkle::DiffReply::decode` and the initiator behind it
//! (`DiffInitiator::on_reply_bytes`): what an anti-entropy initiator does with every reply from
//! its peer. Arbitrary bytes must decode or fail, never panic; a decoded reply must round-trip
//! through `encode`/`decode` with `encoded_len` equal to the encoding's length. The input is
//! also cut into length-prefixed chunks (one byte of length each) fed as the successive replies
//! of one session on a small replica (4 × 2 tree, 40 keys): every step must be a request, an
//! outcome or an error, never a panic.
#![no_main]

use std::sync::LazyLock;

use dynamo_fuzz::merkle_replica;
use dynamo_merkle::{DiffInitiator, DiffReply, KeyIndex, MerkleTree, Step};
use libfuzzer_sys::fuzz_target;

static REPLICA: LazyLock<(MerkleTree, KeyIndex)> = LazyLock::new(merkle_replica);

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = DiffReply::decode(data) {
        let bytes = reply.encode();
        assert_eq!(bytes.len(), reply.encoded_len());
        assert_eq!(DiffReply::decode(&bytes).as_ref().ok(), Some(&reply));
    }
    let (tree, index) = &*REPLICA;
    let (mut session, _first) = DiffInitiator::start(tree);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (chunk, after) = tail.split_at(usize::from(len).min(tail.len()));
        rest = after;
        match session.on_reply_bytes(tree, index, chunk) {
            Ok(Step::Send(request)) => assert!(!session.is_done(), "done but asks {request:?}"),
            Ok(Step::Done(_)) => {
                assert!(session.is_done());
                break;
            }
            Err(_) => break,
        }
    }
});
