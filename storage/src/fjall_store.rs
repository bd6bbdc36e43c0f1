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

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::backend::{Backend, Op, Space, Visitor, bounds_empty};
use crate::engine::{Engine, delegate_store};
use crate::error::Result;
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

/// The fjall backend: a database and its three keyspaces.
pub(crate) struct FjallBackend {
    db: Database,
    spaces: [Keyspace; 3],
    group: GroupCommit,
}

impl FjallBackend {
    fn open(path: &Path) -> Result<Self> {
        let db = Database::builder(path).open()?;
        let open = |space: Space| {
            db.keyspace(space.name(), || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
        };
        let spaces = [open(Space::Data)?, open(Space::Hints)?, open(Space::Meta)?];
        Ok(FjallBackend {
            db,
            spaces,
            group: GroupCommit::default(),
        })
    }

    /// Makes every write buffered so far durable, in one fsync shared with concurrent callers.
    fn durable(&self) -> Result<()> {
        let ticket = self.group.written();
        self.group
            .wait_durable(ticket, || self.db.persist(PersistMode::SyncAll))?;
        Ok(())
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
        let backend = FjallBackend::open(&path)?;
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
}

impl<V> fmt::Debug for FjallStore<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

delegate_store!(FjallStore);
