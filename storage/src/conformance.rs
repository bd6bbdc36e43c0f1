//! Test support: one conformance suite that every [`Store`] implementation must pass.
//!
//! A [`Harness`] opens, reopens and wipes stores of one implementation; [`run_all`] runs every
//! named check of [`checks`] against it and panics with the list of failed checks. The crate's
//! own tests run it for [`MemoryHarness`] and `FjallHarness`; a new implementation only needs
//! a harness. Values are `Vec<u8>`. This module must not know how a store is implemented.

use std::fmt::Display;
#[cfg(feature = "fjall")]
use std::path::PathBuf;

use dynamo_vclock::{Actor, DvvSet, VClock};

use crate::error::{Result, StorageError};
#[cfg(feature = "fjall")]
use crate::fjall_store::FjallStore;
use crate::keys::{MAX_KEY_BYTES, MAX_NODE_STATE_BYTES, MAX_NODE_STATE_NAME_BYTES};
use crate::memory::MemoryStore;
use crate::options::{Durability, StoreOptions};
use crate::store::{LocalWrite, Store, incarnation_of};

/// The value type of the suite.
pub type Bytes = Vec<u8>;

/// Opens stores of one implementation for the checks.
pub trait Harness {
    /// The implementation under test.
    type Store: Store<Bytes>;

    /// A new, empty store.
    fn open_fresh(&mut self, options: StoreOptions) -> Result<Self::Store>;

    /// Closes `store` and opens its data again (a restart that kept the disk).
    fn reopen(&mut self, store: Self::Store, options: StoreOptions) -> Result<Self::Store>;

    /// Closes `store`, throws its data away and opens an empty store in its place (a replica
    /// that lost its disk).
    fn wipe_and_reopen(
        &mut self,
        store: Self::Store,
        options: StoreOptions,
    ) -> Result<Self::Store> {
        drop(store);
        self.open_fresh(options)
    }
}

/// Harness for [`MemoryStore`].
#[derive(Debug, Default)]
pub struct MemoryHarness;

impl Harness for MemoryHarness {
    type Store = MemoryStore<Bytes>;

    fn open_fresh(&mut self, options: StoreOptions) -> Result<Self::Store> {
        MemoryStore::open(&options)
    }

    fn reopen(&mut self, store: Self::Store, options: StoreOptions) -> Result<Self::Store> {
        store.reopen(&options)
    }

    fn wipe_and_reopen(
        &mut self,
        store: Self::Store,
        options: StoreOptions,
    ) -> Result<Self::Store> {
        store.wipe(&options)
    }
}

/// Harness for [`FjallStore`]: every fresh store gets a new directory under `base`.
#[cfg(feature = "fjall")]
#[derive(Debug)]
pub struct FjallHarness {
    base: PathBuf,
    next: u32,
}

#[cfg(feature = "fjall")]
impl FjallHarness {
    /// Stores go in numbered directories under `base` (for example a temporary directory).
    pub fn new(base: impl Into<PathBuf>) -> Self {
        FjallHarness {
            base: base.into(),
            next: 0,
        }
    }
}

#[cfg(feature = "fjall")]
impl Harness for FjallHarness {
    type Store = FjallStore<Bytes>;

    fn open_fresh(&mut self, options: StoreOptions) -> Result<Self::Store> {
        self.next += 1;
        FjallStore::open(self.base.join(format!("store-{}", self.next)), &options)
    }

    fn reopen(&mut self, store: Self::Store, options: StoreOptions) -> Result<Self::Store> {
        let path = store.path().to_path_buf();
        drop(store);
        FjallStore::open(path, &options)
    }

    fn wipe_and_reopen(
        &mut self,
        store: Self::Store,
        options: StoreOptions,
    ) -> Result<Self::Store> {
        let path = store.path().to_path_buf();
        drop(store);
        std::fs::remove_dir_all(&path)?;
        FjallStore::open(path, &options)
    }
}

/// One named check.
pub struct Check<H> {
    /// What it checks (and the paper section or behaviour it is about).
    pub name: &'static str,
    /// Runs the check; `Err` explains the failure.
    pub run: fn(&mut H) -> Result<(), String>,
}

/// Every check of the suite.
pub fn checks<H: Harness>() -> Vec<Check<H>> {
    macro_rules! check {
        ($f:ident) => {
            Check {
                name: stringify!($f),
                run: $f::<H>,
            }
        };
    }
    vec![
        check!(get_of_a_missing_key_is_none),
        check!(update_makes_a_new_version),
        check!(update_discards_what_the_context_saw),
        check!(key_incarnations_are_never_reused),
        check!(apply_keeps_concurrent_sets_as_siblings),
        check!(apply_is_idempotent_and_keeps_newer_versions),
        check!(racing_updates_of_one_key_lose_nothing),
        check!(racing_applies_of_one_key_lose_nothing),
        check!(partition_scan_returns_exactly_its_keys_in_order),
        check!(reaping_removes_only_an_unchanged_set),
        check!(hints_are_listed_per_owner),
        check!(hints_are_removed_only_when_covered),
        check!(oversized_keys_and_values_are_rejected),
        check!(merkle_tree_equals_a_rebuild_after_writes),
        check!(a_tree_built_while_writes_race_equals_a_rebuild),
        check!(data_hints_and_trees_survive_a_reopen),
        check!(epoch_is_kept_on_reopen_and_new_after_a_wipe),
        check!(another_nodes_store_is_refused),
        check!(sync_and_buffered_writes_are_both_readable),
        check!(node_state_round_trips_and_is_overwritten),
        check!(node_state_survives_a_reopen_but_not_a_wipe),
        check!(bad_node_state_names_and_oversized_state_are_rejected),
    ]
}

