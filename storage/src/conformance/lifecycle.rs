//! Conformance checks of what surrounds the versions: hints (paper 4.6), size limits, Merkle
//! trees equal to a rebuild (4.7), reopening, epochs, and node state.
//!
//! This module must not know how a store is implemented.

use super::{Bytes, NODE, T0, fresh, options, put, sorted, stored, values};
use super::{Context as _, Harness};
use crate::error::{Result, StorageError};
use crate::keys::{MAX_KEY_BYTES, MAX_NODE_STATE_BYTES, MAX_NODE_STATE_NAME_BYTES};
use crate::options::{Durability, StoreOptions};
use crate::store::Store;
use dynamo_vclock::{Actor, DvvSet, VClock};

/// Paper section 4.6: hinted handoff keeps versions per intended owner.
pub(super) fn hints_are_listed_per_owner<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn hints_are_removed_only_when_covered<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn oversized_keys_and_values_are_rejected<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn merkle_tree_equals_a_rebuild_after_writes<H: Harness>(
    h: &mut H,
) -> Result<(), String> {
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
pub(super) fn a_tree_built_while_writes_race_equals_a_rebuild<H: Harness>(
    h: &mut H,
) -> Result<(), String> {
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
pub(super) fn data_hints_and_trees_survive_a_reopen<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn epoch_is_kept_on_reopen_and_new_after_a_wipe<H: Harness>(
    h: &mut H,
) -> Result<(), String> {
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
pub(super) fn another_nodes_store_is_refused<H: Harness>(h: &mut H) -> Result<(), String> {
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
pub(super) fn sync_and_buffered_writes_are_both_readable<H: Harness>(
    h: &mut H,
) -> Result<(), String> {
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
pub(super) fn node_state_round_trips_and_is_overwritten<H: Harness>(
    h: &mut H,
) -> Result<(), String> {
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
pub(super) fn node_state_survives_a_reopen_but_not_a_wipe<H: Harness>(
    h: &mut H,
) -> Result<(), String> {
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
pub(super) fn bad_node_state_names_and_oversized_state_are_rejected<H: Harness>(
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
