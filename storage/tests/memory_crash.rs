//! The crash model of `MemoryStore`, for the deterministic cluster simulator (the Dynamo
//! paper, section 6.1: a buffered write trades durability for latency; a durable write, or a
//! later one, makes it safe). `crash` keeps only what a power loss would leave; `wipe` is a
//! lost disk (Riak kv679: a new epoch, so old counters are never reused).

use dynamo_storage::{Durability, LocalWrite, MemoryStore, Store, StoreOptions};
use dynamo_vclock::{Actor, DvvSet, VClock};

const NODE: &str = "node-a";
const T0: u64 = 1_000;

fn options() -> StoreOptions {
    StoreOptions::new(NODE, T0)
}

fn open() -> MemoryStore<Vec<u8>> {
    MemoryStore::open(&options()).expect("open")
}

fn set(value: &[u8]) -> DvvSet<Vec<u8>> {
    DvvSet::new(&Actor::new("node-x#1"), value.to_vec(), T0)
}

fn values(store: &MemoryStore<Vec<u8>>, key: &[u8]) -> Option<Vec<Vec<u8>>> {
    store
        .get(0, key)
        .expect("get")
        .map(|s| s.values().cloned().collect())
}

#[test]
fn a_buffered_write_is_lost_by_a_crash() {
    let store = open();
    store
        .apply(0, b"k", &set(b"v"), Durability::Buffered)
        .expect("apply");
    assert!(values(&store, b"k").is_some(), "readable before the crash");
    let store = store.crash(&options()).expect("crash");
    assert_eq!(values(&store, b"k"), None);
    assert_eq!(store.epoch(), T0, "the epoch is durable");
}

#[test]
fn a_buffered_write_survives_a_plain_reopen() {
    // A process restart on a running machine keeps what was handed to the OS.
    let store = open();
    store
        .apply(0, b"k", &set(b"v"), Durability::Buffered)
        .expect("apply");
    let store = store.reopen(&options()).expect("reopen");
    assert_eq!(values(&store, b"k"), Some(vec![b"v".to_vec()]));
}

#[test]
fn a_later_sync_write_of_another_key_makes_a_buffered_write_durable() {
    let store = open();
    store
        .apply(0, b"buffered", &set(b"1"), Durability::Buffered)
        .expect("apply");
    store
        .apply(0, b"synced", &set(b"2"), Durability::Sync)
        .expect("apply");
    store
        .apply(0, b"after", &set(b"3"), Durability::Buffered)
        .expect("apply");
    let store = store.crash(&options()).expect("crash");
    assert_eq!(values(&store, b"buffered"), Some(vec![b"1".to_vec()]));
    assert_eq!(values(&store, b"synced"), Some(vec![b"2".to_vec()]));
    assert_eq!(
        values(&store, b"after"),
        None,
        "written after the last sync"
    );
}

#[test]
fn sync_writes_flush_and_node_state_survive_a_crash() {
    let store = open();
    store
        .update(
            0,
            b"synced",
            LocalWrite {
                context: &VClock::new(),
                value: b"1".to_vec(),
                now: T0,
            },
            Durability::Sync,
        )
        .expect("update");
    store
        .apply(0, b"flushed", &set(b"2"), Durability::Buffered)
        .expect("apply");
    store.flush().expect("flush");
    store
        .apply(0, b"before-state", &set(b"3"), Durability::Buffered)
        .expect("apply");
    // Saving node state is a durable write too.
    store.save_node_state("ring", b"r1").expect("save");
    let root = store.merkle_root(0).expect("root");
    let store = store.crash(&options()).expect("crash");
    assert_eq!(values(&store, b"synced"), Some(vec![b"1".to_vec()]));
    assert_eq!(values(&store, b"flushed"), Some(vec![b"2".to_vec()]));
    assert_eq!(values(&store, b"before-state"), Some(vec![b"3".to_vec()]));
    assert_eq!(
        store.node_state("ring").expect("read").as_deref(),
        Some(&b"r1"[..])
    );
    assert_eq!(store.merkle_root(0).expect("root"), root);
}

#[test]
fn a_buffered_overwrite_or_reap_is_undone_by_a_crash() {
    let store = open();
    store
        .apply(0, b"k", &set(b"old"), Durability::Sync)
        .expect("apply");
    store
        .apply(0, b"gone", &set(b"x"), Durability::Sync)
        .expect("apply");
    let root = store.merkle_root(0).expect("root");
    store
        .apply(
            0,
            b"k",
            &DvvSet::new(&Actor::new("node-y#1"), b"new".to_vec(), T0),
            Durability::Buffered,
        )
        .expect("apply");
    let gone = store.get(0, b"gone").expect("get").expect("stored");
    assert!(
        store
            .remove_if_equal(0, b"gone", &gone, Durability::Buffered)
            .expect("reap")
    );
    let store = store.crash(&options()).expect("crash");
    assert_eq!(values(&store, b"k"), Some(vec![b"old".to_vec()]));
    assert_eq!(values(&store, b"gone"), Some(vec![b"x".to_vec()]));
    // The tree is rebuilt from what survived, not from what was lost.
    assert_eq!(store.merkle_root(0).expect("root"), root);
    assert_eq!(
        store.merkle_tree(0).expect("tree"),
        store.partition_digest(0).expect("digest").tree
    );
}

