//! [`FjallStore`]: the default, persistent [`crate::Store`] on the fjall LSM-tree engine.
//!
//! One fjall database per node with three keyspaces (`data`, `hints`, `meta`; layouts in the
//! crate docs). Writes are single-key fjall writes or atomic batches; [`Durability::Sync`]
//! fsyncs the journal before returning, sharing the fsync with concurrent writers
//! ([`GroupCommit`]). This module must not know the ring, the network or
//! the version-set types beyond handing bytes to the shared versioning code.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::config::PinningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::backend::{Backend, Op, Space, Visitor, bounds_empty};
use crate::engine::{Engine, delegate_store};
use crate::error::{Result, StorageError};
use crate::group_commit::GroupCommit;
use crate::options::{Durability, StoreOptions};
use crate::store::Value;

/// Bytes a keyspace's memtable holds before fjall writes it out as a table (fjall's default is
/// 64 MiB). Every replica of a write load fills its memtable at the same pace, so all of them
/// flush at once; a smaller memtable makes each of those flushes shorter. In a write load at
/// concurrency 64 on 2 cores (9 runs of 15 s each way) the slowest write took 50 ms on average
/// with 16 MiB against 66 ms with 64 MiB, at the same throughput. It also bounds what a
/// restart replays from the journal. fjall records it when it creates a keyspace, so a store
/// created before keeps the size it was created with.
const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

/// How every keyspace is created: [`MEMTABLE_BYTES`], and index and filter blocks held in
/// memory at every level.
///
/// Index and filter blocks stay in memory for tables of every level, not only fjall's
/// default of the first two (index) and the first (filter). Past about 300,000 keys per node
/// tables reach level 2, whose whole-table index block (about 1% of the table: 0.8 MB for a
/// 64 MB table of 1 KiB values) then went through the 32 MiB block cache, where data blocks
/// evicted it: almost every read loaded it again from the page cache and checksummed it
/// (issue 28's profile at a million keys: 38% xxh3, 34% copying from the page cache). At a
/// million keys on 3 local nodes this took reads from 980 to 9,273/s and blind writes from 757
/// to 4,595/s, for about 1% of the data held in memory. A block cache of 256 MiB instead of
/// fjall's 32 MiB added nothing measurable on top (9,620 and 8,615 reads/s in two runs) and
/// 170 MiB of resident memory per node, so the cache keeps fjall's size. Like the memtable
/// size, fjall records these when it creates a keyspace: a store created before keeps its
/// policy.
fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(MEMTABLE_BYTES)
        .index_block_pinning_policy(PinningPolicy::all(true))
        .filter_block_pinning_policy(PinningPolicy::all(true))
}

/// The fjall backend: a database and its three keyspaces.
pub(crate) struct FjallBackend {
    db: Database,
    spaces: [Keyspace; 3],
    group: GroupCommit,
    /// The directory whose file system's free space is checked before a write adds data.
    path: PathBuf,
    /// [`StoreOptions::disk_reserve_bytes`], changed by [`FjallStore::set_disk_reserve`].
    reserve: AtomicU64,
}

/// The free space of a store's disk and the reserve it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSpace {
    /// Bytes free for the store (for an unprivileged writer).
    pub free: u64,
    /// Bytes the store keeps free: below this it refuses writes that add data.
    pub reserve: u64,
}

impl FreeSpace {
    /// Whether writes that add data are refused now.
    pub fn is_full(&self) -> bool {
        self.free < self.reserve
    }
}

impl FjallBackend {
    fn free_space(&self) -> Result<FreeSpace> {
        let stat = rustix::fs::statvfs(&self.path).map_err(std::io::Error::from)?;
        Ok(FreeSpace {
            free: stat.f_bavail.saturating_mul(stat.f_frsize),
            reserve: self.reserve.load(Ordering::Relaxed),
        })
    }

