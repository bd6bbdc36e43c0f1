//! The store operations the core asks its runtime to carry out, their results, and
//! [`execute`], the one function both the async runtime and the simulator use to run them.
//!
//! An operation is a plain value (owned keys and version sets), so the core can emit it and the
//! runtime can move it to a blocking thread. This module must not know where the store lives
//! (fjall on disk or memory), which thread runs it, or why the core asked.

use crate::Time;
use dynamo_merkle::{DiffInitiator, DiffReply, DiffRequest, KeyEntry, Step};
use dynamo_quorum::{Object, Value};
use dynamo_storage::{Durability, Hint, LocalWrite, Store};
use dynamo_vclock::VClock;

/// Most bytes of versions one [`StoreOp::GetMany`] returns (well under the frame limit).
pub const GET_MANY_MAX_BYTES: usize = 4 * 1024 * 1024;

/// One operation on the node's store.
#[derive(Debug)]
pub enum StoreOp {
    /// The stored versions of a key ([`StoreResult::Found`]).
    Get {
        /// Ring partition.
        partition: u32,
        /// Storage key.
        key: Vec<u8>,
    },
    /// Makes every write so far durable, then reads a key's stored versions joined with the
    /// versions held for it as hints, for any owner ([`StoreResult::Found`]): what a reaper is
    /// told, so that the answer holds after a power loss and names every version this node
    /// could still hand to a replica.
    GetSynced {
        /// Ring partition.
        partition: u32,
        /// Storage key.
        key: Vec<u8>,
    },
    /// The stored versions of a key joined with the versions held for it as hints, for any
    /// owner ([`StoreResult::Found`]): what a fallback answers a read with.
    GetWithHints {
        /// Ring partition.
        partition: u32,
        /// Storage key.
        key: Vec<u8>,
    },
    /// Merges versions into a key ([`StoreResult::Stored`] with the merged set).
    Apply {
        /// Ring partition.
        partition: u32,
        /// Storage key.
        key: Vec<u8>,
        /// The versions.
        object: Object,
        /// How durable the write must be before it is answered.
        durability: Durability,
    },
    /// Merges many keys of one partition ([`StoreResult::Done`]); a handoff batch.
    ApplyBatch {
        /// Ring partition.
        partition: u32,
        /// Storage keys and their versions.
        entries: Vec<(Vec<u8>, Object)>,
        /// How durable the writes must be.
        durability: Durability,
    },
    /// The coordinator's write (paper 4.4): a new dot over `context` ([`StoreResult::Stored`]).
    Update {
        /// Ring partition.
        partition: u32,
        /// Storage key.
        key: Vec<u8>,
        /// What the client had read. The store picks the actor (a key incarnation of the
        /// node's actor).
        context: VClock,
        /// The new value or a tombstone.
        value: Value,
        /// Milliseconds recorded in the clock entry.
        now: Time,
        /// How durable the write must be.
        durability: Durability,
    },
    /// Up to `limit` keys of a partition after `after` ([`StoreResult::Scanned`]).
    Scan {
        /// Ring partition.
        partition: u32,
        /// Continue after this key.
        after: Option<Vec<u8>>,
        /// Most keys returned.
        limit: usize,
    },
    /// Up to `limit` user keys of `bucket` in a partition, after the user key `after`
    /// ([`StoreResult::Versions`], `next` set when more follow): with `versions`, every key
    /// with its versions, the page within [`dynamo_protocol::MAX_EXPORT_PAGE_BYTES`] unless one
    /// entry alone is larger; without, only keys with a live version, each with an empty set.
    ScanKeys {
        /// Ring partition.
        partition: u32,
        /// Bucket name.
        bucket: String,
        /// Continue after this user key.
        after: Option<Vec<u8>>,
        /// Whether the versions are wanted too (a backup), tombstones included.
        versions: bool,
        /// Most keys returned.
        limit: usize,
    },
    /// Deletes a key if its set is still `expected` ([`StoreResult::Reaped`]).
    RemoveIfEqual {
        /// Ring partition.
        partition: u32,
        /// Storage key.
        key: Vec<u8>,
        /// The set the reaper checked.
        expected: Object,
        /// How durable the delete must be.
        durability: Durability,
    },
    /// Drops this node's copies of keys it handed to another replica of a partition it no
    /// longer replicates, each only if it is still exactly the set the replica acknowledged,
    /// after retiring the partition's key incarnations ([`StoreResult::Dropped`] with how many
    /// were dropped).
    DropHandedOff {
        /// Ring partition.
        partition: u32,
        /// The keys and the sets sent.
        sent: Vec<(Vec<u8>, Object)>,
    },
    /// Keeps versions for `owner` as a hint ([`StoreResult::Done`]).
    PutHint {
        /// The primary the versions belong to.
        owner: String,
        /// Ring partition.
        partition: u32,
        /// Storage key.
        key: Vec<u8>,
        /// The versions.
        object: Object,
        /// How durable the write must be.
        durability: Durability,
    },
    /// Every node hints are held for ([`StoreResult::Owners`]).
    HintOwners,
    /// Up to `limit` hints held for `owner` ([`StoreResult::Hints`]).
    HintsFor {
        /// The owner.
        owner: String,
        /// Most hints returned.
        limit: usize,
    },
    /// Drops a delivered hint if the owner's set covers it ([`StoreResult::Done`]).
    RemoveHintIfCovered {
        /// The owner.
        owner: String,
        /// Ring partition.
        partition: u32,
        /// Storage key.
        key: Vec<u8>,
        /// The set the owner stores after applying the hint.
        acknowledged: Object,
        /// How durable the delete must be.
        durability: Durability,
    },
    /// How many hints are held for each of `owners` ([`StoreResult::Counts`]).
    PendingHints {
        /// The owners, in the order the counts come back.
        owners: Vec<String>,
    },
    /// The stored versions of many keys of a partition, absent keys left out, stopping once
    /// [`GET_MANY_MAX_BYTES`] of versions are collected ([`StoreResult::Scanned`]).
    GetMany {
        /// Ring partition.
        partition: u32,
        /// Storage keys.
        keys: Vec<Vec<u8>>,
    },
    /// Starts an anti-entropy diff on the partition's kept Merkle tree
    /// ([`StoreResult::DiffStarted`]).
    DiffStart {
        /// Ring partition.
        partition: u32,
    },
    /// Feeds a peer's diff reply to a session ([`StoreResult::DiffStepped`]).
    DiffStep {
        /// Ring partition.
        partition: u32,
        /// The session.
        session: Box<DiffInitiator>,
        /// The peer's reply.
        reply: DiffReply,
    },
    /// Answers a peer's diff request from this replica's tree and keys
    /// ([`StoreResult::DiffAnswer`]).
    DiffAnswer {
        /// Ring partition.
        partition: u32,
        /// The peer's request.
        request: DiffRequest,
    },
    /// The Merkle roots of `partitions` ([`StoreResult::Roots`]).
    MerkleRoots {
        /// Ring partitions.
        partitions: Vec<u32>,
    },
    /// Saves a piece of node state durably ([`StoreResult::Done`]). Saves of one name must
    /// be carried out in the order they were emitted.
    SaveState {
        /// Which state (see the `STATE_*` names in [`crate`]).
        name: &'static str,
        /// Its encoding.
        bytes: Vec<u8>,
    },
}

