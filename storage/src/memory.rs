//! [`MemoryStore`]: the in-memory [`crate::Store`] for tests and the deterministic simulation.
//!
//! Same versioning code, limits and epoch rules as [`crate::FjallStore`], over ordered maps
//! under a mutex.
//!
//! # Crash model
//!
//! For the deterministic whole-cluster simulator, the store remembers what would survive a
//! power loss, as fjall does: a [`crate::Durability::Sync`] write, [`crate::Store::flush`]
//! and [`crate::Store::save_node_state`] make every write so far durable (the write itself
//! and every earlier [`crate::Durability::Buffered`] one, as fjall's in-order journal does);
//! buffered writes made since the last of those are lost by a crash. To know this the store
//! keeps a durable copy of its maps next to the ones reads see, so it may use up to twice the
//! memory; that copy exists only for the simulator. Three ways to restart:
//!
//! * [`MemoryStore::reopen`]: the process restarts and the machine kept running, so every
//!   write survives (fjall's buffered writes are in the operating system by then);
//! * [`MemoryStore::crash`]: the machine lost power, only the durable writes survive;
//! * [`MemoryStore::wipe`]: the disk is lost, the store opens empty with a new epoch.
//!
//! This module must not know the ring, the network or the simulation's scheduler.

use std::fmt;
use std::sync::Arc;

use crate::backend::MemBackend;
use crate::engine::{Engine, delegate_store};
use crate::error::Result;
use crate::options::StoreOptions;
use crate::store::Value;

/// An in-memory store. Deterministic: same operations, same results.
///
/// ```
/// use dynamo_storage::{Durability, LocalWrite, MemoryStore, Store, StoreOptions};
/// use dynamo_vclock::VClock;
///
/// let store: MemoryStore<String> = MemoryStore::open(&StoreOptions::new("n1", 1_000))?;
/// let write = LocalWrite { context: &VClock::new(), value: "v1".to_string(), now: 1_000 };
/// store.update(7, b"cart", write, Durability::Sync)?;
/// let set = store.get(7, b"cart")?.expect("stored");
/// assert_eq!(set.values().collect::<Vec<_>>(), vec![&"v1".to_string()]);
/// # Ok::<(), dynamo_storage::StorageError>(())
/// ```
pub struct MemoryStore<V> {
    engine: Engine<Arc<MemBackend>, V>,
}

impl<V: Value> MemoryStore<V> {
    /// A new, empty store; its epoch is `max(options.now_ms, 1)`.
    pub fn open(options: &StoreOptions) -> Result<Self> {
        Ok(MemoryStore {
            engine: Engine::open(Arc::new(MemBackend::default()), options)?,
        })
    }

    /// Closes the store and opens its data again, as a restart of the process on a machine
    /// that kept running: every write (buffered ones too), the hints, node state, node id and
    /// epoch survive; the Merkle trees are rebuilt lazily.
    pub fn reopen(self, options: &StoreOptions) -> Result<Self> {
        let backend = Arc::clone(self.engine.backend());
        drop(self);
        Ok(MemoryStore {
            engine: Engine::open(backend, options)?,
        })
    }

    /// Closes the store as a power loss would and opens what is left: like
    /// [`MemoryStore::reopen`], but only the durable writes survive. A
    /// [`crate::Durability::Buffered`] write (data, hint or removal) made after the last
    /// [`crate::Durability::Sync`] write, [`crate::Store::flush`] or
    /// [`crate::Store::save_node_state`] is lost. The node id, epoch and node state are
    /// always durable, so they survive.
    ///
    /// ```
    /// use dynamo_storage::{Durability, MemoryStore, Store, StoreOptions};
    /// use dynamo_vclock::{Actor, DvvSet};
    ///
    /// let options = StoreOptions::new("n1", 1_000);
    /// let store: MemoryStore<String> = MemoryStore::open(&options)?;
    /// let set = DvvSet::new(&Actor::new("n2#5"), "v".to_string(), 1_000);
    /// store.apply(3, b"kept", &set, Durability::Sync)?;
    /// store.apply(3, b"lost", &set, Durability::Buffered)?;
    /// let store = store.crash(&options)?;
    /// assert!(store.get(3, b"kept")?.is_some());
    /// assert!(store.get(3, b"lost")?.is_none());
    /// # Ok::<(), dynamo_storage::StorageError>(())
    /// ```
    pub fn crash(self, options: &StoreOptions) -> Result<Self> {
        let backend = Arc::clone(self.engine.backend());
        drop(self);
        backend.crash();
        Ok(MemoryStore {
            engine: Engine::open(backend, options)?,
        })
    }

    /// Closes the store and throws its data away, as a replica that lost its disk: the new
    /// store is empty (no data, hints or node state) and, by the epoch rule, takes
    /// `max(options.now_ms, 1)` as its epoch. Pass a time later than the old epoch (as a
    /// real clock would give) so that the node writes under a new actor.
    pub fn wipe(self, options: &StoreOptions) -> Result<Self> {
        drop(self);
        Self::open(options)
    }
}

impl<V> fmt::Debug for MemoryStore<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

delegate_store!(MemoryStore);