/// Runs every check against `harness`; panics listing the failed ones.
pub fn run_all<H: Harness>(harness: &mut H) {
    let mut failed = Vec::new();
    for check in checks::<H>() {
        if let Err(message) = (check.run)(harness) {
            failed.push(format!("{}: {message}", check.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} conformance check(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

const NODE: &str = "node-a";
const T0: u64 = 1_000_000;

fn options() -> StoreOptions {
    StoreOptions::new(NODE, T0)
}

trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// A set holding one new version of `value` written by `actor` with an empty context.
fn fresh(actor: &str, value: &[u8]) -> DvvSet<Bytes> {
    DvvSet::new(&Actor::new(actor), value.to_vec(), T0)
}

/// The sorted sibling values of a set.
fn values(set: &DvvSet<Bytes>) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = set.values().cloned().collect();
    out.sort();
    out
}

fn sorted(values: &[&[u8]]) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = values.iter().map(|v| v.to_vec()).collect();
    out.sort();
    out
}

/// The coordinator's write of `value` with `context`, as the store's actor (buffered, to keep
/// the suite fast; durability has its own checks and the crash test).
fn put<S: Store<Bytes>>(
    store: &S,
    partition: u32,
    key: &[u8],
    context: &VClock,
    value: &[u8],
) -> Result<DvvSet<Bytes>> {
    store.update(
        partition,
        key,
        LocalWrite {
            context,
            value: value.to_vec(),
            now: T0,
        },
        Durability::Buffered,
    )
}

fn stored<S: Store<Bytes>>(store: &S, partition: u32, key: &[u8]) -> Result<DvvSet<Bytes>, String> {
    store
        .get(partition, key)
        .ctx("get")?
        .ok_or_else(|| format!("key {key:?} of partition {partition} is missing"))
}

// ---------------------------------------------------------------------------------------------
// Checks

fn get_of_a_missing_key_is_none<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    ensure!(
        store.get(0, b"nope").ctx("get")?.is_none(),
        "missing key returned a set"
    );
    put(&store, 0, b"k", &VClock::new(), b"v").ctx("update")?;
    ensure!(
        store.get(1, b"k").ctx("get")?.is_none(),
        "a key is visible from another partition"
    );
    // Applying an empty set (a replica that holds nothing) creates no key.
    store
        .apply(2, b"empty", &DvvSet::empty(), Durability::Sync)
        .ctx("apply empty")?;
    ensure!(
        store.get(2, b"empty").ctx("get")?.is_none(),
        "an empty set created a key"
    );
    ensure!(
        store.scan_partition(2, None, 10).ctx("scan")?.is_empty(),
        "an empty set is visible to scans"
    );
    Ok(())
}

/// Paper section 4.4: the coordinator makes a new version.
fn update_makes_a_new_version<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let returned = put(&store, 3, b"k", &VClock::new(), b"v1").ctx("update")?;
    let got = stored(&store, 3, b"k")?;
    ensure!(
        got == returned,
        "update returned {returned:?}, get gives {got:?}"
    );
    ensure!(
        values(&got) == sorted(&[b"v1"]),
        "values {:?}",
        values(&got)
    );
    ensure!(
        writers(&store, &got) == vec![(1, 1)],
        "one incarnation of the store's actor should have counter 1 in {:?}",
        got.context()
    );
    Ok(())
}

/// `(incarnation, counter)` of every key incarnation of the store's actor in `set`'s history.
fn writers<S: Store<Bytes>>(store: &S, set: &DvvSet<Bytes>) -> Vec<(u64, u64)> {
    let base = store.actor();
    set.context()
        .iter()
        .filter_map(|(actor, entry)| Some((incarnation_of(&base, actor)?, entry.counter)))
        .collect()
}

/// The incarnation that made the newest dot of the store's actor in `set`.
fn writer<S: Store<Bytes>>(store: &S, set: &DvvSet<Bytes>) -> Result<u64, String> {
    writers(store, set)
        .into_iter()
        .map(|(incarnation, _)| incarnation)
        .max()
        .ok_or_else(|| format!("no incarnation of {} in {:?}", store.actor(), set.context()))
}

/// Riak kv679 at the key level: a store that coordinates a key it holds no usable history of
/// (never written here, reaped, its copy dropped after a handoff, or a context showing dots the
/// store has not seen) starts a new key incarnation, so it never mints a dot again; with the
/// history at hand it continues the key's incarnation. Incarnations survive a reopen.
fn key_incarnations_are_never_reused<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let mut seen = Vec::new();
    let mut fresh = |incarnation: u64, case: &str| {
        let new = !seen.contains(&incarnation);
        seen.push(incarnation);
        if new {
            Ok(())
        } else {
            Err(format!(
                "{case}: incarnation {incarnation} was handed out before"
            ))
        }
    };
    let a1 = put(&store, 0, b"a", &VClock::new(), b"1").ctx("put a")?;
    fresh(writer(&store, &a1)?, "first write of a")?;
    let a2 = put(&store, 0, b"a", &a1.context(), b"2").ctx("put a again")?;
    ensure!(
        writers(&store, &a2) == vec![(writer(&store, &a1)?, 2)],
        "a second write of a key continues its incarnation: {:?}",
        a2.context()
    );
    let b1 = put(&store, 0, b"b", &VClock::new(), b"1").ctx("put b")?;
    fresh(writer(&store, &b1)?, "another key")?;
    // Reaped: the history is gone, so the next write starts over under a new incarnation.
    ensure!(
        store
            .remove_if_equal(0, b"a", &a2, Durability::Buffered)
            .ctx("reap")?,
        "reap refused"
    );
    let a3 = put(&store, 0, b"a", &VClock::new(), b"3").ctx("put a after reap")?;
    fresh(writer(&store, &a3)?, "write after a reap")?;
    // Retired: b's incarnation is not continued even though b's history is here.
    store.retire_actors(0).ctx("retire")?;
    let b2 = put(&store, 0, b"b", &b1.context(), b"2").ctx("put b after retire")?;
    fresh(writer(&store, &b2)?, "write after retiring the partition")?;
    ensure!(
        values(&b2) == sorted(&[b"2"]),
        "the context still replaces what it saw: {:?}",
        values(&b2)
    );
    // Another partition is not retired.
    let c1 = put(&store, 1, b"c", &VClock::new(), b"1").ctx("put c")?;
    let c2 = put(&store, 1, b"c", &c1.context(), b"2").ctx("put c again")?;
    ensure!(
        writer(&store, &c2)? == writer(&store, &c1)?,
        "retiring partition 0 changed partition 1's writer"
    );
    // A context that saw more of the incarnation than the store holds: amnesia, start over.
    let mut ahead = c2.context();
    let c_actor = crate::store::key_actor(&store.actor(), writer(&store, &c2)?);
    ahead.increment(&c_actor, T0);
    let c3 = put(&store, 1, b"c", &ahead, b"3").ctx("put c with a context ahead")?;
    fresh(
        writer(&store, &c3)?,
        "write with a context ahead of the store",
    )?;
    // A reopen hands out only incarnations never handed out before.
    let store = h.reopen(store, options()).ctx("reopen")?;
    let d1 = put(&store, 1, b"d", &VClock::new(), b"1").ctx("put d after reopen")?;
    fresh(writer(&store, &d1)?, "write after a reopen")?;
    let b3 = put(&store, 0, b"b", &b2.context(), b"3").ctx("put b after reopen")?;
    ensure!(
        writer(&store, &b3)? == writer(&store, &b2)?,
        "the retirement floor moved across the reopen"
    );
    Ok(())
}