impl StoreOp {
    /// The write lane's split of a durable single-key write (an `Update` or `Apply` that asked
    /// for `Sync`): makes it buffered and returns `true`, and the caller makes it durable with
    /// one flush for a run of such writes before it reports any of them. Until that flush the
    /// write is visible to reads but not on disk: a power loss takes it, even after a read
    /// returned it. Any other operation is left alone (`false`).
    pub fn take_durability(&mut self) -> bool {
        match self {
            StoreOp::Update { durability, .. } | StoreOp::Apply { durability, .. } => {
                std::mem::replace(durability, Durability::Buffered) == Durability::Sync
            }
            _ => false,
        }
    }

    /// The variant's name, for traces and messages (what it carries may be large).
    pub fn kind(&self) -> &'static str {
        match self {
            StoreOp::Get { .. } => "Get",
            StoreOp::GetSynced { .. } => "GetSynced",
            StoreOp::GetWithHints { .. } => "GetWithHints",
            StoreOp::Apply { .. } => "Apply",
            StoreOp::ApplyBatch { .. } => "ApplyBatch",
            StoreOp::Update { .. } => "Update",
            StoreOp::Scan { .. } => "Scan",
            StoreOp::ScanKeys { .. } => "ScanKeys",
            StoreOp::RemoveIfEqual { .. } => "RemoveIfEqual",
            StoreOp::DropHandedOff { .. } => "DropHandedOff",
            StoreOp::PutHint { .. } => "PutHint",
            StoreOp::HintOwners => "HintOwners",
            StoreOp::HintsFor { .. } => "HintsFor",
            StoreOp::RemoveHintIfCovered { .. } => "RemoveHintIfCovered",
            StoreOp::PendingHints { .. } => "PendingHints",
            StoreOp::GetMany { .. } => "GetMany",
            StoreOp::DiffStart { .. } => "DiffStart",
            StoreOp::DiffStep { .. } => "DiffStep",
            StoreOp::DiffAnswer { .. } => "DiffAnswer",
            StoreOp::MerkleRoots { .. } => "MerkleRoots",
            StoreOp::SaveState { .. } => "SaveState",
        }
    }
}

