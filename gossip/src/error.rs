//! Errors returned by the gossip engine and the wire format.
//!
//! This module must not know about the engine's internals; it only names what went wrong.

/// Everything that can be wrong with a message or a local request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// A message (received or about to be sent) exceeds the byte budget.
    #[error("message of {len} bytes exceeds the {max}-byte budget")]
    Oversized {
        /// Its size.
        len: usize,
        /// The budget.
        max: usize,
    },
    /// Bytes that do not decode as a message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message that decodes but breaks a structural rule.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// A message for another cluster.
    #[error("message for cluster {got:?}, this node is in {expected:?}")]
    WrongCluster {
        /// The cluster named in the message.
        got: String,
        /// This node's cluster.
        expected: String,
    },
    /// A local key/value pair so large it could never be gossiped within the budget.
    #[error("key and value of {len} bytes cannot fit the {max}-byte per-entry limit")]
    ValueTooLarge {
        /// Encoded size of the entry.
        len: usize,
        /// The largest entry allowed.
        max: usize,
    },
    /// A local request that makes no sense (for example a status going backwards).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}
