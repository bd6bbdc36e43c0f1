//! Conformance checks of versions: reads, updates, contexts, applies, races of writers, key
//! incarnations, partition scans and reaping (paper 4.4, Riak's per-key epochs).
//!
//! This module must not know how a store is implemented.

use super::{Bytes, T0, fresh, options, put, sorted, stored, values};
use super::{Context as _, Harness};
use crate::options::Durability;
use crate::store::{Store, incarnation_of};
use dynamo_vclock::{Actor, DvvSet, VClock};

pub(super) fn get_of_a_missing_key_is_none<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn update_makes_a_new_version<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn key_incarnations_are_never_reused<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn update_discards_what_the_context_saw<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn apply_keeps_concurrent_sets_as_siblings<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn apply_is_idempotent_and_keeps_newer_versions<H: Harness>(
    h: &mut H,
) -> Result<(), String> {
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

pub(super) const THREADS: usize = 4;
pub(super) const WRITES_PER_THREAD: usize = 25;

/// No lost update when writes of one key race (atomic read-merge-write).
pub(super) fn racing_updates_of_one_key_lose_nothing<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn racing_applies_of_one_key_lose_nothing<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn partition_scan_returns_exactly_its_keys_in_order<H: Harness>(
    h: &mut H,
) -> Result<(), String> {
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
pub(super) fn reaping_removes_only_an_unchanged_set<H: Harness>(h: &mut H) -> Result<(), String> {
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
