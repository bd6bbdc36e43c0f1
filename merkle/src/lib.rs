//! Merkle-tree anti-entropy for Dynamo (the Dynamo paper, SOSP 2007, section 4.7).
//!
//! One fixed-shape [`MerkleTree`] per key range (the `node` keeps one per ring partition it
//! replicates). Keys fall into `fanout^depth` leaf segments by a hash of the key alone; each
//! node holds the XOR of the [`KeyHash`]es below it, so updates are O(depth), order-independent,
//! a rebuild from a full scan gives the identical tree, and trees over disjoint key sets merge
//! (tictac-style). A sans-IO diff session ([`DiffInitiator`] / [`DiffResponder`]) walks two
//! trees level by level, exchanging only the children of differing nodes, and ends with the
//! exact set of keys that differ.
//!
//! This crate must not know: the vclock/DVV types (callers pass serialized version-state bytes
//! or a digest to [`key_hash`]), storage (segment key lists come through [`SegmentSource`]),
//! the network or async runtimes (messages are values with a postcard encoding), or the clock.

mod error;
mod hash;
mod session;
mod shape;
mod source;
mod tree;

pub use error::MerkleError;
pub use hash::{
    KeyHash, NodeHash, key_hash, key_hash_with_digest, key_hash_with_placement, placement_hash,
};
pub use session::{
    BucketId, DiffInitiator, DiffOutcome, DiffReply, DiffRequest, DiffResponder, KeyDifference,
    SegmentReply, SessionStats, Step, diff_in_memory, naive_exchange_bytes,
};
pub use shape::{MAX_LEAF_BITS, TreeShape};
pub use source::{KeyEntry, KeyIndex, SegmentSource};
pub use tree::MerkleTree;