/// Paper section 4.4: a write with a context replaces exactly what the context saw.
fn update_discards_what_the_context_saw<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let first = put(&store, 0, b"k", &VClock::new(), b"v1").ctx("update")?;
    let second = put(&store, 0, b"k", &first.context(), b"v2").ctx("update")?;
    ensure!(
        values(&second) == sorted(&[b"v2"]),
        "v1 not replaced: {:?}",
        values(&second)
    );
    // A blind write (empty context) is concurrent with v2 and becomes a sibling.
    let third = put(&store, 0, b"k", &VClock::new(), b"v3").ctx("update")?;
    ensure!(
        values(&third) == sorted(&[b"v2", b"v3"]),
        "blind write should be a sibling: {:?}",
        values(&third)
    );
    // A write that read both siblings replaces both.
    let fourth = put(&store, 0, b"k", &third.context(), b"v4").ctx("update")?;
    ensure!(
        values(&fourth) == sorted(&[b"v4"]),
        "siblings not merged: {:?}",
        values(&fourth)
    );
    Ok(())
}

/// Paper section 4.4: replicas keep concurrent versions side by side.
fn apply_keeps_concurrent_sets_as_siblings<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let a = fresh("x", b"from-x");
    let b = fresh("y", b"from-y");
    let first = store.apply(0, b"k", &a, Durability::Sync).ctx("apply a")?;
    ensure!(first == a, "first apply should store the incoming set");
    let merged = store.apply(0, b"k", &b, Durability::Sync).ctx("apply b")?;
    ensure!(
        values(&merged) == sorted(&[b"from-x", b"from-y"]),
        "siblings {:?}",
        values(&merged)
    );
    ensure!(
        stored(&store, 0, b"k")? == merged,
        "get differs from the returned set"
    );
    Ok(())
}

/// `DvvSet::sync` is a join: applying twice changes nothing and an older set never wins.
fn apply_is_idempotent_and_keeps_newer_versions<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let old = fresh("x", b"old");
    let newer = old
        .clone()
        .updated(&old.context(), &Actor::new("x"), b"new".to_vec(), T0 + 1);
    store
        .apply(0, b"k", &newer, Durability::Sync)
        .ctx("apply newer")?;
    let after_old = store
        .apply(0, b"k", &old, Durability::Sync)
        .ctx("apply old")?;
    ensure!(
        values(&after_old) == sorted(&[b"new"]),
        "old version came back: {:?}",
        values(&after_old)
    );
    let again = store
        .apply(0, b"k", &newer, Durability::Sync)
        .ctx("apply again")?;
    ensure!(again == after_old, "apply is not idempotent");
    Ok(())
}

const THREADS: usize = 4;
const WRITES_PER_THREAD: usize = 25;

/// No lost update when writes of one key race (atomic read-merge-write).
fn racing_updates_of_one_key_lose_nothing<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    race_writers(|t, i| {
        let value = format!("t{t}-{i}");
        put(&store, 5, b"hot", &VClock::new(), value.as_bytes())
            .map(drop)
            .ctx("update")
    })?;
    let set = stored(&store, 5, b"hot")?;
    ensure!(
        set.values().count() == THREADS * WRITES_PER_THREAD,
        "{} siblings after {} blind writes",
        set.values().count(),
        THREADS * WRITES_PER_THREAD
    );
    Ok(())
}

