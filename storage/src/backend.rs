//! The small ordered key-value interface the versioned store is written against, and its
//! in-memory implementation.
//!
//! Both [`crate::MemoryStore`] and [`crate::FjallStore`] run the same versioning code on top
//! of a backend, so they cannot drift apart. A backend knows bytes, three key spaces, atomic
//! multi-key writes and durability; it must not know version sets, partitions or Merkle trees.
//!
//! The in-memory backend models durability for the deterministic cluster simulator: next to
//! what reads see it keeps a durable copy, what a power loss would leave, which a
//! [`Durability::Sync`] write or a sync brings up to date (fjall's journal is fsynced in
//! order, so a durable write also makes every earlier buffered one durable).

use std::collections::{BTreeMap, BTreeSet};
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
    /// Node id, epoch and node state.
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

/// One ordered map per space.
type Maps = [BTreeMap<Vec<u8>, Vec<u8>>; 3];

/// The state of a [`MemBackend`], under its mutex.
#[derive(Debug, Default)]
struct MemState {
    /// What reads see: every write so far.
    live: Maps,
    /// What survives a power loss: `live` as it was at the last durable write or sync.
    durable: Maps,
    /// Per space, the keys written (put or deleted) since then: where `live` and `durable`
    /// may differ.
    dirty: [BTreeSet<Vec<u8>>; 3],
}

impl MemState {
    /// Makes every write so far durable: copies the dirty keys from `live` to `durable`.
    fn persist(&mut self) {
        for ((live, durable), dirty) in self
            .live
            .iter()
            .zip(self.durable.iter_mut())
            .zip(self.dirty.iter_mut())
        {
            for key in std::mem::take(dirty) {
                match live.get(&key) {
                    Some(value) => {
                        durable.insert(key, value.clone());
                    }
                    None => {
                        durable.remove(&key);
                    }
                }
            }
        }
    }
}

/// Ordered maps under one mutex: deterministic, for tests and the simulation.
///
/// It remembers what a power loss would leave (see the module docs): [`MemBackend::crash`]
/// goes back to that.
#[derive(Debug, Default)]
pub(crate) struct MemBackend {
    state: Mutex<MemState>,
}

impl MemBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A power loss: every write since the last durable write or sync is lost.
    pub(crate) fn crash(&self) {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.live.clone_from(&state.durable);
        state.dirty = Default::default();
    }
}

impl Backend for MemBackend {
    type Bytes = Vec<u8>;
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().live[space.index()].get(key).cloned())
    }

    fn write(&self, ops: &[Op<'_>], durability: Durability) -> Result<()> {
        let mut state = self.lock();
        for op in ops {
            let (space, key) = match *op {
                Op::Put(space, key, value) => {
                    state.live[space.index()].insert(key.to_vec(), value.to_vec());
                    (space, key)
                }
                Op::Delete(space, key) => {
                    state.live[space.index()].remove(key);
                    (space, key)
                }
            };
            state.dirty[space.index()].insert(key.to_vec());
        }
        if durability == Durability::Sync {
            state.persist();
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.lock().persist();
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
        let state = self.lock();
        for (key, value) in state.live[space.index()].range::<[u8], _>((lower, upper)) {
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

    fn all(backend: &MemBackend, space: Space) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        backend
            .scan(space, Bound::Unbounded, Bound::Unbounded, &mut |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(true)
            })
            .expect("scan");
        out
    }

    fn entries(pairs: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    /// Section 6.1 durability, as fjall's journal gives it: a crash keeps exactly the writes
    /// up to the last durable write or sync, in every space, puts and deletes alike.
    #[test]
    fn a_crash_keeps_exactly_the_writes_up_to_the_last_durable_one() {
        use Durability::{Buffered, Sync};
        let b = MemBackend::default();
        b.write(&[Op::Put(Space::Data, b"a", b"1")], Sync)
            .expect("write");
        b.write(&[Op::Put(Space::Data, b"b", b"1")], Buffered)
            .expect("write");
        b.write(&[Op::Delete(Space::Data, b"a")], Buffered)
            .expect("write");
        // A durable write of another space makes the buffered ones durable too.
        b.write(&[Op::Put(Space::Meta, b"m", b"1")], Sync)
            .expect("write");
        // Lost: an overwrite, a delete and a new key in an atomic batch, all buffered.
        b.write(
            &[
                Op::Put(Space::Data, b"b", b"2"),
                Op::Delete(Space::Meta, b"m"),
                Op::Put(Space::Hints, b"h", b"1"),
            ],
            Buffered,
        )
        .expect("write");
        assert_eq!(all(&b, Space::Data), entries(&[(b"b", b"2")]));
        b.crash();
        assert_eq!(all(&b, Space::Data), entries(&[(b"b", b"1")]));
        assert_eq!(all(&b, Space::Meta), entries(&[(b"m", b"1")]));
        assert_eq!(all(&b, Space::Hints), entries(&[]));
        // After a crash, writing goes on from the durable state; sync makes buffered durable.
        b.write(&[Op::Put(Space::Hints, b"h", b"2")], Buffered)
            .expect("write");
        b.sync().expect("sync");
        b.write(&[Op::Put(Space::Hints, b"h", b"3")], Buffered)
            .expect("write");
        b.crash();
        assert_eq!(all(&b, Space::Hints), entries(&[(b"h", b"2")]));
        // A crash with nothing pending changes nothing.
        b.crash();
        assert_eq!(all(&b, Space::Hints), entries(&[(b"h", b"2")]));
        assert_eq!(b.get(Space::Data, b"b").expect("get"), Some(b"1".to_vec()));
    }
}