    /// Fails with [`StorageError::DiskFull`] when a write that adds data could run the disk
    /// out: fjall poisons itself for good on a failed journal write or flush.
    fn check_space(&self, ops: &[Op<'_>]) -> Result<()> {
        let adds_data = ops
            .iter()
            .any(|op| matches!(op, Op::Put(Space::Data | Space::Hints, ..)));
        if self.reserve.load(Ordering::Relaxed) == 0 || !adds_data {
            return Ok(());
        }
        let space = self.free_space()?;
        if space.is_full() {
            return Err(StorageError::DiskFull {
                free: space.free,
                reserve: space.reserve,
            });
        }
        Ok(())
    }

    fn open(path: &Path, reserve: u64) -> Result<Self> {
        let db = Database::builder(path).open()?;
        let open = |space: Space| db.keyspace(space.name(), keyspace_options);
        let spaces = [open(Space::Data)?, open(Space::Hints)?, open(Space::Meta)?];
        Ok(FjallBackend {
            db,
            spaces,
            group: GroupCommit::default(),
            path: path.to_path_buf(),
            reserve: AtomicU64::new(reserve),
        })
    }

    /// Makes every write buffered so far durable, in one fsync shared with concurrent callers.
    fn durable(&self) -> Result<()> {
        let ticket = self.group.written();
        self.group
            .wait_durable(ticket, || self.db.persist(PersistMode::SyncAll))
            .map_err(|error| match error {
                // fjall poisons itself when an fsync fails: what was written since the last
                // one may be lost, and nothing can be promised until a restart.
                fjall::Error::Io(io) => StorageError::Poisoned(format!("an fsync failed: {io}")),
                other => other.into(),
            })
    }

    fn space(&self, space: Space) -> &Keyspace {
        &self.spaces[space.index()]
    }
}

impl Backend for FjallBackend {
    type Bytes = fjall::Slice;
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Self::Bytes>> {
        Ok(self.space(space).get(key)?)
    }