/// Runs `write(thread, i)` for `i` in `0..WRITES_PER_THREAD` on `THREADS` threads at once;
/// the first error (or a panicked thread) fails the check.
fn race_writers(write: impl Fn(usize, usize) -> Result<(), String> + Sync) -> Result<(), String> {
    std::thread::scope(|scope| {
        let write = &write;
        let handles: Vec<_> = (0..THREADS)
            .map(|t| scope.spawn(move || (0..WRITES_PER_THREAD).try_for_each(|i| write(t, i))))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err("writer thread panicked".into()))
        })
    })
}

/// No lost update when replica writes (applies) of one key race.
fn racing_applies_of_one_key_lose_nothing<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    race_writers(|t, i| {
        let set = fresh(&format!("w{t}-{i}"), b"v");
        store
            .apply(5, b"hot", &set, Durability::Buffered)
            .map(drop)
            .ctx("apply")
    })?;
    let set = stored(&store, 5, b"hot")?;
    ensure!(
        set.values().count() == THREADS * WRITES_PER_THREAD,
        "{} siblings after {} concurrent applies",
        set.values().count(),
        THREADS * WRITES_PER_THREAD
    );
    Ok(())
}

/// A ring partition is one range scan (handoff and anti-entropy walk partitions).
fn partition_scan_returns_exactly_its_keys_in_order<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let partitions = [0, 1, 2, 255, 256, u32::MAX];
    let keys: [&[u8]; 7] = [b"m", b"a", b"", b"zz", b"b\x00", b"b", b"\xff\xff"];
    for &p in &partitions {
        for key in keys {
            put(&store, p, key, &VClock::new(), &p.to_be_bytes()).ctx("update")?;
        }
    }
    let mut want: Vec<Bytes> = keys.iter().map(|k| k.to_vec()).collect();
    want.sort();
    for &p in &partitions {
        let all = store.scan_partition(p, None, usize::MAX).ctx("scan")?;
        let got: Vec<Bytes> = all.iter().map(|(k, _)| k.clone()).collect();
        ensure!(got == want, "partition {p}: keys {got:?}, want {want:?}");
        for (key, set) in &all {
            ensure!(
                values(set) == vec![p.to_be_bytes().to_vec()],
                "partition {p} key {key:?} holds another partition's value"
            );
        }
        // Paging with `after` visits the same keys once each.
        let mut paged = Vec::new();
        let mut after: Option<Bytes> = None;
        loop {
            let page = store
                .scan_partition(p, after.as_deref(), 3)
                .ctx("scan page")?;
            let done = page.len() < 3;
            paged.extend(page.into_iter().map(|(k, _)| k));
            after = paged.last().cloned();
            if done {
                break;
            }
        }
        ensure!(paged == want, "partition {p}: paged scan {paged:?}");
    }
    ensure!(
        store.scan_partition(3, None, 10).ctx("scan")?.is_empty(),
        "empty partition has keys"
    );
    ensure!(
        store.scan_partition(1, None, 0).ctx("scan")?.is_empty(),
        "limit 0 returned keys"
    );
    Ok(())
}

/// Tombstone reaping must never delete a write that raced the reaper.
fn reaping_removes_only_an_unchanged_set<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let tomb = put(&store, 9, b"k", &VClock::new(), b"tombstone").ctx("update")?;
    let checked = stored(&store, 9, b"k")?;
    // A write races the reaper after it checked the set.
    put(&store, 9, b"k", &VClock::new(), b"racing").ctx("update")?;
    ensure!(
        !store
            .remove_if_equal(9, b"k", &checked, Durability::Sync)
            .ctx("remove")?,
        "removed a set that changed after the check"
    );
    ensure!(
        stored(&store, 9, b"k")?.values().count() == 2,
        "racing write lost"
    );
    let current = stored(&store, 9, b"k")?;
    ensure!(
        store
            .remove_if_equal(9, b"k", &current, Durability::Sync)
            .ctx("remove")?,
        "did not remove an unchanged set"
    );
    ensure!(
        store.get(9, b"k").ctx("get")?.is_none(),
        "key still present after reaping"
    );
    ensure!(
        !store
            .remove_if_equal(9, b"k", &tomb, Durability::Sync)
            .ctx("remove")?,
        "removed a missing key"
    );
    ensure!(
        store.scan_partition(9, None, 10).ctx("scan")?.is_empty(),
        "scan still sees the key"
    );
    Ok(())
}

