//! The [`Store`] trait: what the `node` and the quorum logic need from a replica's storage.
//!
//! A store keeps, per `(partition, key)`, the key's DVV set of siblings (tombstones included:
//! to the store a tombstone is just another value), a separate space of hinted-handoff
//! versions held for other nodes, the node's id and epoch, the node's own state (named opaque
//! bytes: its ring, bucket table, membership status), and one Merkle tree per partition.
//! It must not know the ring (the caller passes the partition of every key), the network,
//! quorum rules or what a tombstone means.

use dynamo_merkle::{KeyEntry, KeyIndex, MerkleTree, NodeHash};
use dynamo_vclock::{Actor, DvvSet, VClock};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::options::Durability;

/// What a store can hold as a sibling value. Blanket-implemented.
///
/// The `quorum` crate uses an enum of data bytes and a tombstone.
pub trait Value: Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T> Value for T where T: Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{}

/// A coordinator's local write (the Dynamo paper, section 4.4: the coordinator makes the new
/// version): the new value, the context the client read, and when. The store picks the actor
/// that makes the new dot (see [`Store::update`]).
#[derive(Clone, Debug)]
pub struct LocalWrite<'a, V> {
    /// The causal context the client read; versions it has seen are replaced.
    pub context: &'a VClock,
    /// The new value.
    pub value: V,
    /// Wall-clock milliseconds, recorded in the clock entry (for pruning).
    pub now: u64,
}

/// Versions held for another node while it is unreachable (hinted handoff, paper section 4.6).
#[derive(Clone, Debug, PartialEq)]
pub struct Hint<V> {
    /// The ring partition of the key.
    pub partition: u32,
    /// The user key.
    pub key: Vec<u8>,
    /// Every version held for the owner, merged.
    pub versions: DvvSet<V>,
}

/// A Merkle tree of a partition built from one scan together with the `(key, hash)` index
/// it was built from; the index is the [`dynamo_merkle::SegmentSource`] of a diff session run
/// on that tree.
#[derive(Clone, Debug)]
pub struct PartitionDigest {
    /// The tree.
    pub tree: MerkleTree,
    /// Every key of the partition with its hash, grouped by segment.
    pub index: KeyIndex,
}

/// The vclock actor of a node in one epoch: `"{node_id}#{epoch}"`.
///
/// A node that lost its disk opens with a new, larger epoch and therefore writes under a new
/// actor, so it can never hand out a counter it already used before the loss (Riak kv679).
/// Writes are made by one *key incarnation* of this actor at a time ([`key_actor`]).
pub fn actor_for(node_id: &str, epoch: u64) -> Actor {
    Actor::new(format!("{node_id}#{epoch}"))
}

/// The actor a node writes one key under: `"{base}.{incarnation}"` for incarnations from 1,
/// and `base` itself for incarnation 0 (written before key incarnations existed).
///
/// A store starts a key's new incarnation whenever it coordinates a write for a key it holds no
/// usable history of (never seen, reaped, or dropped after a handoff), so it can never mint a
/// dot that another replica still holds for an older version (Riak's per-key epochs, kv679).
pub fn key_actor(base: &Actor, incarnation: u64) -> Actor {
    if incarnation == 0 {
        base.clone()
    } else {
        Actor::new(format!("{base}.{incarnation}"))
    }
}

