//! The versioning logic shared by every store: atomic read-merge-write per key, limits, hints,
//! node metadata and node state, and the per-partition Merkle trees, written once over a
//! [`Backend`].
//!
//! Stored values are one format byte followed by the postcard encoding of the key's
//! `DvvSet`; a key's Merkle hash covers the key and those postcard bytes. This module must not
//! know which engine is below, rings, the network or tombstone semantics.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dynamo_merkle::{KeyEntry, KeyHash, KeyIndex, MerkleTree, TreeShape, key_hash};
use dynamo_vclock::{Actor, DvvSet, VClock};

use crate::backend::{Backend, Op, Space, Visitor};
use crate::error::{Result, StorageError};
use crate::keys::{
    MAX_NODE_STATE_BYTES, META_EPOCH, META_FORMAT, META_INCARNATION_LEASE, META_NODE_ID,
    META_RETIRED_PREFIX, META_RUNNING, META_STATE_PREFIX, STORE_FORMAT, check_key, check_node_id,
    check_state_name, data_key, hint_key, hint_prefix, partition_bounds, prefix_bounds,
    prefix_successor, retired_key, split_data_key, split_hint_key, state_key,
};
use crate::options::{Durability, StoreOptions};
use crate::store::{
    Hint, LocalWrite, PartitionDigest, Value, actor_for, incarnation_of, key_actor,
};

/// First byte of every stored version set.
const FORMAT_V1: u8 = 1;

/// Entries read per backend scan when a whole partition is walked.
const SCAN_BATCH: usize = 1024;

/// Stripes of the hint locks.
const HINT_STRIPES: usize = 64;

/// Key incarnations leased per durable lease write.
const INCARNATION_LEASE: u64 = 1024;

/// The key incarnations this store hands out ([`crate::key_actor`]).
#[derive(Debug)]
struct Incarnations {
    /// The next incarnation to hand out.
    next: u64,
    /// The durable lease: every incarnation below it may have been handed out, so a reopened
    /// store starts here.
    leased_to: u64,
    /// Per partition, the retirement floor: own incarnations below it are not continued.
    retired: HashMap<u32, u64>,
    /// The floor of every partition after a crash: the lease when the store opened, so no key
    /// continues an incarnation whose latest dot a power loss may have taken here after a read
    /// copied it elsewhere (issue 26); 0 after a clean close.
    after_crash: u64,
}

/// Per-partition state, behind the partition's lock.
#[derive(Debug, Default)]
struct PartitionState {
    /// The partition's tree once built (lazily, at first use after open).
    tree: Option<MerkleTree>,
}

/// A versioned store over a backend.
pub(crate) struct Engine<B, V> {
    backend: B,
    node_id: String,
    epoch: u64,
    max_value_bytes: usize,
    shape: TreeShape,
    /// One lock per partition: held across read-merge-write of any key of the partition and
    /// the matching tree update, and while the tree is built from a scan, so the tree always
    /// equals a rebuild.
    partitions: Mutex<HashMap<u32, Arc<Mutex<PartitionState>>>>,
    /// Striped locks for read-merge-write of hints.
    hint_locks: Vec<Mutex<()>>,
    /// The node's actor in this epoch, of which key writes use incarnations.
    base_actor: Actor,
    /// Key incarnations handed out and retired (locked inside a partition lock, never around
    /// one).
    incarnations: Mutex<Incarnations>,
    _values: PhantomData<fn() -> V>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Encodes a set in the stored format.
fn encode_set<V: Value>(set: &DvvSet<V>) -> Result<Vec<u8>> {
    postcard::to_extend(set, vec![FORMAT_V1]).map_err(|e| StorageError::Encode(e.to_string()))
}

/// Decodes a stored set; `space` and `key` only label the error.
fn decode_set<V: Value>(space: Space, key: &[u8], bytes: &[u8]) -> Result<DvvSet<V>> {
    let corrupt = |reason: String| StorageError::Corrupt {
        space: space.name(),
        key: key.to_vec(),
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => postcard::from_bytes(body).map_err(|e| corrupt(e.to_string())),
        Some((other, _)) => Err(corrupt(format!("unknown format byte {other}"))),
        None => Err(corrupt("empty value".into())),
    }
}

/// The Merkle hash of a key with its stored bytes (format byte excluded).
fn state_hash(key: &[u8], stored: &[u8]) -> KeyHash {
    key_hash(key, stored.get(1..).unwrap_or_default())
}

/// After a failed write the engine may or may not hold it (fjall can fail the fsync after
/// the memtable took the write), so the kept tree is dropped and rebuilt from a scan.
fn forget_tree_on_error(state: &mut PartitionState, written: Result<()>) -> Result<()> {
    if written.is_err() {
        state.tree = None;
    }
    written
}

fn bound_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(b) => Bound::Included(b.as_slice()),
        Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn u64_value(space: Space, key: &[u8], bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StorageError::Corrupt {
        space: space.name(),
        key: key.to_vec(),
        reason: "expected 8 bytes".into(),
    })?;
    Ok(u64::from_be_bytes(array))
}