/// Paper section 4.6: hinted handoff keeps versions per intended owner.
fn hints_are_listed_per_owner<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let d = Durability::Sync;
    store
        .put_hint("node-b", 2, b"k2", &fresh("x", b"1"), d)
        .ctx("hint")?;
    store
        .put_hint("node-b", 1, b"k9", &fresh("x", b"2"), d)
        .ctx("hint")?;
    store
        .put_hint("node-c", 1, b"k1", &fresh("x", b"3"), d)
        .ctx("hint")?;
    store
        .put_hint("node-b", 1, b"k1", &fresh("x", b"4"), d)
        .ctx("hint")?;
    // A hint for the same (owner, key) merges: concurrent versions become siblings.
    store
        .put_hint("node-b", 1, b"k1", &fresh("y", b"5"), d)
        .ctx("hint")?;
    // A prefix of another owner's id must not collide.
    store
        .put_hint("node-bb", 1, b"k1", &fresh("x", b"6"), d)
        .ctx("hint")?;

    let owners = store.hint_owners().ctx("owners")?;
    ensure!(
        owners == ["node-b", "node-bb", "node-c"],
        "owners {owners:?}"
    );
    let b = store.hints_for("node-b", 100).ctx("hints")?;
    let listed: Vec<(u32, Bytes)> = b.iter().map(|h| (h.partition, h.key.clone())).collect();
    ensure!(
        listed
            == [
                (1, b"k1".to_vec()),
                (1, b"k9".to_vec()),
                (2, b"k2".to_vec())
            ],
        "node-b hints {listed:?}"
    );
    ensure!(
        values(&b[0].versions) == sorted(&[b"4", b"5"]),
        "hint not merged: {:?}",
        values(&b[0].versions)
    );
    ensure!(
        store.pending_hints("node-b").ctx("pending")? == 3,
        "pending for node-b"
    );
    ensure!(
        store.pending_hints("node-c").ctx("pending")? == 1,
        "pending for node-c"
    );
    ensure!(
        store.pending_hints("node-d").ctx("pending")? == 0,
        "pending for node-d"
    );
    ensure!(
        store.hints_for("node-b", 2).ctx("hints")?.len() == 2,
        "limit ignored"
    );
    // A key's hints for every owner join into what a fallback answers reads with (the hints
    // above reuse dot x:1, so the join holds x:1 once, next to y:1 and z:1).
    store
        .put_hint("node-c", 1, b"k1", &fresh("z", b"7"), d)
        .ctx("hint")?;
    let hinted = store
        .hinted(1, b"k1")
        .ctx("hinted")?
        .ok_or("no hinted versions")?;
    let joined = values(&hinted);
    ensure!(
        joined.len() == 3 && joined.contains(&b"5".to_vec()) && joined.contains(&b"7".to_vec()),
        "hinted {joined:?}"
    );
    ensure!(
        store.hinted(1, b"nothing").ctx("hinted")?.is_none(),
        "hinted versions of a key nobody hinted"
    );
    ensure!(
        store.hinted(2, b"k1").ctx("hinted")?.is_none(),
        "hinted versions from another partition"
    );
    // Hints are not data.
    ensure!(
        store.get(1, b"k1").ctx("get")?.is_none(),
        "a hint is visible as data"
    );
    ensure!(
        store.merkle_tree(1).ctx("tree")?.root() == dynamo_merkle::NodeHash::EMPTY,
        "a hint entered the tree"
    );
    Ok(())
}

/// A hint is dropped only after the owner acknowledged every version in it.
fn hints_are_removed_only_when_covered<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let d = Durability::Sync;
    let first = fresh("x", b"1");
    store.put_hint("node-b", 4, b"k", &first, d).ctx("hint")?;
    // The hint is sent; meanwhile a newer concurrent version arrives for the same owner.
    let sent = store.hints_for("node-b", 10).ctx("hints")?;
    let later = fresh("y", b"2");
    store.put_hint("node-b", 4, b"k", &later, d).ctx("hint")?;
    // The owner acknowledges what it was sent: not enough.
    ensure!(
        !store
            .remove_hint_if_covered("node-b", 4, b"k", &sent[0].versions, d)
            .ctx("remove")?,
        "removed a hint holding an unacknowledged version"
    );
    ensure!(
        !store
            .remove_hint_if_covered("node-b", 4, b"k", &DvvSet::empty(), d)
            .ctx("remove")?,
        "an empty acknowledgement removed the hint"
    );
    // The owner's set after it applied everything (plus its own newer write) covers the hint.
    let mut owner_set = first.sync(&later);
    owner_set.update(
        &owner_set.context(),
        &Actor::new("node-b"),
        b"3".to_vec(),
        T0,
    );
    ensure!(
        store
            .remove_hint_if_covered("node-b", 4, b"k", &owner_set, d)
            .ctx("remove")?,
        "a covered hint was kept"
    );
    ensure!(
        store.pending_hints("node-b").ctx("pending")? == 0,
        "hint still pending"
    );
    ensure!(
        store.hint_owners().ctx("owners")?.is_empty(),
        "owner still listed"
    );
    ensure!(
        !store
            .remove_hint_if_covered("node-b", 4, b"k", &owner_set, d)
            .ctx("remove")?,
        "removed a missing hint"
    );
    Ok(())
}

