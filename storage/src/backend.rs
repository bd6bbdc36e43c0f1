//! The small ordered key-value interface the versioned store is written against, and its
//! in-memory implementation.
//!
//! Both [`crate::MemoryStore`] and [`crate::FjallStore`] run the same versioning code on top
//! of a backend, so they cannot drift apart. A backend knows bytes, three key spaces, atomic
//! multi-key writes and durability; it must not know version sets, partitions or Merkle trees.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use crate::error::Result;
use crate::options::Durability;

/// The three key spaces of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Space {
    /// Version sets of user keys.
    Data,
    /// Hinted-handoff versions held for other nodes.
    Hints,
    /// Node id and epoch.
    Meta,
}

impl Space {
    /// Index into per-space arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Space::Data => 0,
            Space::Hints => 1,
            Space::Meta => 2,
        }
    }

    /// Name used in errors and as the fjall keyspace name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Space::Data => "data",
            Space::Hints => "hints",
            Space::Meta => "meta",
        }
    }
}

/// One write of an atomic batch.
#[derive(Debug)]
pub(crate) enum Op<'a> {
    /// Insert or overwrite.
    Put(Space, &'a [u8], &'a [u8]),
    /// Remove.
    Delete(Space, &'a [u8]),
}

/// Visits `(key, value)` pairs of a scan in key order; returns `false` to stop.
pub(crate) type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// An ordered byte key-value engine with three spaces.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Bytes of a value read (the engine's own buffer type, to avoid a copy).
    type Bytes: std::ops::Deref<Target = [u8]>;
    /// The value stored under `key`.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Self::Bytes>>;
    /// Applies every op atomically (all or none), durable as `durability` asks.
    fn write(&self, ops: &[Op<'_>], durability: Durability) -> Result<()>;
    /// Makes every write so far durable (fsync).
    fn sync(&self) -> Result<()>;
    /// Visits the entries with keys inside the bounds, in key order.
    fn scan(
        &self,
        space: Space,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()>;
}

impl<B: Backend> Backend for std::sync::Arc<B> {
    type Bytes = B::Bytes;
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Self::Bytes>> {
        (**self).get(space, key)
    }
    fn write(&self, ops: &[Op<'_>], durability: Durability) -> Result<()> {
        (**self).write(ops, durability)
    }
    fn sync(&self) -> Result<()> {
        (**self).sync()
    }
    fn scan(
        &self,
        space: Space,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        (**self).scan(space, lower, upper, visit)
    }
}

/// True when no key can lie between the bounds (`BTreeMap::range` panics on those).
pub(crate) fn bounds_empty(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
        _ => false,
    }
}

/// Three `BTreeMap`s under one mutex: deterministic, for tests and the simulation.
#[derive(Debug, Default)]
pub(crate) struct MemBackend {
    spaces: Mutex<[BTreeMap<Vec<u8>, Vec<u8>>; 3]>,
}

impl MemBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, [BTreeMap<Vec<u8>, Vec<u8>>; 3]> {
        self.spaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Backend for MemBackend {
    type Bytes = Vec<u8>;
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock()[space.index()].get(key).cloned())
    }

    fn write(&self, ops: &[Op<'_>], _durability: Durability) -> Result<()> {
        let mut spaces = self.lock();
        for op in ops {
            match *op {
                Op::Put(space, key, value) => {
                    spaces[space.index()].insert(key.to_vec(), value.to_vec());
                }
                Op::Delete(space, key) => {
                    spaces[space.index()].remove(key);
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
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
        let spaces = self.lock();
        for (key, value) in spaces[space.index()].range::<[u8], _>((lower, upper)) {
            if !visit(key, value)? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_bounds_table() {
        use Bound::{Excluded as E, Included as I, Unbounded as U};
        let a: &[u8] = b"a";
        let b: &[u8] = b"b";
        let cases = [
            (I(a), I(a), false),
            (I(a), E(a), true),
            (E(a), I(a), true),
            (E(a), E(b), false),
            (I(b), I(a), true),
            (U, E(a), false),
            (I(b), U, false),
        ];
        for (lower, upper, want) in cases {
            assert_eq!(bounds_empty(lower, upper), want, "{lower:?} {upper:?}");
        }
    }
}