    fn write(&self, ops: &[Op<'_>], durability: Durability) -> Result<()> {
        self.check_space(ops)?;
        if let [op] = ops {
            // One key: a plain fjall write (atomic by itself), flushed to the OS.
            match *op {
                Op::Put(space, key, value) => self.space(space).insert(key, value)?,
                Op::Delete(space, key) => self.space(space).remove(key)?,
            }
        } else {
            let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
            for op in ops {
                match *op {
                    Op::Put(space, key, value) => batch.insert(self.space(space), key, value),
                    Op::Delete(space, key) => batch.remove(self.space(space), key),
                }
            }
            batch.commit()?;
        }
        // Sync: the write is in the journal's buffer; an fsync that starts now covers it.
        if durability == Durability::Sync {
            self.durable()?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.durable()
    }

    fn scan(
        &self,
        space: Space,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        if bounds_empty(lower, upper) {
            return Ok(());
        }
        for guard in self.space(space).range::<&[u8], _>((lower, upper)) {
            let (key, value) = guard.into_inner()?;
            if !visit(&key, &value)? {
                break;
            }
        }
        Ok(())
    }
}

/// The persistent store on fjall.
///
/// ```
/// use dynamo_storage::{Durability, FjallStore, Store, StoreOptions};
/// use dynamo_vclock::{DvvSet, VClock};
///
/// let dir = tempfile::tempdir()?;
/// let store: FjallStore<Vec<u8>> = FjallStore::open(dir.path(), &StoreOptions::new("n1", 1_000))?;
/// let epoch = store.epoch();
/// drop(store);
/// let again: FjallStore<Vec<u8>> = FjallStore::open(dir.path(), &StoreOptions::new("n1", 9_000))?;
/// assert_eq!(again.epoch(), epoch); // the data survived, so the epoch is kept
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FjallStore<V> {
    engine: Engine<FjallBackend, V>,
    path: PathBuf,
}

impl<V: Value> FjallStore<V> {
    /// Opens (or creates) the store in directory `path`.
    ///
    /// Fails if the directory is held by another open store ([`crate::StorageError::Engine`],
    /// "Locked"), belongs to another node ([`crate::StorageError::NodeIdMismatch`]) or cannot
    /// be read or written.
    pub fn open(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let backend = FjallBackend::open(&path, options.disk_reserve_bytes)?;
        Ok(FjallStore {
            engine: Engine::open(backend, options)?,
            path,
        })
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the store uses on disk (journals and tables).
    pub fn disk_space(&self) -> Result<u64> {
        Ok(self.engine.backend().db.disk_space()?)
    }

    /// The free space of the store's disk and the reserve it keeps.
    pub fn free_space(&self) -> Result<FreeSpace> {
        self.engine.backend().free_space()
    }

    /// Changes the free-space reserve ([`StoreOptions::disk_reserve_bytes`]) of the open store.
    pub fn set_disk_reserve(&self, bytes: u64) {
        self.engine
            .backend()
            .reserve
            .store(bytes, Ordering::Relaxed);
    }
}

impl<V> fmt::Debug for FjallStore<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

delegate_store!(FjallStore);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::keys::{META_FORMAT, STORE_FORMAT};
    use crate::store::LocalWrite;
    use dynamo_vclock::VClock;

    fn write(store: &FjallStore<Vec<u8>>, key: &[u8]) -> Result<()> {
        let write = LocalWrite {
            context: &VClock::new(),
            value: b"v".to_vec(),
            now: 1,
        };
        store.update(0, key, write, Durability::Sync).map(|_| ())
    }

    /// Issue 26: a write that fails for want of space poisons fjall for good (every later write
    /// failed with "Poisoned" until a restart). Below the reserve the store refuses writes that
    /// add data with `DiskFull`, keeps taking deletes and node state, and takes writes again
    /// once there is room: the same store, not reopened.
    #[test]
    fn below_its_reserve_a_store_refuses_data_and_recovers_when_room_returns() {
        let dir = tempfile::tempdir().expect("dir");
        let mut options = StoreOptions::new("n1", 1_000);
        options.disk_reserve_bytes = u64::MAX;
        let store: FjallStore<Vec<u8>> = FjallStore::open(dir.path(), &options).expect("open");
        let full = write(&store, b"k");
        assert!(
            matches!(
                full,
                Err(StorageError::DiskFull {
                    reserve: u64::MAX,
                    ..
                })
            ),
            "{full:?}"
        );
        assert!(store.free_space().expect("free").is_full());
        store.save_node_state("ring", b"r").expect("node state");
        let none = dynamo_vclock::DvvSet::empty();
        store
            .remove_if_equal(0, b"k", &none, Durability::Sync)
            .expect("a delete");
        // Room again (the reserve is what decides; a test cannot free a real disk).
        store.set_disk_reserve(0);
        write(&store, b"k").expect("a write once there is room");
        assert_eq!(store.get(0, b"k").expect("get").map(|s| s.len()), Some(1));
    }

    /// Issue 29: a store records its format. One written before formats were recorded (no
    /// format key) opens as format 1 and gets the record; one of a later format is refused
    /// with a message that says what to do, and left as it was.
    #[test]
    fn a_store_records_its_format_and_refuses_a_later_one() {
        let dir = tempfile::tempdir().expect("dir");
        let options = StoreOptions::new("n1", 1_000);
        let meta = |edit: &dyn Fn(&Keyspace)| {
            let db = Database::builder(dir.path()).open().expect("fjall");
            let keyspace = db
                .keyspace(Space::Meta.name(), keyspace_options)
                .expect("meta");
            edit(&keyspace);
            db.persist(PersistMode::SyncAll).expect("persist");
        };
        let format = |dir: &Path| {
            let db = Database::builder(dir).open().expect("fjall");
            let keyspace = db
                .keyspace(Space::Meta.name(), keyspace_options)
                .expect("meta");
            keyspace.get(META_FORMAT).expect("get").map(|v| v.to_vec())
        };
        {
            let store: FjallStore<Vec<u8>> = FjallStore::open(dir.path(), &options).expect("open");
            write(&store, b"k").expect("write");
            store.close().expect("close");
        }
        assert_eq!(
            format(dir.path()),
            Some(STORE_FORMAT.to_be_bytes().to_vec())
        );
        // As a store from before format records.
        meta(&|keyspace| keyspace.remove(META_FORMAT).expect("remove"));
        assert_eq!(format(dir.path()), None);
        {
            let store: FjallStore<Vec<u8>> =
                FjallStore::open(dir.path(), &options).expect("a store without a format opens");
            assert!(store.get(0, b"k").expect("get").is_some());
            store.close().expect("close");
        }
        assert_eq!(
            format(dir.path()),
            Some(STORE_FORMAT.to_be_bytes().to_vec())
        );
        // As a newer build would leave it.
        let later = (STORE_FORMAT + 1).to_be_bytes();
        meta(&|keyspace| keyspace.insert(META_FORMAT, later).expect("insert"));
        let refused = FjallStore::<Vec<u8>>::open(dir.path(), &options).map(|_| ());
        assert!(
            matches!(refused, Err(StorageError::NewerFormat { found, supported })
                if found == STORE_FORMAT + 1 && supported == STORE_FORMAT),
            "{refused:?}"
        );
        let message = refused.expect_err("refused").to_string();
        assert!(message.contains("newer dynamo"), "{message}");
        assert_eq!(format(dir.path()), Some(later.to_vec()), "left as it was");
    }
}
