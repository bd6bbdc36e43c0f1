//! Errors returned when a ring cannot be built, changed or decoded as asked.
//!
//! This module must not know about callers' recovery strategies; it names what went wrong.

use crate::member::NodeId;

/// Why a ring could not be built, changed or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The partition count must be a power of two, at least 1.
    #[error("the partition count must be a power of two, got {0}")]
    PartitionsNotPowerOfTwo(u64),
    /// More members than partitions: some node would own nothing.
    #[error("{members} members cannot share {partitions} partitions; use more partitions")]
    MorePartitionsNeeded {
        /// Number of members asked for.
        members: usize,
        /// Number of partitions in the ring.
        partitions: u32,
    },
    /// A ring needs at least one member.
    #[error("a ring needs at least one member")]
    NoMembers,
    /// The same node id appears twice in a membership list.
    #[error("node {0} is listed twice")]
    DuplicateMember(NodeId),
    /// A member with capacity 0 would own nothing; remove it instead.
    #[error("node {0} has capacity 0; capacity must be at least 1")]
    ZeroCapacity(NodeId),
    /// The node to remove or change is not a member.
    #[error("node {0} is not a member of the ring")]
    UnknownMember(NodeId),
    /// The target replica count must be at least 1.
    #[error("the target replica count must be at least 1")]
    ZeroReplicas,
    /// Random tokens need at least one token per node.
    #[error("random tokens need at least one token per node")]
    ZeroTokens,
    /// Membership changes are computed for equal-partition rings only; a random-token ring is
    /// built from scratch.
    #[error("membership changes need an equal-partition ring (strategy 3)")]
    NotEqualPartitions,
    /// A decoded ring breaks an invariant (for example an owner index out of range).
    #[error("malformed ring: {0}")]
    Malformed(&'static str),
}