/// The incarnation lease and every partition's retirement floor, as recorded.
fn load_incarnations<B: Backend>(backend: &B) -> Result<Incarnations> {
    let leased_to = match backend.get(Space::Meta, META_INCARNATION_LEASE)? {
        Some(bytes) => u64_value(Space::Meta, META_INCARNATION_LEASE, &bytes)?,
        None => 1,
    };
    let mut retired = HashMap::new();
    let (lower, upper) = prefix_bounds(META_RETIRED_PREFIX);
    backend.scan(
        Space::Meta,
        bound_ref(&lower),
        bound_ref(&upper),
        &mut |key, value| {
            let partition = key
                .get(META_RETIRED_PREFIX.len()..)
                .and_then(|p| <[u8; 4]>::try_from(p).ok())
                .ok_or_else(|| StorageError::Corrupt {
                    space: "meta",
                    key: key.to_vec(),
                    reason: "retirement floor of no partition".into(),
                })?;
            retired.insert(
                u32::from_be_bytes(partition),
                u64_value(Space::Meta, key, value)?,
            );
            Ok(true)
        },
    )?;
    // A session that did not close cleanly may have lost writes a read had already returned.
    let crashed = backend.get(Space::Meta, META_RUNNING)?.is_some();
    Ok(Incarnations {
        next: leased_to,
        leased_to,
        retired,
        after_crash: if crashed { leased_to } else { 0 },
    })
}

/// The meta keys of every saved node state.
fn stale_node_state<B: Backend>(backend: &B) -> Result<Vec<Vec<u8>>> {
    let (lower, upper) = prefix_bounds(META_STATE_PREFIX);
    let mut keys = Vec::new();
    backend.scan(
        Space::Meta,
        bound_ref(&lower),
        bound_ref(&upper),
        &mut |key, _| {
            keys.push(key.to_vec());
            Ok(true)
        },
    )?;
    Ok(keys)
}

/// The format the store was written in: refused if later than [`STORE_FORMAT`] (or earlier,
/// once a format has no migration from it). Reads only, so a refused store is left as it was;
/// `true` when the store has no record yet (new, or written before formats were recorded,
/// which is format 1), to be written with the first write of the open.
fn check_format<B: Backend>(backend: &B) -> Result<bool> {
    let found = match backend.get(Space::Meta, META_FORMAT)? {
        None => return Ok(true),
        Some(bytes) => {
            let bytes: [u8; 4] = bytes[..].try_into().map_err(|_| StorageError::Corrupt {
                space: "meta",
                key: META_FORMAT.to_vec(),
                reason: "the store format is not 4 bytes".into(),
            })?;
            u32::from_be_bytes(bytes)
        }
    };
    match found.cmp(&STORE_FORMAT) {
        std::cmp::Ordering::Equal => Ok(false),
        std::cmp::Ordering::Greater => Err(StorageError::NewerFormat {
            found,
            supported: STORE_FORMAT,
        }),
        // Format 1 is the first: nothing to migrate from yet. A later format adds its
        // migration here, before the record is raised.
        std::cmp::Ordering::Less => Err(StorageError::OlderFormat {
            found,
            supported: STORE_FORMAT,
        }),
    }
}