#[test]
fn hints_follow_the_same_crash_rules() {
    // Paper section 4.6: a hint put or removal is a write like any other.
    let store = open();
    store
        .put_hint("node-b", 1, b"synced", &set(b"1"), Durability::Sync)
        .expect("hint");
    store
        .put_hint("node-b", 1, b"lost", &set(b"2"), Durability::Buffered)
        .expect("hint");
    store
        .put_hint("node-c", 1, b"k", &set(b"3"), Durability::Buffered)
        .expect("hint");
    assert_eq!(store.pending_hints("node-b").expect("pending"), 2);
    let store = store.crash(&options()).expect("crash");
    let kept: Vec<Vec<u8>> = store
        .hints_for("node-b", 10)
        .expect("hints")
        .into_iter()
        .map(|h| h.key)
        .collect();
    assert_eq!(kept, vec![b"synced".to_vec()]);
    assert_eq!(store.hint_owners().expect("owners"), vec!["node-b"]);

    // A buffered hint followed by a sync hint survives; a buffered removal does not.
    store
        .put_hint("node-c", 1, b"k", &set(b"3"), Durability::Buffered)
        .expect("hint");
    store
        .put_hint("node-d", 1, b"k", &set(b"4"), Durability::Sync)
        .expect("hint");
    assert!(
        store
            .remove_hint_if_covered("node-b", 1, b"synced", &set(b"1"), Durability::Buffered)
            .expect("remove")
    );
    assert_eq!(store.pending_hints("node-b").expect("pending"), 0);
    let store = store.crash(&options()).expect("crash");
    assert_eq!(
        store.hint_owners().expect("owners"),
        vec!["node-b", "node-c", "node-d"]
    );
    assert_eq!(store.pending_hints("node-b").expect("pending"), 1);
}

#[test]
fn a_wipe_gives_an_empty_store_with_a_larger_epoch_and_no_node_state() {
    let store = open();
    store
        .apply(0, b"k", &set(b"v"), Durability::Sync)
        .expect("apply");
    store
        .put_hint("node-b", 0, b"k", &set(b"v"), Durability::Sync)
        .expect("hint");
    store.save_node_state("ring", b"r1").expect("save");
    let old_actor = store.actor();
    let store = store
        .wipe(&StoreOptions::new(NODE, T0 + 5_000))
        .expect("wipe");
    assert_eq!(store.epoch(), T0 + 5_000);
    assert!(store.epoch() > T0);
    assert_ne!(store.actor(), old_actor);
    assert_eq!(values(&store, b"k"), None);
    assert!(store.hint_owners().expect("owners").is_empty());
    assert_eq!(store.node_state("ring").expect("read"), None);
    // The new epoch is durable at once: a crash right after the wipe keeps it.
    let store = store
        .crash(&StoreOptions::new(NODE, T0 + 9_000))
        .expect("crash");
    assert_eq!(store.epoch(), T0 + 5_000);
}

#[test]
fn crashes_are_deterministic() {
    // The same operations and crashes give the same state (the simulator replays seeds).
    let run = || {
        let mut store = open();
        for round in 0u32..4 {
            for i in 0u32..20 {
                let durability = if (i + round) % 7 == 0 {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                store
                    .apply(
                        i % 3,
                        format!("k{i}").as_bytes(),
                        &set(&round.to_le_bytes()),
                        durability,
                    )
                    .expect("apply");
            }
            store = store.crash(&options()).expect("crash");
        }
        (0..3)
            .map(|p| store.scan_partition(p, None, usize::MAX).expect("scan"))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

/// Issue 26 (dot reuse after a power loss): a coordinator's write is visible before it is
/// durable (the write lane applies it buffered and fsyncs a run of writes), so a read, read
/// repair or anti-entropy can copy its dot to other replicas before a power loss takes it here.
/// The next write of the key here must not mint that dot again for another value: replicas
/// would keep whichever came first, answer `Written`, and never converge.
#[test]
fn a_dot_lost_in_a_crash_is_never_minted_again() {
    let store = open();
    let write = |store: &MemoryStore<Vec<u8>>, value: &[u8], durability| {
        let write = LocalWrite {
            context: &VClock::new(),
            value: value.to_vec(),
            now: T0,
        };
        store.update(0, b"k", write, durability).expect("update")
    };
    write(&store, b"durable", Durability::Sync);
    let seen = write(&store, b"lost", Durability::Buffered);
    let dot_of = |set: &DvvSet<Vec<u8>>, wanted: &[u8]| {
        set.iter()
            .find(|(_, _, value)| value.as_slice() == wanted)
            .map(|(actor, counter, _)| (actor.clone(), counter))
            .expect("the write's dot")
    };
    let lost_dot = dot_of(&seen, b"lost");
    // A reader copied `seen` elsewhere; then the power went out.
    let store = store.crash(&options()).expect("crash");
    assert_eq!(values(&store, b"k"), Some(vec![b"durable".to_vec()]));
    let after = write(&store, b"other", Durability::Sync);
    let new_dot = dot_of(&after, b"other");
    assert_ne!(new_dot, lost_dot, "a dot was minted twice");
    // Where the lost write was copied, the new one is a sibling, not silently dropped.
    let elsewhere = seen.sync(&after);
    let mut values: Vec<_> = elsewhere.values().cloned().collect();
    values.sort();
    let expected = [b"durable".to_vec(), b"lost".to_vec(), b"other".to_vec()];
    assert_eq!(values, expected);
}
