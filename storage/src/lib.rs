//! Durable versioned storage for Dynamo replicas (the Dynamo paper, SOSP 2007, sections 4.4 to
//! 4.7 and 6.1).
//!
//! A [`Store`] keeps, for every key a replica holds, the key's dotted-version-vector set of
//! siblings ([`dynamo_vclock::DvvSet`], tombstones included), and merges incoming sets into it
//! atomically, so two racing writes of one key never lose each other. Next to the data it keeps
//! hinted-handoff versions held for other nodes, the node's id and *epoch*, and one Merkle tree
//! per ring partition, kept equal to a rebuild from a scan.
//!
//! Two implementations run the same versioning code: `FjallStore` (persistent, on the fjall
//! LSM-tree; the default `fjall` feature) and [`MemoryStore`] (tests and the simulation). The
//! [`conformance`] suite checks both. Without the `fjall` feature the crate builds only the
//! in-memory store, so a sans-IO user (the node's core, the simulator) never compiles an engine.
//!
//! # Layout
//!
//! * data: key = partition (u32 big-endian) ++ user key, so a partition is one range scan;
//!   value = one format byte ++ postcard of the `DvvSet`.
//! * hints: key = owner length (u8) ++ owner id ++ partition (u32 big-endian) ++ user key.
//! * meta: the node id and the epoch under fixed names, and the node's own state (its ring,
//!   bucket table, membership status: opaque bytes) under `state/ ++ name`.
//!
//! # Epoch (Riak kv679)
//!
//! A store opened without metadata (new, or its disk was lost) records the caller's wall-clock
//! milliseconds as its epoch; otherwise it keeps the recorded one. The node writes under the
//! actor [`actor_for`]`(node_id, epoch)`, so after a data loss it never reuses a vector-clock
//! counter it had handed out before. The node state goes with the data: a store opened without
//! its data has none.
//!
//! Within an epoch a node writes each key under a *key incarnation* of its actor
//! ([`key_actor`]: `"{node}#{epoch}.{n}"`), Riak's per-key epochs. A coordinator write on a key
//! the store holds no usable history of (never written here, reaped, or dropped after a
//! handoff: [`Store::retire_actors`]) starts a new incarnation from a persisted lease, so a
//! store never mints a dot it may have minted before for another version of the key.
//!
//! # Limits
//!
//! Keys longer than [`MAX_KEY_BYTES`] (just under 64 KiB) and sibling values whose postcard
//! encoding is longer than [`StoreOptions::max_value_bytes`] (default 1 MiB) are rejected with
//! an error. The store is generic over the value type, so it measures the encoded size of each
//! value. Node-state names must be 1 to [`MAX_NODE_STATE_NAME_BYTES`] bytes and node state at
//! most [`MAX_NODE_STATE_BYTES`]. Engine and I/O failures (a full disk) are errors, never
//! panics, and a key is never half written: every write is one atomic engine write.
//!
//! This crate must not know: the ring (callers pass each key's partition), the network,
//! quorum rules, or what a tombstone means (it is just another sibling value).

mod backend;
pub mod conformance;
mod engine;
mod error;
#[cfg(feature = "fjall")]
mod fjall_store;
#[cfg(feature = "fjall")]
mod group_commit;
mod keys;
mod memory;
mod options;
mod store;

pub use error::{Result, StorageError};
#[cfg(feature = "fjall")]
pub use fjall_store::{FjallStore, FreeSpace};
pub use keys::{
    MAX_KEY_BYTES, MAX_NODE_ID_BYTES, MAX_NODE_STATE_BYTES, MAX_NODE_STATE_NAME_BYTES, STORE_FORMAT,
};
pub use memory::MemoryStore;
pub use options::{DEFAULT_DISK_RESERVE_BYTES, DEFAULT_MAX_VALUE_BYTES, Durability, StoreOptions};
pub use store::{
    Hint, LocalWrite, PartitionDigest, Store, Value, actor_for, incarnation_of, key_actor,
};