impl<B: Backend, V: Value> Engine<B, V> {
    /// Opens the versioning layer over `backend`: checks the store's format (before anything
    /// is written) and the node id, and sets up the epoch.
    pub(crate) fn open(backend: B, options: &StoreOptions) -> Result<Self> {
        check_node_id(&options.node_id)?;
        let record_format = check_format(&backend)?;
        let stored_id = backend.get(Space::Meta, META_NODE_ID)?;
        let stored_epoch = backend.get(Space::Meta, META_EPOCH)?;
        let corrupt = |reason: &str| StorageError::Corrupt {
            space: "meta",
            key: META_EPOCH.to_vec(),
            reason: reason.to_string(),
        };
        let epoch = match (stored_id, stored_epoch) {
            (Some(id), Some(epoch)) => {
                let id =
                    String::from_utf8(id.to_vec()).map_err(|_| corrupt("node id is not UTF-8"))?;
                if id != options.node_id {
                    return Err(StorageError::NodeIdMismatch {
                        stored: id,
                        requested: options.node_id.clone(),
                    });
                }
                let epoch: [u8; 8] = epoch[..]
                    .try_into()
                    .map_err(|_| corrupt("epoch is not 8 bytes"))?;
                u64::from_be_bytes(epoch)
            }
            (None, None) => {
                // No metadata: a new store, or one that lost its data. Take a time-based
                // epoch, larger than any epoch this node had before the loss (kv679).
                let epoch = options.now_ms.max(1);
                let epoch_bytes = epoch.to_be_bytes();
                // Node state belongs to the lost data: drop any left behind, in the same
                // atomic write, so a store without its data never has node state.
                let stale = stale_node_state(&backend)?;
                let mut ops = vec![
                    Op::Put(Space::Meta, META_NODE_ID, options.node_id.as_bytes()),
                    Op::Put(Space::Meta, META_EPOCH, &epoch_bytes),
                ];
                ops.extend(stale.iter().map(|key| Op::Delete(Space::Meta, key)));
                backend.write(&ops, Durability::Sync)?;
                epoch
            }
            _ => return Err(corrupt("only one of node id and epoch is recorded")),
        };
        let incarnations = load_incarnations(&backend)?;
        // The running marker, and the format record of a store that has none, in one write.
        let format = STORE_FORMAT.to_be_bytes();
        let mut ops = vec![Op::Put(Space::Meta, META_RUNNING, b"1")];
        if record_format {
            ops.push(Op::Put(Space::Meta, META_FORMAT, &format));
        }
        backend.write(&ops, Durability::Sync)?;
        Ok(Engine {
            base_actor: actor_for(&options.node_id, epoch),
            incarnations: Mutex::new(incarnations),
            backend,
            node_id: options.node_id.clone(),
            epoch,
            max_value_bytes: options.max_value_bytes,
            shape: options.merkle_shape,
            partitions: Mutex::new(HashMap::new()),
            hint_locks: (0..HINT_STRIPES).map(|_| Mutex::new(())).collect(),
            _values: PhantomData,
        })
    }

    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    pub(crate) fn node_id(&self) -> &str {
        &self.node_id
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    fn partition(&self, partition: u32) -> Arc<Mutex<PartitionState>> {
        Arc::clone(lock(&self.partitions).entry(partition).or_default())
    }

    fn hint_lock(&self, raw_key: &[u8]) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        raw_key.hash(&mut hasher);
        let stripe = (hasher.finish() % HINT_STRIPES as u64) as usize;
        lock(&self.hint_locks[stripe])
    }

