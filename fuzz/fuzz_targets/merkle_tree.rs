//! Fuzzes `dynamo_merkle::MerkleTree::from_bytes` (a shape and its leaves; inner levels are
//! recomputed). Not sent by the node today, but public and documented as safe on truncated or
//! inconsistent bytes. A decoded tree must round-trip through `to_bytes`/`from_bytes`.
#![no_main]

use dynamo_merkle::MerkleTree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = MerkleTree::from_bytes(data) {
        assert_eq!(
            MerkleTree::from_bytes(&tree.to_bytes()).as_ref().ok(),
            Some(&tree)
        );
        let _ = tree.root();
    }
});