/// What a [`StoreOp`] produced.
#[derive(Debug)]
pub enum StoreResult {
    /// The versions read, `None` if the key is absent.
    Found(Option<Object>),
    /// The stored set after a write.
    Stored(Object),
    /// Keys and versions of a scan.
    Scanned(Vec<(Vec<u8>, Object)>),
    /// Whether a reap deleted the key.
    Reaped(bool),
    /// How many handed-off copies were dropped.
    Dropped(usize),
    /// Owners of held hints.
    Owners(Vec<String>),
    /// Held hints.
    Hints(Vec<Hint<Value>>),
    /// Hint counts, one per owner asked.
    Counts(Vec<usize>),
    /// A diff session and its first request.
    DiffStarted(Box<DiffInitiator>, DiffRequest),
    /// A diff session after a reply, and what to do next.
    DiffStepped(Box<DiffInitiator>, Step),
    /// The answer to a peer's diff request.
    DiffAnswer(DiffReply),
    /// A page of user keys with their versions (empty sets for a plain listing).
    Versions(dynamo_protocol::VersionPage),
    /// Merkle roots, one per partition asked.
    Roots(Vec<dynamo_protocol::PartitionRoot>),
    /// Done.
    Done,
}

impl StoreResult {
    /// The variant's name, for messages (the values may be large).
    pub fn kind(&self) -> &'static str {
        match self {
            StoreResult::Found(_) => "Found",
            StoreResult::Stored(_) => "Stored",
            StoreResult::Scanned(_) => "Scanned",
            StoreResult::Reaped(_) => "Reaped",
            StoreResult::Dropped(_) => "Dropped",
            StoreResult::Owners(_) => "Owners",
            StoreResult::Hints(_) => "Hints",
            StoreResult::Counts(_) => "Counts",
            StoreResult::DiffStarted(..) => "DiffStarted",
            StoreResult::DiffStepped(..) => "DiffStepped",
            StoreResult::DiffAnswer(_) => "DiffAnswer",
            StoreResult::Versions(_) => "Versions",
            StoreResult::Roots(_) => "Roots",
            StoreResult::Done => "Done",
        }
    }
}

/// Why a store operation failed. Its kind says whose fault it is, which is what the core
/// decides on; the message is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// Whose fault.
    pub kind: StoreErrorKind,
    /// What happened.
    pub message: String,
}

impl StoreError {
    /// A store error of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
        }
    }
}

/// Whose fault a failed store operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The input is not acceptable (a key or value over the limits, a malformed diff step, a
    /// bad node-state name): the request is at fault, and nothing was written.
    Refused,
    /// The disk or the engine failed (an I/O error, a journal poisoned by a failed fsync):
    /// this node is at fault, and the write may or may not be there.
    Failed,
    /// The disk is full (below the store's reserve): nothing was written, and the store takes
    /// writes again once space returns.
    Full,
    /// The store can no longer promise durability (a failed fsync poisoned the engine): the
    /// node stops serving until it is restarted.
    Fatal,
    /// What is on disk does not decode, or belongs to another node.
    Corrupt,
}