    fn check_value(&self, value: &V) -> Result<()> {
        let len = postcard::serialize_with_flavor::<V, postcard::ser_flavors::Size, usize>(
            value,
            postcard::ser_flavors::Size::default(),
        )
        .map_err(|e| StorageError::Encode(e.to_string()))?;
        if len > self.max_value_bytes {
            return Err(StorageError::ValueTooLarge {
                len,
                max: self.max_value_bytes,
            });
        }
        Ok(())
    }

    fn check_set(&self, set: &DvvSet<V>) -> Result<()> {
        set.values().try_for_each(|v| self.check_value(v))
    }

    pub(crate) fn get(&self, partition: u32, key: &[u8]) -> Result<Option<DvvSet<V>>> {
        check_key(key)?;
        self.backend
            .get(Space::Data, &data_key(partition, key))?
            .map(|bytes| decode_set(Space::Data, key, &bytes))
            .transpose()
    }

    /// Read-merge-write of one key under its partition's lock, with the tree update.
    fn modify(
        &self,
        partition: u32,
        key: &[u8],
        durability: Durability,
        merge: impl FnOnce(Option<DvvSet<V>>) -> Result<DvvSet<V>>,
    ) -> Result<DvvSet<V>> {
        let raw = data_key(partition, key);
        let part = self.partition(partition);
        let mut state = lock(&part);
        let old_bytes = self.backend.get(Space::Data, &raw)?;
        let old = old_bytes
            .as_deref()
            .map(|b| decode_set(Space::Data, key, b))
            .transpose()?;
        let new = merge(old)?;
        if old_bytes.is_none() && new == DvvSet::empty() {
            // An empty incoming set for an absent key: nothing to store.
            return Ok(new);
        }
        let new_bytes = encode_set(&new)?;
        if old_bytes.as_deref() != Some(new_bytes.as_slice()) {
            // Buffered under the lock; made durable below, after it, so writers of other keys
            // of the partition do not wait for this fsync and can share it (group commit).
            let written = self.backend.write(
                &[Op::Put(Space::Data, &raw, &new_bytes)],
                Durability::Buffered,
            );
            forget_tree_on_error(&mut state, written)?;
            if let Some(tree) = state.tree.as_mut() {
                let old_hash = old_bytes.as_deref().map(|b| state_hash(key, b));
                tree.update(key, old_hash, Some(state_hash(key, &new_bytes)));
            }
        }
        drop(state);
        // Also when nothing changed: a durable caller needs earlier buffered writes on disk.
        if durability == Durability::Sync {
            self.backend.sync()?;
        }
        Ok(new)
    }

    pub(crate) fn apply(
        &self,
        partition: u32,
        key: &[u8],
        incoming: &DvvSet<V>,
        durability: Durability,
    ) -> Result<DvvSet<V>> {
        check_key(key)?;
        self.check_set(incoming)?;
        self.modify(partition, key, durability, |stored| {
            Ok(match stored {
                Some(stored) => stored.sync(incoming),
                None => incoming.clone(),
            })
        })
    }

    pub(crate) fn update(
        &self,
        partition: u32,
        key: &[u8],
        write: LocalWrite<'_, V>,
        durability: Durability,
    ) -> Result<DvvSet<V>> {
        check_key(key)?;
        self.check_value(&write.value)?;
        self.modify(partition, key, durability, |stored| {
            let stored = stored.unwrap_or_default();
            let actor = self.writer(partition, &stored, write.context)?;
            Ok(stored.updated(write.context, &actor, write.value, write.now))
        })
    }