/// Bad input is an error, never a panic nor a half-written key.
fn oversized_keys_and_values_are_rejected<H: Harness>(h: &mut H) -> Result<(), String> {
    const LIMIT: usize = 1024;
    let store = h
        .open_fresh(options().with_max_value_bytes(LIMIT))
        .ctx("open")?;
    ensure!(store.max_value_bytes() == LIMIT, "limit not applied");
    let d = Durability::Sync;
    let long_key = vec![b'k'; 64 * 1024 + 1];
    let longest_key = vec![b'k'; MAX_KEY_BYTES];
    let too_long = |r: Result<(), StorageError>, what: &str| match r {
        Err(StorageError::KeyTooLarge { .. }) => Ok(()),
        other => Err(format!("{what} with a long key gave {other:?}")),
    };
    too_long(
        put(&store, 0, &long_key, &VClock::new(), b"v").map(drop),
        "update",
    )?;
    too_long(
        store.apply(0, &long_key, &fresh("x", b"v"), d).map(drop),
        "apply",
    )?;
    too_long(store.get(0, &long_key).map(drop), "get")?;
    too_long(
        store.put_hint("node-b", 0, &long_key, &fresh("x", b"v"), d),
        "put_hint",
    )?;
    too_long(
        put(
            &store,
            0,
            &vec![b'k'; MAX_KEY_BYTES + 1],
            &VClock::new(),
            b"v",
        )
        .map(drop),
        "update at limit + 1",
    )?;
    put(&store, 0, &longest_key, &VClock::new(), b"v").ctx("update with the longest key")?;
    store
        .put_hint("node-b", 0, &longest_key, &fresh("x", b"v"), d)
        .ctx("hint with the longest key")?;

    // Vec<u8> of n bytes encodes to n + varint(n) bytes: 2 bytes of length here.
    let fits = vec![7u8; LIMIT - 2];
    let big = vec![7u8; LIMIT];
    put(&store, 1, b"fits", &VClock::new(), &fits).ctx("update at the limit")?;
    let too_big = |r: Result<DvvSet<Bytes>, StorageError>, what: &str| match r {
        Err(StorageError::ValueTooLarge { len, max }) if len > max && max == LIMIT => Ok(()),
        other => Err(format!(
            "{what} with a big value gave {:?}",
            other.map(|s| s.values().count())
        )),
    };
    too_big(put(&store, 1, b"big", &VClock::new(), &big), "update")?;
    too_big(store.apply(1, b"big", &fresh("x", &big), d), "apply")?;
    // A set with one small and one big sibling is refused as a whole.
    too_big(
        store.apply(1, b"big", &fresh("x", b"small").sync(&fresh("y", &big)), d),
        "apply of a mixed set",
    )?;
    match store.put_hint("node-b", 1, b"big", &fresh("x", &big), d) {
        Err(StorageError::ValueTooLarge { .. }) => {}
        other => return Err(format!("put_hint with a big value gave {other:?}")),
    }
    ensure!(
        store.get(1, b"big").ctx("get")?.is_none(),
        "a rejected write left a key behind"
    );
    ensure!(
        store.pending_hints("node-b").ctx("pending")? == 1,
        "a rejected hint was kept"
    );
    match store.put_hint("", 1, b"k", &fresh("x", b"v"), d) {
        Err(StorageError::InvalidNodeId { .. }) => {}
        other => return Err(format!("empty owner id gave {other:?}")),
    }
    Ok(())
}

/// Paper section 4.7: the kept Merkle trees always equal a rebuild from a scan.
fn merkle_tree_equals_a_rebuild_after_writes<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let empty = store.merkle_tree(1).ctx("tree")?;
    ensure!(
        empty.root() == dynamo_merkle::NodeHash::EMPTY,
        "empty partition has a non-empty root"
    );
    let d = Durability::Buffered;
    for i in 0u32..200 {
        let key = format!("key-{}", i % 70);
        let p = i % 3;
        match i % 5 {
            0 | 1 => {
                put(&store, p, key.as_bytes(), &VClock::new(), &i.to_le_bytes()).ctx("update")?;
            }
            2 => {
                store
                    .apply(p, key.as_bytes(), &fresh(&format!("r{i}"), b"r"), d)
                    .ctx("apply")?;
            }
            3 => {
                let ctx = store
                    .get(p, key.as_bytes())
                    .ctx("get")?
                    .map(|s| s.context())
                    .unwrap_or_default();
                put(&store, p, key.as_bytes(), &ctx, b"replace").ctx("update")?;
            }
            _ => {
                if let Some(set) = store.get(p, key.as_bytes()).ctx("get")? {
                    store
                        .remove_if_equal(p, key.as_bytes(), &set, d)
                        .ctx("remove")?;
                }
            }
        }
        if i == 60 {
            // Partition 0's tree is built mid-stream; partition 2's only at the end.
            store.merkle_tree(0).ctx("tree")?;
        }
    }
    for p in 0..3 {
        let kept = store.merkle_tree(p).ctx("tree")?;
        let digest = store.partition_digest(p).ctx("digest")?;
        ensure!(
            kept == digest.tree,
            "partition {p}: kept tree differs from a rebuild"
        );
        ensure!(
            store.merkle_root(p).ctx("root")? == digest.tree.root(),
            "partition {p}: root"
        );
        ensure!(
            kept.root() != dynamo_merkle::NodeHash::EMPTY,
            "partition {p}: empty root after writes"
        );
        let shape = kept.shape();
        for (key, _) in store.scan_partition(p, None, 5).ctx("scan")? {
            let segment = shape.segment_of(&key);
            let mut listed = store.segment_entries(p, segment).ctx("segment")?;
            let mut want = dynamo_merkle::SegmentSource::segment_entries(&digest.index, segment);
            listed.sort();
            want.sort();
            ensure!(
                listed == want,
                "partition {p} segment {segment}: entries differ"
            );
            ensure!(
                listed.iter().any(|e| e.key == key),
                "segment {segment} misses {key:?}"
            );
        }
    }
    // Replicas with the same versions have equal trees; one more sibling changes the root.
    let twin = h
        .open_fresh(StoreOptions::new("node-z", T0))
        .ctx("open twin")?;
    for (key, set) in store.scan_partition(1, None, usize::MAX).ctx("scan")? {
        twin.apply(1, &key, &set, d).ctx("apply to twin")?;
    }
    ensure!(
        twin.merkle_root(1).ctx("root")? == store.merkle_root(1).ctx("root")?,
        "twin root differs"
    );
    twin.apply(1, b"key-1", &fresh("extra", b"x"), d)
        .ctx("apply")?;
    ensure!(
        twin.merkle_root(1).ctx("root")? != store.merkle_root(1).ctx("root")?,
        "extra sibling not seen"
    );
    Ok(())
}

