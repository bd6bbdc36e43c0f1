//! Property tests: both stores behave like a plain map of DVV sets under random operations, and
//! their Merkle trees always equal a rebuild from a scan (the Dynamo paper, sections 4.4 and
//! 4.7).

use std::collections::BTreeMap;

use dynamo_storage::{Durability, FjallStore, LocalWrite, MemoryStore, Store, StoreOptions};
use dynamo_vclock::{Actor, DvvSet, VClock};
use proptest::prelude::*;

const PARTITIONS: u32 = 3;

#[derive(Clone, Debug)]
enum Op {
    /// A coordinator write, with the current context or a blind one.
    Update {
        p: u32,
        k: u8,
        value: u8,
        read_first: bool,
    },
    /// A replica write from another coordinator that read the current set (or nothing).
    Apply {
        p: u32,
        k: u8,
        value: u8,
        read_first: bool,
    },
    /// Reaping with the current set (succeeds) or a stale one (must not).
    Remove { p: u32, k: u8, current: bool },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PARTITIONS;
    let k = 0u8..4;
    prop_oneof![
        3 => (p.clone(), k.clone(), any::<u8>(), any::<bool>())
            .prop_map(|(p, k, value, read_first)| Op::Update { p, k, value, read_first }),
        2 => (p.clone(), k.clone(), any::<u8>(), any::<bool>())
            .prop_map(|(p, k, value, read_first)| Op::Apply { p, k, value, read_first }),
        1 => (p, k, any::<bool>()).prop_map(|(p, k, current)| Op::Remove { p, k, current }),
    ]
}

type Model = BTreeMap<(u32, Vec<u8>), DvvSet<Vec<u8>>>;

fn check_against_model<S: Store<Vec<u8>>>(store: &S, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    // Partition 0's tree is kept from the start; the others are built lazily at the end.
    store.merkle_tree(0).expect("tree");
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Update {
                p,
                k,
                value,
                read_first,
            } => {
                let key = (p, vec![k]);
                let current = model.get(&key).cloned().unwrap_or_default();
                let context = if read_first {
                    current.context()
                } else {
                    VClock::new()
                };
                let actor = store.actor();
                let want = current.updated(&context, &actor, vec![value], i as u64);
                let write = LocalWrite {
                    context: &context,
                    actor: &actor,
                    value: vec![value],
                    now: i as u64,
                };
                let got = store
                    .update(p, &key.1, write, Durability::Buffered)
                    .expect("update");
                prop_assert_eq!(&got, &want);
                model.insert(key, want);
            }
            Op::Apply {
                p,
                k,
                value,
                read_first,
            } => {
                let key = (p, vec![k]);
                let current = model.get(&key).cloned().unwrap_or_default();
                let base = if read_first {
                    current.clone()
                } else {
                    DvvSet::empty()
                };
                let seen = base.context();
                let incoming =
                    base.updated(&seen, &Actor::new(format!("r{i}")), vec![value], i as u64);
                let want = current.sync(&incoming);
                let got = store
                    .apply(p, &key.1, &incoming, Durability::Buffered)
                    .expect("apply");
                prop_assert_eq!(&got, &want);
                model.insert(key, want);
            }
            Op::Remove { p, k, current } => {
                let key = (p, vec![k]);
                let held = model.get(&key).cloned();
                let expected = match (&held, current) {
                    (Some(set), true) => set.clone(),
                    (Some(set), false) => {
                        set.clone()
                            .updated(&VClock::new(), &Actor::new("stale"), vec![], 0)
                    }
                    (None, _) => DvvSet::empty(),
                };
                let removed = store
                    .remove_if_equal(p, &key.1, &expected, Durability::Buffered)
                    .expect("remove");
                prop_assert_eq!(removed, held.is_some() && current);
                if removed {
                    model.remove(&key);
                }
            }
        }
    }
    for p in 0..PARTITIONS {
        let scanned = store.scan_partition(p, None, usize::MAX).expect("scan");
        let want: Vec<(Vec<u8>, DvvSet<Vec<u8>>)> = model
            .iter()
            .filter(|((mp, _), _)| *mp == p)
            .map(|((_, k), s)| (k.clone(), s.clone()))
            .collect();
        prop_assert_eq!(scanned, want);
        let kept = store.merkle_tree(p).expect("tree");
        prop_assert_eq!(kept, store.partition_digest(p).expect("digest").tree);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn memory_store_is_a_map_of_dvv_sets(ops in proptest::collection::vec(op(), 1..60)) {
        let store: MemoryStore<Vec<u8>> = MemoryStore::open(&StoreOptions::new("n", 1)).expect("open");
        check_against_model(&store, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn fjall_store_is_a_map_of_dvv_sets(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: FjallStore<Vec<u8>> = FjallStore::open(dir.path(), &StoreOptions::new("n", 1)).expect("open");
        check_against_model(&store, &ops)?;
    }
}