    /// The actor a coordinator write of a key continues (see [`crate::Store::update`]); called
    /// under the partition's lock.
    fn writer(&self, partition: u32, stored: &DvvSet<V>, context: &VClock) -> Result<Actor> {
        let mut incarnations = lock(&self.incarnations);
        let floor = incarnations
            .retired
            .get(&partition)
            .copied()
            .unwrap_or(0)
            .max(incarnations.after_crash);
        let history = stored.context();
        let continued = history
            .iter()
            .filter(|(actor, entry)| context.get(actor) <= entry.counter)
            .filter_map(|(actor, _)| incarnation_of(&self.base_actor, actor))
            .filter(|&incarnation| incarnation >= floor)
            .max();
        if let Some(incarnation) = continued {
            return Ok(key_actor(&self.base_actor, incarnation));
        }
        if incarnations.next >= incarnations.leased_to {
            let leased_to = incarnations.next.saturating_add(INCARNATION_LEASE);
            self.backend.write(
                &[Op::Put(
                    Space::Meta,
                    META_INCARNATION_LEASE,
                    &leased_to.to_be_bytes(),
                )],
                Durability::Sync,
            )?;
            incarnations.leased_to = leased_to;
        }
        let incarnation = incarnations.next;
        incarnations.next += 1;
        Ok(key_actor(&self.base_actor, incarnation))
    }

    pub(crate) fn retire_actors(&self, partition: u32) -> Result<()> {
        let mut incarnations = lock(&self.incarnations);
        let floor = incarnations.next;
        if incarnations.retired.get(&partition) == Some(&floor) {
            return Ok(());
        }
        self.backend.write(
            &[Op::Put(
                Space::Meta,
                &retired_key(partition),
                &floor.to_be_bytes(),
            )],
            Durability::Sync,
        )?;
        incarnations.retired.insert(partition, floor);
        Ok(())
    }

    /// Visits the raw entries of a partition in key order, strictly after `after`.
    fn visit_partition(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        let (lower, upper) = partition_bounds(partition, after);
        self.backend.scan(
            Space::Data,
            bound_ref(&lower),
            bound_ref(&upper),
            &mut |raw, value| {
                let (_, key) = split_data_key(raw)?;
                visit(key, value)
            },
        )
    }

    pub(crate) fn scan_partition(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, DvvSet<V>)>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.visit_partition(partition, after, &mut |key, value| {
            out.push((key.to_vec(), decode_set(Space::Data, key, value)?));
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Visits `(key, hash)` of every key of a partition, in batches so that the backend
    /// never holds a scan open (or its lock) for long.
    fn for_each_hash(&self, partition: u32, mut visit: impl FnMut(&[u8], KeyHash)) -> Result<()> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let mut batch: Vec<(Vec<u8>, KeyHash)> = Vec::with_capacity(SCAN_BATCH);
            self.visit_partition(partition, after.as_deref(), &mut |key, value| {
                batch.push((key.to_vec(), state_hash(key, value)));
                Ok(batch.len() < SCAN_BATCH)
            })?;
            for (key, hash) in &batch {
                visit(key, *hash);
            }
            if batch.len() < SCAN_BATCH {
                return Ok(());
            }
            after = batch.pop().map(|(key, _)| key);
        }
    }

    pub(crate) fn remove_if_equal(
        &self,
        partition: u32,
        key: &[u8],
        expected: &DvvSet<V>,
        durability: Durability,
    ) -> Result<bool> {
        check_key(key)?;
        let raw = data_key(partition, key);
        let part = self.partition(partition);
        let mut state = lock(&part);
        let Some(old_bytes) = self.backend.get(Space::Data, &raw)? else {
            return Ok(false);
        };
        let stored: DvvSet<V> = decode_set(Space::Data, key, &old_bytes)?;
        if stored != *expected {
            return Ok(false);
        }
        let written = self
            .backend
            .write(&[Op::Delete(Space::Data, &raw)], durability);
        forget_tree_on_error(&mut state, written)?;
        if let Some(tree) = state.tree.as_mut() {
            tree.update(key, Some(state_hash(key, &old_bytes)), None);
        }
        Ok(true)
    }

