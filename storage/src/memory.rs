//! [`MemoryStore`]: the in-memory [`crate::Store`] for tests and the deterministic simulation.
//!
//! Same versioning code, limits and epoch rules as [`crate::FjallStore`], over ordered maps
//! under a mutex; durability modes are accepted and ignored (memory is as durable as the
//! process). This module must not know the ring, the network or the simulation's scheduler.

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
/// let actor = store.actor();
/// let write = LocalWrite { context: &VClock::new(), actor: &actor, value: "v1".to_string(), now: 1_000 };
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

    /// Closes the store and opens its data again, as a restart that kept its disk: the data,
    /// hints, node id and epoch survive; the Merkle trees are rebuilt lazily.
    pub fn reopen(self, options: &StoreOptions) -> Result<Self> {
        let backend = Arc::clone(self.engine.backend());
        drop(self);
        Ok(MemoryStore {
            engine: Engine::open(backend, options)?,
        })
    }
}

impl<V> fmt::Debug for MemoryStore<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

delegate_store!(MemoryStore);
