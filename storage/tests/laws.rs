//! Property tests: both stores behave like a plain map of DVV sets under random operations, and
//! their Merkle trees always equal a rebuild from a scan (the Dynamo paper, sections 4.4 and
//! 4.7).

use std::collections::BTreeMap;

use std::collections::HashMap;

use dynamo_storage::{
    Durability, FjallStore, LocalWrite, MemoryStore, Store, StoreOptions, incarnation_of, key_actor,
};
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
    /// Retiring the partition's key incarnations (before dropping handed-off copies).
    Retire { p: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PARTITIONS;
    let k = 0u8..4;
    prop_oneof![
        3 => (p.clone(), k.clone(), any::<u8>(), any::<bool>())
            .prop_map(|(p, k, value, read_first)| Op::Update { p, k, value, read_first }),
        2 => (p.clone(), k.clone(), any::<u8>(), any::<bool>())
            .prop_map(|(p, k, value, read_first)| Op::Apply { p, k, value, read_first }),
        1 => (p.clone(), k, any::<bool>()).prop_map(|(p, k, current)| Op::Remove { p, k, current }),
        1 => p.prop_map(|p| Op::Retire { p }),
    ]
}

type Model = BTreeMap<(u32, Vec<u8>), DvvSet<Vec<u8>>>;

/// The model of key incarnations (`Store::update`'s documented rule): continue the newest own
/// incarnation the stored set has unless it is retired in the partition or the context saw
/// more of it; otherwise hand out the next one.
#[derive(Debug)]
struct Incarnations {
    base: Actor,
    next: u64,
    floors: HashMap<u32, u64>,
}

impl Incarnations {
    fn writer(&mut self, p: u32, stored: &DvvSet<Vec<u8>>, context: &VClock) -> Actor {
        let floor = self.floors.get(&p).copied().unwrap_or(0);
        let continued = stored
            .context()
            .iter()
            .filter(|(actor, entry)| context.get(actor) <= entry.counter)
            .filter_map(|(actor, _)| incarnation_of(&self.base, actor))
            .filter(|&n| n >= floor)
            .max();
        let incarnation = continued.unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        key_actor(&self.base, incarnation)
    }
}

fn check_against_model<S: Store<Vec<u8>>>(store: &S, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    let mut incarnations = Incarnations {
        base: store.actor(),
        next: 1,
        floors: HashMap::new(),
    };
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
                let actor = incarnations.writer(p, &current, &context);
                let want = current.updated(&context, &actor, vec![value], i as u64);
                let write = LocalWrite {
                    context: &context,
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
            Op::Retire { p } => {
                store.retire_actors(p).expect("retire");
                incarnations.floors.insert(p, incarnations.next);
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