    pub(crate) fn put_hint(
        &self,
        owner: &str,
        partition: u32,
        key: &[u8],
        versions: &DvvSet<V>,
        durability: Durability,
    ) -> Result<()> {
        check_node_id(owner)?;
        check_key(key)?;
        self.check_set(versions)?;
        let raw = hint_key(owner, partition, key);
        let _guard = self.hint_lock(&raw);
        let merged = match self.backend.get(Space::Hints, &raw)? {
            Some(bytes) => decode_set::<V>(Space::Hints, key, &bytes)?.sync(versions),
            None => versions.clone(),
        };
        let bytes = encode_set(&merged)?;
        self.backend
            .write(&[Op::Put(Space::Hints, &raw, &bytes)], durability)
    }

    pub(crate) fn hints_for(&self, owner: &str, limit: usize) -> Result<Vec<Hint<V>>> {
        check_node_id(owner)?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let (lower, upper) = prefix_bounds(&hint_prefix(owner));
        self.backend.scan(
            Space::Hints,
            bound_ref(&lower),
            bound_ref(&upper),
            &mut |raw, value| {
                let (_, partition, key) = split_hint_key(raw)?;
                out.push(Hint {
                    partition,
                    key: key.to_vec(),
                    versions: decode_set(Space::Hints, key, value)?,
                });
                Ok(out.len() < limit)
            },
        )?;
        Ok(out)
    }

    pub(crate) fn hint_owners(&self) -> Result<Vec<String>> {
        let mut owners = Vec::new();
        let mut lower: Bound<Vec<u8>> = Bound::Unbounded;
        loop {
            let mut found: Option<String> = None;
            self.backend.scan(
                Space::Hints,
                bound_ref(&lower),
                Bound::Unbounded,
                &mut |raw, _| {
                    found = Some(split_hint_key(raw)?.0.to_string());
                    Ok(false)
                },
            )?;
            let Some(owner) = found else {
                owners.sort_unstable();
                return Ok(owners);
            };
            // Skip the rest of this owner's hints.
            let next = prefix_successor(&hint_prefix(&owner));
            owners.push(owner);
            let Some(next) = next else {
                owners.sort_unstable();
                return Ok(owners);
            };
            lower = Bound::Included(next);
        }
    }

    pub(crate) fn hinted(&self, partition: u32, key: &[u8]) -> Result<Option<DvvSet<V>>> {
        check_key(key)?;
        let mut joined: Option<DvvSet<V>> = None;
        for owner in self.hint_owners()? {
            let raw = hint_key(&owner, partition, key);
            if let Some(bytes) = self.backend.get(Space::Hints, &raw)? {
                let set = decode_set::<V>(Space::Hints, key, &bytes)?;
                joined = Some(match joined {
                    Some(acc) => acc.sync(&set),
                    None => set,
                });
            }
        }
        Ok(joined)
    }

    pub(crate) fn remove_hint_if_covered(
        &self,
        owner: &str,
        partition: u32,
        key: &[u8],
        acknowledged: &DvvSet<V>,
        durability: Durability,
    ) -> Result<bool> {
        check_node_id(owner)?;
        check_key(key)?;
        let raw = hint_key(owner, partition, key);
        let _guard = self.hint_lock(&raw);
        let Some(bytes) = self.backend.get(Space::Hints, &raw)? else {
            return Ok(false);
        };
        let held: DvvSet<V> = decode_set(Space::Hints, key, &bytes)?;
        if !acknowledged.descends(&held) {
            return Ok(false);
        }
        self.backend
            .write(&[Op::Delete(Space::Hints, &raw)], durability)?;
        Ok(true)
    }

    pub(crate) fn pending_hints(&self, owner: &str) -> Result<usize> {
        check_node_id(owner)?;
        let (lower, upper) = prefix_bounds(&hint_prefix(owner));
        let mut count = 0;
        self.backend.scan(
            Space::Hints,
            bound_ref(&lower),
            bound_ref(&upper),
            &mut |_, _| {
                count += 1;
                Ok(true)
            },
        )?;
        Ok(count)
    }

