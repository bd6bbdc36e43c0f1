//! Consistent hashing for a Dynamo-style store (DeCandia et al. 2007, sections 4.2, 4.3, 4.6
//! and 6.2).
//!
//! A key's position on the ring is the MD5 of its bytes read as a 128-bit big-endian integer
//! ([`key_position`]). A [`Ring`] places those positions on physical nodes with one of two
//! strategies from section 6.2:
//!
//! * **Strategy 3**, the default ([`Ring::equal_partitions`]): the hash space is cut into `Q`
//!   equal partitions (`Q` a power of two) and each node claims about `Q/S` of them, weighted by
//!   its capacity. The claim keeps any `target_n` consecutive partitions on distinct nodes (and
//!   on distinct zones when there are enough zones), and moves as little as possible on a join
//!   or a leave.
//! * **Strategy 1** ([`Ring::random_tokens`]): every node draws `T` random tokens (times its
//!   capacity) from a caller-supplied RNG. Kept for comparison, as in the paper's Figure 8.
//!
//! The ring is a plain value: versioned, `serde`-serializable and comparable, so the gossip layer
//! can spread it and every node computes the same placement from it. Changing the membership
//! returns a new ring plus a [`TransferPlan`] saying which replica must hand which key range to
//! which node.
//!
//! ```
//! use dynamo_ring::{Member, Ring, Role};
//!
//! let members = ["a", "b", "c", "d"].map(|name| Member::new(name, name, 1));
//! let ring = Ring::equal_partitions(8, 3, members.to_vec())?;
//!
//! // Paper 4.3: the first N distinct nodes clockwise from the key.
//! let preference = ring.preference_list(b"cart:alice", 3);
//! assert_eq!(preference.len(), 3);
//!
//! // Paper 4.6: with one primary down, a fallback stands in for it and carries a hint.
//! let down = preference[0].clone();
//! let targets = ring.extended_preference_list(b"cart:alice", 3, |node| *node != down);
//! assert!(targets.iter().any(|t| t.role == Role::Fallback { for_node: down.clone() }));
//! # Ok::<(), dynamo_ring::RingError>(())
//! ```
//!
//! What this crate must not know: the network, storage, time, gossip, or how a transfer is
//! carried out. It computes placement; others act on it.

mod claim;
mod error;
mod hash;
mod member;
mod plan;
mod ring;

pub use error::RingError;
pub use hash::{KeyPosition, key_position};
pub use member::{Member, NodeId};
pub use plan::{KeyRange, Transfer, TransferPlan};
pub use ring::{DEFAULT_PARTITIONS, Layout, PartitionId, Ring, Role, Target, Violation};
