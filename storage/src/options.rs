//! How a store is opened and how durable a write must be before it is acknowledged.
//!
//! This module must not know the engine's internals, rings or the network: the node id and the
//! wall-clock time are plain inputs.

use dynamo_merkle::TreeShape;

/// Default limit on the postcard-encoded size of one sibling value: 1 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;

/// How durable a write is when the call returns.
///
/// The Dynamo paper (section 6.1) describes an in-memory write buffer that trades durability
/// for latency, with the coordinator asking one of the `N` replicas for a durable write.
/// [`Durability::Sync`] is that durable write and the default; [`Durability::Buffered`] is the
/// write buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// The write is fsynced to the journal before the call returns: it survives a crash of the
    /// process or of the machine.
    #[default]
    Sync,
    /// The write is handed to the operating system (fjall's journal buffer is flushed, not
    /// fsynced) before the call returns: it survives a crash of the process but may be lost if
    /// the machine loses power. [`crate::Store::flush`] makes it durable.
    Buffered,
}

/// What a store needs to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// The id of the node that owns the store (1 to 255 bytes). Opening a store recorded under
    /// another id fails with [`crate::StorageError::NodeIdMismatch`].
    pub node_id: String,
    /// The wall-clock time of the open, in milliseconds since the Unix epoch. A store opened
    /// without data takes `max(now_ms, 1)` as its epoch.
    pub now_ms: u64,
    /// Largest postcard-encoded size of one sibling value; larger writes fail with
    /// [`crate::StorageError::ValueTooLarge`]. Default [`DEFAULT_MAX_VALUE_BYTES`].
    pub max_value_bytes: usize,
    /// Shape of the per-partition Merkle trees. It must be the same on every node.
    pub merkle_shape: TreeShape,
    /// Free bytes the fjall store keeps on its disk: below this, writes that add data fail
    /// with [`crate::StorageError::DiskFull`] (deletes and node state still go through). Room
    /// for fjall's memtable flushes and compactions, which poison the store for good if they
    /// fail. Default [`DEFAULT_DISK_RESERVE_BYTES`]; 0 turns the guard off.
    pub disk_reserve_bytes: u64,
}

/// The default free-space reserve: a few memtables and a compaction's output.
pub const DEFAULT_DISK_RESERVE_BYTES: u64 = 256 * 1024 * 1024;

impl StoreOptions {
    /// Options with the default limits for `node_id`, opened at `now_ms`.
    pub fn new(node_id: impl Into<String>, now_ms: u64) -> Self {
        StoreOptions {
            node_id: node_id.into(),
            now_ms,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            merkle_shape: TreeShape::default(),
            disk_reserve_bytes: DEFAULT_DISK_RESERVE_BYTES,
        }
    }

    /// The same options with another value limit.
    #[must_use]
    pub fn with_max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// The same options with another Merkle tree shape.
    #[must_use]
    pub fn with_merkle_shape(mut self, shape: TreeShape) -> Self {
        self.merkle_shape = shape;
        self
    }
}
