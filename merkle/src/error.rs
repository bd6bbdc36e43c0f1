//! Errors of the Merkle crate.
//!
//! Every way a peer's bytes or a caller's input can be wrong maps to one variant here, so the
//! `node` can log a clear reason and drop the exchange. This module must not know about
//! transports or storage.

use crate::shape::TreeShape;

/// Everything that can go wrong when building trees or running a diff session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    /// A tree shape outside the supported range.
    #[error(
        "invalid tree shape: fan-out 2^{fanout_bits}, depth {depth} (need 1..=8 fan-out bits, depth >= 1, at most 2^24 leaves)"
    )]
    InvalidShape {
        /// log2 of the fan-out that was asked for.
        fanout_bits: u8,
        /// Depth that was asked for.
        depth: u8,
    },
    /// Two trees (or a tree and a message) do not have the same shape.
    #[error("tree shape mismatch: ours is {ours}, theirs is {theirs}")]
    ShapeMismatch {
        /// Our shape.
        ours: TreeShape,
        /// The peer's (or other tree's) shape.
        theirs: TreeShape,
    },
    /// Bytes that do not decode (truncated, corrupted, or not a message of this crate).
    #[error("malformed or truncated {what}: {source}")]
    Decode {
        /// What we tried to decode.
        what: &'static str,
        /// The underlying postcard error.
        #[source]
        source: postcard::Error,
    },
    /// Bytes left over after a complete message: the peer speaks another format.
    #[error("{extra} unexpected trailing bytes after a {what}")]
    TrailingBytes {
        /// What was decoded.
        what: &'static str,
        /// Bytes left over.
        extra: usize,
    },
    /// A serialized tree whose leaf count does not match its shape.
    #[error("serialized tree has {got} leaves, its shape {shape} needs {expected}")]
    LeafCount {
        /// The shape named in the bytes.
        shape: TreeShape,
        /// Leaves the shape needs.
        expected: usize,
        /// Leaves found.
        got: usize,
    },
    /// A message that is valid on its own but not what this step of the protocol expects.
    #[error("unexpected {got} while waiting for {expected}")]
    UnexpectedMessage {
        /// What the session was waiting for.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// A reply carrying the wrong number of items for the request it answers.
    #[error("{what}: expected {expected} items, got {got}")]
    WrongLength {
        /// Which list was wrong.
        what: &'static str,
        /// Items expected.
        expected: usize,
        /// Items received.
        got: usize,
    },
    /// A request naming a node, segment or bucket that does not exist in the tree shape.
    #[error("{what} index {index} out of range (limit {limit})")]
    OutOfRange {
        /// Which kind of index.
        what: &'static str,
        /// The offending index.
        index: u64,
        /// The exclusive upper bound.
        limit: u64,
    },
    /// A request asking for more items than the tree level holds.
    #[error("request names {got} {what}, more than the {limit} that exist")]
    TooMany {
        /// Which kind of item.
        what: &'static str,
        /// Items requested.
        got: usize,
        /// Items that exist.
        limit: usize,
    },
    /// A peer listed a key under a segment or bucket the key does not hash to.
    #[error("peer listed a key under segment {segment} that belongs elsewhere")]
    ForeignKey {
        /// The segment the key was listed under.
        segment: u32,
    },
    /// A peer listed the same key twice in one segment.
    #[error("peer listed a key twice in segment {segment}")]
    DuplicateKey {
        /// The segment concerned.
        segment: u32,
    },
    /// A step was taken on a session that has already finished.
    #[error("the diff session has already finished")]
    SessionFinished,
}