/// The lazy tree build and concurrent writes of the same partition must not miss or double
/// count a write.
fn a_tree_built_while_writes_race_equals_a_rebuild<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..2u32)
            .map(|t| {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..60u32 {
                        let key = format!("k{}", (i * 7 + t) % 40);
                        put(store, 7, key.as_bytes(), &VClock::new(), &i.to_le_bytes())
                            .ctx("update")?;
                    }
                    Ok(())
                })
            })
            .collect();
        let reader = scope.spawn(|| {
            for _ in 0..20 {
                store.merkle_tree(7).ctx("tree")?;
            }
            Ok(())
        });
        writers
            .into_iter()
            .chain(std::iter::once(reader))
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    let kept = store.merkle_tree(7).ctx("tree")?;
    let rebuilt = store.partition_digest(7).ctx("digest")?.tree;
    ensure!(
        kept == rebuilt,
        "tree built during writes differs from a rebuild"
    );
    Ok(())
}

/// A restart that keeps the disk loses nothing.
fn data_hints_and_trees_survive_a_reopen<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    for i in 0u32..50 {
        let d = if i % 2 == 0 {
            Durability::Sync
        } else {
            Durability::Buffered
        };
        store
            .apply(
                i % 4,
                format!("k{i}").as_bytes(),
                &fresh("x", &i.to_le_bytes()),
                d,
            )
            .ctx("apply")?;
    }
    store
        .put_hint("node-b", 1, b"h", &fresh("x", b"hint"), Durability::Sync)
        .ctx("hint")?;
    let roots: Vec<_> = (0..4)
        .map(|p| store.merkle_root(p))
        .collect::<Result<_>>()
        .ctx("roots")?;
    let store = h.reopen(store, options()).ctx("reopen")?;
    for i in 0u32..50 {
        let set = stored(&store, i % 4, format!("k{i}").as_bytes())?;
        ensure!(
            values(&set) == vec![i.to_le_bytes().to_vec()],
            "k{i} changed across reopen"
        );
    }
    ensure!(
        store.pending_hints("node-b").ctx("pending")? == 1,
        "hint lost across reopen"
    );
    let again: Vec<_> = (0..4)
        .map(|p| store.merkle_root(p))
        .collect::<Result<_>>()
        .ctx("roots")?;
    ensure!(roots == again, "roots changed across reopen");
    Ok(())
}

/// Riak kv679: a replica that lost its data must not reuse its old vclock counters.
fn epoch_is_kept_on_reopen_and_new_after_a_wipe<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    ensure!(
        store.epoch() == T0,
        "fresh epoch {} != now_ms {T0}",
        store.epoch()
    );
    ensure!(store.node_id() == NODE, "node id {}", store.node_id());
    ensure!(
        store.actor() == Actor::new(format!("{NODE}#{T0}")),
        "actor {}",
        store.actor()
    );
    put(&store, 0, b"k", &VClock::new(), b"v").ctx("update")?;
    let store = h
        .reopen(store, StoreOptions::new(NODE, T0 + 5_000))
        .ctx("reopen")?;
    ensure!(
        store.epoch() == T0,
        "epoch changed on a reopen with data: {}",
        store.epoch()
    );
    let store = h
        .wipe_and_reopen(store, StoreOptions::new(NODE, T0 + 9_000))
        .ctx("wipe")?;
    ensure!(
        store.epoch() == T0 + 9_000,
        "epoch after a wipe: {}",
        store.epoch()
    );
    ensure!(store.epoch() > T0, "epoch did not increase after a wipe");
    ensure!(
        store.actor() != Actor::new(format!("{NODE}#{T0}")),
        "actor reused after a wipe"
    );
    ensure!(store.get(0, b"k").ctx("get")?.is_none(), "wipe kept data");
    let zero = h.open_fresh(StoreOptions::new(NODE, 0)).ctx("open at 0")?;
    ensure!(
        zero.epoch() == 1,
        "epoch at time 0 should be 1, got {}",
        zero.epoch()
    );
    Ok(())
}

/// Opening another node's data directory would mix two replicas.
fn another_nodes_store_is_refused<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    match h.reopen(store, StoreOptions::new("node-other", T0)) {
        Err(StorageError::NodeIdMismatch { stored, requested }) => {
            ensure!(
                stored == NODE && requested == "node-other",
                "mismatch fields"
            );
        }
        Err(other) => return Err(format!("wrong error {other}")),
        Ok(_) => return Err("opened another node's store".into()),
    }
    match h.open_fresh(StoreOptions::new("", T0)) {
        Err(StorageError::InvalidNodeId { .. }) => Ok(()),
        other => Err(format!("empty node id gave {:?}", other.map(|s| s.epoch()))),
    }
}

/// Paper section 6.1: buffered writes are readable at once; flush makes them durable.
fn sync_and_buffered_writes_are_both_readable<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    store
        .apply(0, b"s", &fresh("x", b"sync"), Durability::Sync)
        .ctx("sync apply")?;
    store
        .apply(0, b"b", &fresh("x", b"buffered"), Durability::Buffered)
        .ctx("buffered apply")?;
    store.flush().ctx("flush")?;
    ensure!(
        values(&stored(&store, 0, b"s")?) == sorted(&[b"sync"]),
        "sync write"
    );
    ensure!(
        values(&stored(&store, 0, b"b")?) == sorted(&[b"buffered"]),
        "buffered write"
    );
    ensure!(
        Durability::default() == Durability::Sync,
        "default durability is not sync"
    );
    Ok(())
}