    pub(crate) fn merkle_tree(&self, partition: u32) -> Result<MerkleTree> {
        let part = self.partition(partition);
        let mut state = lock(&part);
        if let Some(tree) = &state.tree {
            return Ok(tree.clone());
        }
        // Built under the partition lock: no write of this partition can slip between the
        // scan and the moment the tree starts receiving updates.
        let mut tree = MerkleTree::new(self.shape);
        self.for_each_hash(partition, |key, hash| tree.insert(key, hash))?;
        state.tree = Some(tree.clone());
        Ok(tree)
    }

    pub(crate) fn partition_digest(&self, partition: u32) -> Result<PartitionDigest> {
        let mut index = KeyIndex::new(self.shape);
        self.for_each_hash(partition, |key, hash| {
            index.set(key, Some(hash));
        })?;
        let tree = MerkleTree::from_entries(self.shape, index.iter());
        Ok(PartitionDigest { tree, index })
    }

    pub(crate) fn segment_entries(&self, partition: u32, segment: u32) -> Result<Vec<KeyEntry>> {
        let mut out = Vec::new();
        self.for_each_hash(partition, |key, hash| {
            if self.shape.segment_of(key) == segment {
                out.push(KeyEntry {
                    key: key.to_vec(),
                    hash,
                });
            }
        })?;
        Ok(out)
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.backend.sync()
    }

    pub(crate) fn close(&self) -> Result<()> {
        self.backend
            .write(&[Op::Delete(Space::Meta, META_RUNNING)], Durability::Sync)
    }

    pub(crate) fn node_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        check_state_name(name)?;
        Ok(self
            .backend
            .get(Space::Meta, &state_key(name))?
            .map(|bytes| bytes.to_vec()))
    }

    pub(crate) fn save_node_state(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_state_name(name)?;
        if bytes.len() > MAX_NODE_STATE_BYTES {
            return Err(StorageError::NodeStateTooLarge {
                name: name.to_string(),
                len: bytes.len(),
                max: MAX_NODE_STATE_BYTES,
            });
        }
        // One put is atomic in every backend; Sync makes it (and every earlier buffered
        // write) durable before returning.
        self.backend.write(
            &[Op::Put(Space::Meta, &state_key(name), bytes)],
            Durability::Sync,
        )
    }
}