/// The key incarnation of `actor` if it is one of `base`'s ([`key_actor`]), else `None`.
pub fn incarnation_of(base: &Actor, actor: &Actor) -> Option<u64> {
    let rest = actor.as_str().strip_prefix(base.as_str())?;
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

/// A replica's storage. Methods are synchronous and may block on the disk: the `node` calls
/// them from a blocking thread pool.
///
/// Every method that takes a key also takes its ring partition, which the caller computes.
/// Writes to one key are atomic: two racing [`Store::apply`] / [`Store::update`] calls on a key
/// both end up in the stored set.
pub trait Store<V: Value>: Send + Sync {
    /// The node id recorded in the store.
    fn node_id(&self) -> &str;

    /// The store's epoch: fixed while the data survives, new and larger when the store was
    /// opened without its data.
    fn epoch(&self) -> u64;

    /// The vclock actor this node writes under: [`actor_for`] of the id and epoch.
    fn actor(&self) -> Actor {
        actor_for(self.node_id(), self.epoch())
    }

    /// The configured limit on one sibling value's encoded size.
    fn max_value_bytes(&self) -> usize;

    /// The stored version set of a key, `None` if there is none.
    fn get(&self, partition: u32, key: &[u8]) -> Result<Option<DvvSet<V>>>;

    /// Merges `incoming` into the stored set (`DvvSet::sync`) atomically and returns the merged
    /// set. Used for replica writes, read repair, handoff and anti-entropy.
    fn apply(
        &self,
        partition: u32,
        key: &[u8],
        incoming: &DvvSet<V>,
        durability: Durability,
    ) -> Result<DvvSet<V>>;

    /// The coordinator's write: `DvvSet::update` of the stored set with `write` atomically,
    /// which makes the new dot. Returns the new stored set.
    ///
    /// The dot's actor is a key incarnation of [`Store::actor`] ([`key_actor`]): the newest one
    /// the stored set already has, if it is not retired in the partition
    /// ([`Store::retire_actors`]) and the context shows no dot of it the store has not seen;
    /// otherwise a new incarnation, never handed out before (even across crashes).
    fn update(
        &self,
        partition: u32,
        key: &[u8],
        write: LocalWrite<'_, V>,
        durability: Durability,
    ) -> Result<DvvSet<V>>;

    /// Retires this node's key incarnations in use in `partition` so far: later writes to any
    /// key of it start a new incarnation. Call it, and let it return, before dropping copies
    /// of the partition's keys (after handing them to another replica): a node that later
    /// coordinates such a key again must not continue a history it no longer holds. Durable
    /// when it returns.
    fn retire_actors(&self, partition: u32) -> Result<()>;

    /// Up to `limit` keys of `partition` in key order, strictly after `after` when given.
    /// Call again with the last key returned to continue; fewer than `limit` entries means the
    /// end of the partition.
    fn scan_partition(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, DvvSet<V>)>>;

    /// Deletes a key only if its stored set is still exactly `expected` (the tombstone set a
    /// reaper checked), so a write that raced the reaper is never lost. Returns whether the
    /// key was deleted.
    fn remove_if_equal(
        &self,
        partition: u32,
        key: &[u8],
        expected: &DvvSet<V>,
        durability: Durability,
    ) -> Result<bool>;

    /// Keeps `versions` of a key for `owner`, merged with what is already held for it.
    fn put_hint(
        &self,
        owner: &str,
        partition: u32,
        key: &[u8],
        versions: &DvvSet<V>,
        durability: Durability,
    ) -> Result<()>;

    /// Up to `limit` hints held for `owner`, ordered by partition and key.
    fn hints_for(&self, owner: &str, limit: usize) -> Result<Vec<Hint<V>>>;

    /// Every node for which hints are held, sorted.
    fn hint_owners(&self) -> Result<Vec<String>>;

    /// The join of the versions of one key held as hints, for any owner; `None` if none are
    /// held. A fallback answers reads with these too (as Riak's fallback vnodes do), so a write
    /// that only fallbacks acknowledged is readable before its hints are delivered.
    fn hinted(&self, partition: u32, key: &[u8]) -> Result<Option<DvvSet<V>>>;

    /// Removes a hint once `owner` acknowledged `acknowledged` (the set it stores after
    /// applying the hint), but only if that set has seen every version of the hint: a hint
    /// that received newer versions after it was sent stays. Returns whether it was removed.
    fn remove_hint_if_covered(
        &self,
        owner: &str,
        partition: u32,
        key: &[u8],
        acknowledged: &DvvSet<V>,
        durability: Durability,
    ) -> Result<bool>;

    /// Number of hints held for `owner`.
    fn pending_hints(&self, owner: &str) -> Result<usize>;

    /// The root of the partition's Merkle tree (kept up to date on every write).
    fn merkle_root(&self, partition: u32) -> Result<NodeHash> {
        Ok(self.merkle_tree(partition)?.root())
    }

    /// A copy of the partition's Merkle tree, built from a scan at first use after open and
    /// kept up to date on every write afterwards.
    fn merkle_tree(&self, partition: u32) -> Result<MerkleTree>;

    /// A fresh tree and `(key, hash)` index of the partition from one scan (for a diff
    /// session, and to check the kept tree).
    fn partition_digest(&self, partition: u32) -> Result<PartitionDigest>;

    /// The `(key, hash)` entries of one leaf segment of the partition's tree, by a scan.
    fn segment_entries(&self, partition: u32, segment: u32) -> Result<Vec<KeyEntry>>;

    /// Makes every write so far durable (after [`Durability::Buffered`] writes).
    fn flush(&self) -> Result<()>;

    /// Makes every write so far durable and records a clean close; call it last, after every
    /// write. A store opened after a session without one (a crash, a power loss) starts every
    /// key it writes on a new key incarnation: the power loss may have taken a dot of this node
    /// that a read had already copied to another replica, and minting it again for another
    /// value would leave the replicas disagreeing for good.
    fn close(&self) -> Result<()>;

    /// The node state last saved under `name` with [`Store::save_node_state`], `None` if
    /// nothing was ever saved under it (or the store was opened without its data: a new store
    /// or a lost disk has no node state).
    ///
    /// Fails with [`crate::StorageError::InvalidStateName`] for a name that is empty or longer
    /// than [`crate::MAX_NODE_STATE_NAME_BYTES`].
    fn node_state(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Saves `bytes` as the node state called `name` (the node keeps its ring, bucket table and
    /// membership status under names such as `"ring"`, `"buckets"`, `"status"`), replacing what
    /// was saved under it before. The write is atomic and durable (fsynced, as
    /// [`Durability::Sync`]) when the call returns. Names live apart from the store's own
    /// metadata, so any valid name is safe.
    ///
    /// Fails with [`crate::StorageError::InvalidStateName`] for a name that is empty or longer
    /// than [`crate::MAX_NODE_STATE_NAME_BYTES`], and with
    /// [`crate::StorageError::NodeStateTooLarge`] for more than
    /// [`crate::MAX_NODE_STATE_BYTES`] bytes; nothing is written then.
    fn save_node_state(&self, name: &str, bytes: &[u8]) -> Result<()>;
}