/// The node keeps its ring, bucket table and status as named state: what was saved is read
/// back, a save replaces the previous one, and a name never saved reads as `None`.
fn node_state_round_trips_and_is_overwritten<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    ensure!(
        store.node_state("ring").ctx("read")?.is_none(),
        "a new store has node state"
    );
    store.save_node_state("ring", b"ring v1").ctx("save")?;
    store.save_node_state("buckets", b"table").ctx("save")?;
    ensure!(
        store.node_state("ring").ctx("read")?.as_deref() == Some(&b"ring v1"[..]),
        "ring not read back"
    );
    store.save_node_state("ring", b"ring v2").ctx("overwrite")?;
    ensure!(
        store.node_state("ring").ctx("read")?.as_deref() == Some(&b"ring v2"[..]),
        "ring not overwritten"
    );
    ensure!(
        store.node_state("buckets").ctx("read")?.as_deref() == Some(&b"table"[..]),
        "an overwrite of one name changed another"
    );
    ensure!(
        store.node_state("status").ctx("read")?.is_none(),
        "a name never saved has state"
    );
    // Empty state is still state, distinct from none; a prefix of a name is another name.
    store.save_node_state("status", b"").ctx("save empty")?;
    ensure!(
        store.node_state("status").ctx("read")?.as_deref() == Some(&b""[..]),
        "empty state not read back"
    );
    ensure!(
        store.node_state("rin").ctx("read")?.is_none(),
        "a prefix of a name has state"
    );
    // Names live apart from the store's own metadata, and from data and hints.
    store.save_node_state("epoch", b"x").ctx("save")?;
    store.save_node_state("node_id", b"y").ctx("save")?;
    ensure!(
        store.node_state("epoch").ctx("read")?.as_deref() == Some(&b"x"[..]),
        "state named epoch not read back"
    );
    let longest = "n".repeat(MAX_NODE_STATE_NAME_BYTES);
    store
        .save_node_state(&longest, b"z")
        .ctx("save longest name")?;
    ensure!(
        store.node_state(&longest).ctx("read")?.as_deref() == Some(&b"z"[..]),
        "state under the longest name not read back"
    );
    let store = h
        .reopen(store, StoreOptions::new(NODE, T0 + 1_000))
        .ctx("reopen")?;
    ensure!(
        store.epoch() == T0 && store.node_id() == NODE,
        "node state named epoch or node_id changed the metadata: {} {}",
        store.node_id(),
        store.epoch()
    );
    ensure!(
        store.get(0, b"ring").ctx("get")?.is_none()
            && store.hint_owners().ctx("owners")?.is_empty(),
        "node state is visible as data or hints"
    );
    Ok(())
}

/// A node reloads its ring at start (it must not forget the ring it adopted), but a node that
/// lost its disk starts over with none, like its epoch (Riak kv679).
fn node_state_survives_a_reopen_but_not_a_wipe<H: Harness>(h: &mut H) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    store.save_node_state("ring", b"ring v1").ctx("save")?;
    store.save_node_state("ring", b"ring v2").ctx("overwrite")?;
    store.save_node_state("status", b"alive").ctx("save")?;
    let store = h.reopen(store, options()).ctx("reopen")?;
    ensure!(
        store.node_state("ring").ctx("read")?.as_deref() == Some(&b"ring v2"[..]),
        "ring lost or stale across reopen"
    );
    ensure!(
        store.node_state("status").ctx("read")?.as_deref() == Some(&b"alive"[..]),
        "status lost across reopen"
    );
    let store = h
        .wipe_and_reopen(store, StoreOptions::new(NODE, T0 + 9_000))
        .ctx("wipe")?;
    ensure!(
        store.node_state("ring").ctx("read")?.is_none()
            && store.node_state("status").ctx("read")?.is_none(),
        "node state survived a lost disk"
    );
    Ok(())
}

/// Bad input is an error, never a panic: names are 1 to 64 bytes, state at most 16 MiB, and
/// a refused save writes nothing.
fn bad_node_state_names_and_oversized_state_are_rejected<H: Harness>(
    h: &mut H,
) -> Result<(), String> {
    let store = h.open_fresh(options()).ctx("open")?;
    let too_long = "n".repeat(MAX_NODE_STATE_NAME_BYTES + 1);
    // 33 two-byte characters: 66 bytes, though only 33 characters.
    let too_long_utf8 = "é".repeat(33);
    for name in ["", too_long.as_str(), too_long_utf8.as_str()] {
        match store.save_node_state(name, b"v") {
            Err(StorageError::InvalidStateName { .. }) => {}
            other => return Err(format!("save under {name:?} gave {other:?}")),
        }
        match store.node_state(name) {
            Err(StorageError::InvalidStateName { .. }) => {}
            other => return Err(format!("read of {name:?} gave {other:?}")),
        }
    }
    let message = store
        .save_node_state("", b"v")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(
        message.contains("node state name") && message.contains("empty"),
        "unclear message {message:?}"
    );

    store.save_node_state("ring", b"small").ctx("save")?;
    let big = vec![0u8; MAX_NODE_STATE_BYTES + 1];
    match store.save_node_state("ring", &big) {
        Err(StorageError::NodeStateTooLarge { len, max, .. })
            if len == MAX_NODE_STATE_BYTES + 1 && max == MAX_NODE_STATE_BYTES => {}
        other => return Err(format!("oversized state gave {other:?}")),
    }
    ensure!(
        store.node_state("ring").ctx("read")?.as_deref() == Some(&b"small"[..]),
        "a refused save changed the state"
    );
    let largest = vec![7u8; MAX_NODE_STATE_BYTES];
    store
        .save_node_state("ring", &largest)
        .ctx("save at the limit")?;
    ensure!(
        store.node_state("ring").ctx("read")?.as_deref() == Some(largest.as_slice()),
        "state at the limit not read back"
    );
    Ok(())
}