/// Implements [`crate::Store`] for a wrapper type with an `engine` field.
macro_rules! delegate_store {
    ($ty:ident) => {
        impl<V: $crate::store::Value> $crate::store::Store<V> for $ty<V> {
            fn node_id(&self) -> &str {
                self.engine.node_id()
            }
            fn epoch(&self) -> u64 {
                self.engine.epoch()
            }
            fn max_value_bytes(&self) -> usize {
                self.engine.max_value_bytes()
            }
            fn get(
                &self,
                partition: u32,
                key: &[u8],
            ) -> $crate::Result<Option<dynamo_vclock::DvvSet<V>>> {
                self.engine.get(partition, key)
            }
            fn apply(
                &self,
                partition: u32,
                key: &[u8],
                incoming: &dynamo_vclock::DvvSet<V>,
                durability: $crate::Durability,
            ) -> $crate::Result<dynamo_vclock::DvvSet<V>> {
                self.engine.apply(partition, key, incoming, durability)
            }
            fn update(
                &self,
                partition: u32,
                key: &[u8],
                write: $crate::LocalWrite<'_, V>,
                durability: $crate::Durability,
            ) -> $crate::Result<dynamo_vclock::DvvSet<V>> {
                self.engine.update(partition, key, write, durability)
            }
            fn retire_actors(&self, partition: u32) -> $crate::Result<()> {
                self.engine.retire_actors(partition)
            }
            fn scan_partition(
                &self,
                partition: u32,
                after: Option<&[u8]>,
                limit: usize,
            ) -> $crate::Result<Vec<(Vec<u8>, dynamo_vclock::DvvSet<V>)>> {
                self.engine.scan_partition(partition, after, limit)
            }
            fn remove_if_equal(
                &self,
                partition: u32,
                key: &[u8],
                expected: &dynamo_vclock::DvvSet<V>,
                durability: $crate::Durability,
            ) -> $crate::Result<bool> {
                self.engine
                    .remove_if_equal(partition, key, expected, durability)
            }
            fn put_hint(
                &self,
                owner: &str,
                partition: u32,
                key: &[u8],
                versions: &dynamo_vclock::DvvSet<V>,
                durability: $crate::Durability,
            ) -> $crate::Result<()> {
                self.engine
                    .put_hint(owner, partition, key, versions, durability)
            }
            fn hints_for(&self, owner: &str, limit: usize) -> $crate::Result<Vec<$crate::Hint<V>>> {
                self.engine.hints_for(owner, limit)
            }
            fn hint_owners(&self) -> $crate::Result<Vec<String>> {
                self.engine.hint_owners()
            }
            fn hinted(
                &self,
                partition: u32,
                key: &[u8],
            ) -> $crate::Result<Option<dynamo_vclock::DvvSet<V>>> {
                self.engine.hinted(partition, key)
            }
            fn remove_hint_if_covered(
                &self,
                owner: &str,
                partition: u32,
                key: &[u8],
                acknowledged: &dynamo_vclock::DvvSet<V>,
                durability: $crate::Durability,
            ) -> $crate::Result<bool> {
                self.engine
                    .remove_hint_if_covered(owner, partition, key, acknowledged, durability)
            }
            fn pending_hints(&self, owner: &str) -> $crate::Result<usize> {
                self.engine.pending_hints(owner)
            }
            fn merkle_tree(&self, partition: u32) -> $crate::Result<dynamo_merkle::MerkleTree> {
                self.engine.merkle_tree(partition)
            }
            fn partition_digest(&self, partition: u32) -> $crate::Result<$crate::PartitionDigest> {
                self.engine.partition_digest(partition)
            }
            fn segment_entries(
                &self,
                partition: u32,
                segment: u32,
            ) -> $crate::Result<Vec<dynamo_merkle::KeyEntry>> {
                self.engine.segment_entries(partition, segment)
            }
            fn flush(&self) -> $crate::Result<()> {
                self.engine.flush()
            }
            fn close(&self) -> $crate::Result<()> {
                self.engine.close()
            }
            fn node_state(&self, name: &str) -> $crate::Result<Option<Vec<u8>>> {
                self.engine.node_state(name)
            }
            fn save_node_state(&self, name: &str, bytes: &[u8]) -> $crate::Result<()> {
                self.engine.save_node_state(name, bytes)
            }
        }
    };
}
pub(crate) use delegate_store;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemBackend;

    /// Riak kv679 and the epoch rule: a store opened without its data (no node id, no epoch)
    /// starts with no node state, even if some was left behind in the meta space.
    #[test]
    fn a_store_opened_without_its_metadata_has_no_node_state() {
        let backend = Arc::new(MemBackend::default());
        backend
            .write(
                &[Op::Put(Space::Meta, &state_key("ring"), b"stale")],
                Durability::Sync,
            )
            .expect("write");
        let engine: Engine<_, Vec<u8>> =
            Engine::open(Arc::clone(&backend), &StoreOptions::new("n1", 7)).expect("open");
        assert_eq!(engine.epoch(), 7);
        assert_eq!(engine.node_state("ring").expect("read"), None);
        engine.save_node_state("ring", b"fresh").expect("save");
        drop(engine);
        // With its metadata, the state is kept.
        let engine: Engine<_, Vec<u8>> =
            Engine::open(backend, &StoreOptions::new("n1", 9)).expect("reopen");
        assert_eq!(engine.epoch(), 7);
        assert_eq!(
            engine.node_state("ring").expect("read").as_deref(),
            Some(&b"fresh"[..])
        );
    }
}