impl From<dynamo_storage::StorageError> for StoreError {
    fn from(error: dynamo_storage::StorageError) -> Self {
        use dynamo_storage::StorageError as E;
        let kind = match &error {
            E::KeyTooLarge { .. }
            | E::ValueTooLarge { .. }
            | E::InvalidNodeId { .. }
            | E::InvalidStateName { .. }
            | E::NodeStateTooLarge { .. }
            | E::Encode(_) => StoreErrorKind::Refused,
            E::Corrupt { .. } | E::NodeIdMismatch { .. } => StoreErrorKind::Corrupt,
            E::DiskFull { .. } => StoreErrorKind::Full,
            E::Poisoned(_) => StoreErrorKind::Fatal,
            // The disk or the engine (I/O, poisoned), and any kind added to the store later
            // until it is told apart here.
            _ => StoreErrorKind::Failed,
        };
        StoreError::new(kind, error.to_string())
    }
}

impl From<dynamo_merkle::MerkleError> for StoreError {
    fn from(error: dynamo_merkle::MerkleError) -> Self {
        StoreError::new(StoreErrorKind::Refused, error.to_string())
    }
}

/// Runs `op` on `store`. A store error becomes its message: the core reports it and never
/// panics on it.
pub fn execute<S: Store<Value> + ?Sized>(
    store: &S,
    op: StoreOp,
) -> Result<StoreResult, StoreError> {
    let result = match op {
        StoreOp::Get { partition, key } => store.get(partition, &key).map(StoreResult::Found),
        StoreOp::GetSynced { partition, key } => store
            .flush()
            .and_then(|()| with_hints(store, partition, &key))
            .map(StoreResult::Found),
        StoreOp::GetWithHints { partition, key } => {
            with_hints(store, partition, &key).map(StoreResult::Found)
        }
        StoreOp::Apply {
            partition,
            key,
            object,
            durability,
        } => store
            .apply(partition, &key, &object, durability)
            .map(StoreResult::Stored),
        StoreOp::ApplyBatch {
            partition,
            entries,
            durability,
        } => entries
            .iter()
            .try_for_each(|(key, object)| {
                store.apply(partition, key, object, durability).map(|_| ())
            })
            .map(|()| StoreResult::Done),
        StoreOp::Update {
            partition,
            key,
            context,
            value,
            now,
            durability,
        } => {
            let write = LocalWrite {
                context: &context,
                value,
                now: now.as_millis(),
            };
            store
                .update(partition, &key, write, durability)
                .map(StoreResult::Stored)
        }
        StoreOp::Scan {
            partition,
            after,
            limit,
        } => store
            .scan_partition(partition, after.as_deref(), limit)
            .map(StoreResult::Scanned),
        StoreOp::ScanKeys {
            partition,
            bucket,
            after,
            versions,
            limit,
        } => scan_bucket(store, partition, &bucket, after.as_deref(), versions, limit)
            .map(StoreResult::Versions),
        StoreOp::RemoveIfEqual {
            partition,
            key,
            expected,
            durability,
        } => store
            .remove_if_equal(partition, &key, &expected, durability)
            .map(StoreResult::Reaped),
        StoreOp::DropHandedOff { partition, sent } => {
            drop_handed_off(store, partition, &sent).map(StoreResult::Dropped)
        }
        StoreOp::PutHint {
            owner,
            partition,
            key,
            object,
            durability,
        } => store
            .put_hint(&owner, partition, &key, &object, durability)
            .map(|()| StoreResult::Done),
        StoreOp::HintOwners => store.hint_owners().map(StoreResult::Owners),
        StoreOp::HintsFor { owner, limit } => {
            store.hints_for(&owner, limit).map(StoreResult::Hints)
        }
        StoreOp::RemoveHintIfCovered {
            owner,
            partition,
            key,
            acknowledged,
            durability,
        } => store
            .remove_hint_if_covered(&owner, partition, &key, &acknowledged, durability)
            .map(|_| StoreResult::Done),
        StoreOp::PendingHints { owners } => owners
            .iter()
            .map(|owner| store.pending_hints(owner))
            .collect::<Result<Vec<_>, _>>()
            .map(StoreResult::Counts),
        StoreOp::SaveState { name, bytes } => store
            .save_node_state(name, &bytes)
            .map(|()| StoreResult::Done),
        StoreOp::GetMany { partition, keys } => get_many(store, partition, &keys),
        StoreOp::MerkleRoots { partitions } => partitions
            .into_iter()
            .map(|partition| {
                store
                    .merkle_root(partition)
                    .map(|root| dynamo_protocol::PartitionRoot {
                        partition,
                        root: root.0,
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(StoreResult::Roots),
        StoreOp::DiffStart { partition } => store.merkle_tree(partition).map(|tree| {
            let (session, request) = DiffInitiator::start(&tree);
            StoreResult::DiffStarted(Box::new(session), request)
        }),
        StoreOp::DiffStep {
            partition,
            mut session,
            reply,
        } => {
            // Only segment and bucket replies need the keys: one scan gives tree and keys.
            let needs_keys = matches!(reply, DiffReply::Segments(_) | DiffReply::Buckets(_));
            return with_tree_and_keys(store, partition, needs_keys, |tree, keys| {
                session
                    .on_reply(tree, keys, reply)
                    .map_err(StoreError::from)
            })
            .map(|step| StoreResult::DiffStepped(session, step));
        }
        StoreOp::DiffAnswer { partition, request } => {
            let needs_keys = matches!(
                request,
                DiffRequest::Segments { .. } | DiffRequest::Buckets { .. }
            );
            return with_tree_and_keys(store, partition, needs_keys, |tree, keys| {
                dynamo_merkle::DiffResponder::new()
                    .handle(tree, keys, &request)
                    .map_err(StoreError::from)
            })
            .map(StoreResult::DiffAnswer);
        }
    };
    result.map_err(StoreError::from)
}

/// A key's stored versions joined with what this store holds for it as hints (any owner).
fn with_hints<S: Store<Value> + ?Sized>(
    store: &S,
    partition: u32,
    key: &[u8],
) -> dynamo_storage::Result<Option<Object>> {
    let stored = store.get(partition, key)?;
    let hinted = store.hinted(partition, key)?;
    Ok(match (stored, hinted) {
        (Some(stored), Some(hinted)) => Some(stored.sync(&hinted)),
        (stored, hinted) => stored.or(hinted),
    })
}

/// Runs `step` on the partition's tree and, when `needs_keys`, its `(key, hash)` index from one
/// scan; otherwise on the kept tree (no scan) with no keys.
fn with_tree_and_keys<S, T>(
    store: &S,
    partition: u32,
    needs_keys: bool,
    step: impl FnOnce(
        &dynamo_merkle::MerkleTree,
        &dyn dynamo_merkle::SegmentSource,
    ) -> Result<T, StoreError>,
) -> Result<T, StoreError>
where
    S: Store<Value> + ?Sized,
{
    if needs_keys {
        let digest = store.partition_digest(partition)?;
        step(&digest.tree, &digest.index)
    } else {
        let tree = store.merkle_tree(partition)?;
        let no_keys = |_segment: u32| -> Vec<KeyEntry> { Vec::new() };
        step(&tree, &no_keys)
    }
}

fn drop_handed_off<S: Store<Value> + ?Sized>(
    store: &S,
    partition: u32,
    sent: &[(Vec<u8>, Object)],
) -> dynamo_storage::Result<usize> {
    // Retire first: should this node coordinate one of these keys again after the drop, it
    // must not continue a history it no longer holds (kv679 at the key level).
    store.retire_actors(partition)?;
    let mut dropped = 0;
    for (key, object) in sent {
        // Buffered: a drop lost in a crash only leaves a copy the restart sweep sends again.
        if store.remove_if_equal(partition, key, object, Durability::Buffered)? {
            dropped += 1;
        }
    }
    Ok(dropped)
}

fn get_many<S: Store<Value> + ?Sized>(
    store: &S,
    partition: u32,
    keys: &[Vec<u8>],
) -> dynamo_storage::Result<StoreResult> {
    let mut entries = Vec::new();
    let mut bytes = 0;
    for key in keys {
        if bytes >= GET_MANY_MAX_BYTES {
            break;
        }
        if let Some(object) = store.get(partition, key)? {
            bytes += key.len() + postcard::to_allocvec(&object).map_or(0, |b| b.len());
            entries.push((key.clone(), object));
        }
    }
    Ok(StoreResult::Scanned(entries))
}

/// Reads the node state a core starts from (see [`crate::SavedState`]).
pub fn load_saved_state<S: Store<Value> + ?Sized>(
    store: &S,
) -> Result<crate::SavedState, StoreError> {
    let read = |name| store.node_state(name).map_err(StoreError::from);
    Ok(crate::SavedState {
        ring: read(crate::STATE_RING)?,
        buckets: read(crate::STATE_BUCKETS)?,
        status: read(crate::STATE_STATUS)?,
        removed: read(crate::STATE_REMOVED)?,
        context_key: read(crate::STATE_CONTEXT_KEY)?,
    })
}

/// Keys scanned per store call while listing a bucket.
const SCAN_BATCH: usize = 256;

/// Encoded size of a key and its versions.
pub(crate) fn entry_bytes(key: &[u8], object: &Object) -> usize {
    key.len() + postcard::experimental::serialized_size(object).unwrap_or(0)
}

/// The user keys of `bucket` in `partition` after `after`, with their versions (see
/// [`StoreOp::ScanKeys`]): with `versions`, every key, stopping before the entry that would
/// take the page past [`dynamo_protocol::MAX_EXPORT_PAGE_BYTES`] (a page holds at least
/// one); without, only live keys, each with an empty set.
fn scan_bucket<S: Store<Value> + ?Sized>(
    store: &S,
    partition: u32,
    bucket: &str,
    after: Option<&[u8]>,
    versions: bool,
    limit: usize,
) -> dynamo_storage::Result<dynamo_protocol::VersionPage> {
    let prefix = dynamo_protocol::storage_key(bucket, b"");
    let mut cursor = dynamo_protocol::storage_key(bucket, after.unwrap_or_default());
    let mut entries = Vec::new();
    let mut bytes = 0;
    loop {
        let batch = store.scan_partition(partition, Some(&cursor), SCAN_BATCH)?;
        let last_batch = batch.len() < SCAN_BATCH;
        for (key, object) in batch {
            let Some(user_key) = key.strip_prefix(prefix.as_slice()) else {
                return Ok(page(entries, limit, partition, false));
            };
            if versions {
                // A page holds at least one entry, and past that stays under the cap.
                let size = entry_bytes(user_key, &object);
                let over = bytes + size > dynamo_protocol::MAX_EXPORT_PAGE_BYTES;
                if entries.len() == limit || (over && !entries.is_empty()) {
                    return Ok(page(entries, limit, partition, true));
                }
                bytes += size;
                entries.push((user_key.to_vec(), object));
            } else if !dynamo_quorum::is_deleted(&object) {
                if entries.len() == limit {
                    return Ok(page(entries, limit, partition, true));
                }
                // A listing wants the key alone.
                entries.push((user_key.to_vec(), Object::empty()));
            }
            cursor = key;
        }
        if last_batch {
            return Ok(page(entries, limit, partition, false));
        }
    }
}

/// A page of `entries`, with a cursor after the last when `more` follow.
fn page(
    entries: Vec<(Vec<u8>, Object)>,
    limit: usize,
    partition: u32,
    more: bool,
) -> dynamo_protocol::VersionPage {
    debug_assert!(entries.len() <= limit);
    let next = more.then(|| dynamo_protocol::ListCursor {
        partition,
        after: entries.last().map(|(key, _)| key.clone()),
    });
    dynamo_protocol::VersionPage { entries, next }
}

#[cfg(test)]
mod tests {
    use dynamo_storage::StorageError;

    use super::{StoreError, StoreErrorKind};

    /// Whose fault a store error is decides the answer: a refused input is the request's
    /// (bad request), a failing disk this node's (internal), corrupt data the store's.
    #[test]
    fn store_errors_say_whose_fault_they_are() {
        let cases = [
            (
                StorageError::KeyTooLarge {
                    len: 70_000,
                    max: 65_275,
                },
                StoreErrorKind::Refused,
            ),
            (
                StorageError::Io(std::io::Error::other("No space left on device")),
                StoreErrorKind::Failed,
            ),
            (
                StorageError::Engine("Poisoned".into()),
                StoreErrorKind::Failed,
            ),
            (
                StorageError::Poisoned("an fsync failed".into()),
                StoreErrorKind::Fatal,
            ),
            (
                StorageError::DiskFull {
                    free: 1,
                    reserve: 2,
                },
                StoreErrorKind::Full,
            ),
            (
                StorageError::Corrupt {
                    space: "data",
                    key: b"k".to_vec(),
                    reason: "bad format byte".into(),
                },
                StoreErrorKind::Corrupt,
            ),
        ];
        for (error, kind) in cases {
            let message = error.to_string();
            let typed = StoreError::from(error);
            assert_eq!(typed.kind, kind, "{message}");
            assert_eq!(typed.message, message);
        }
    }
}
