//! Dotted version vector set tests: laws against a simple model, and the sibling-explosion
//! scenario of paper §4.4 (clients doing read-modify-write with stale contexts).

use std::collections::{BTreeMap, BTreeSet};

use dynamo_vclock::{Actor, DvvSet, Entry, VClock};
use proptest::prelude::*;

/// The model: the set of seen dots (per actor, a downward-closed counter) and the live values
/// keyed by dot. Obviously correct, and far from the compact representation under test.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    seen: BTreeMap<String, u64>,
    alive: BTreeMap<(String, u64), u32>,
}

impl Model {
    fn seen(&self, actor: &str) -> u64 {
        self.seen.get(actor).copied().unwrap_or(0)
    }

    /// Discard every live dot the context covers, record the context, add a fresh dot.
    fn update(&mut self, context: &BTreeMap<String, u64>, actor: &str, value: u32) {
        self.alive
            .retain(|(a, c), _| *c > context.get(a).copied().unwrap_or(0));
        for (a, c) in context {
            let s = self.seen.entry(a.clone()).or_default();
            *s = (*s).max(*c);
        }
        let n = self.seen(actor) + 1;
        self.seen.insert(actor.to_owned(), n);
        self.alive.insert((actor.to_owned(), n), value);
    }

    /// A dot survives if each side still has it or has never seen it.
    fn sync(&self, other: &Model) -> Model {
        let mut seen = self.seen.clone();
        for (a, c) in &other.seen {
            let s = seen.entry(a.clone()).or_default();
            *s = (*s).max(*c);
        }
        let keeps =
            |m: &Model, dot: &(String, u64)| m.alive.contains_key(dot) || dot.1 > m.seen(&dot.0);
        let alive = self
            .alive
            .iter()
            .chain(&other.alive)
            .filter(|(dot, _)| keeps(self, dot) && keeps(other, dot))
            .map(|(dot, v)| (dot.clone(), *v))
            .collect();
        Model { seen, alive }
    }
}

fn observe(set: &DvvSet<u32>) -> Model {
    Model {
        seen: set
            .context()
            .iter()
            .map(|(a, e)| (a.to_string(), e.counter))
            .collect(),
        alive: set
            .iter()
            .map(|(a, c, v)| ((a.to_string(), c), *v))
            .collect(),
    }
}

fn to_clock(ctx: &BTreeMap<String, u64>) -> VClock {
    ctx.iter()
        .map(|(a, c)| {
            (
                a.as_str(),
                Entry {
                    counter: *c,
                    timestamp: 0,
                },
            )
        })
        .collect()
}

const REPLICAS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// A client reads replica `r` and remembers the context.
    Read(usize),
    /// A client writes through coordinator `r` with a remembered (possibly stale) context.
    Write(usize, prop::sample::Index),
    /// Anti-entropy / read repair: replica `to` syncs with replica `from` (paper §4.7).
    Sync(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..REPLICAS).prop_map(Op::Read),
        (0..REPLICAS, any::<prop::sample::Index>()).prop_map(|(r, i)| Op::Write(r, i)),
        (0..REPLICAS, 0..REPLICAS).prop_map(|(a, b)| Op::Sync(a, b)),
    ]
}

/// Runs a history, checking every replica against the model after every step.
fn run(ops: &[Op]) -> Result<Vec<(DvvSet<u32>, Model)>, TestCaseError> {
    let actors: Vec<Actor> = (0..REPLICAS).map(|i| Actor::new(format!("r{i}"))).collect();
    let mut replicas: Vec<(DvvSet<u32>, Model)> =
        vec![(DvvSet::empty(), Model::default()); REPLICAS];
    let mut reads: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new()];
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Read(r) => reads.push(replicas[*r].1.seen.clone()),
            Op::Write(r, i) => {
                let ctx = &reads[i.index(reads.len())];
                let value = step as u32;
                let (set, model) = &mut replicas[*r];
                set.update(&to_clock(ctx), &actors[*r], value, step as u64);
                model.update(ctx, actors[*r].as_str(), value);
            }
            Op::Sync(from, to) => {
                let set = replicas[*to].0.sync(&replicas[*from].0);
                let model = replicas[*to].1.sync(&replicas[*from].1);
                replicas[*to] = (set, model);
            }
        }
        for (set, model) in &replicas {
            prop_assert_eq!(&observe(set), model, "after {:?}", op);
            prop_assert_eq!(set.len(), model.alive.len());
        }
    }
    Ok(replicas)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// update discards exactly what the context saw and sync keeps exactly the union minus the
    /// dominated, for any interleaving of reads, writes and syncs.
    #[test]
    fn matches_model(ops in prop::collection::vec(op(), 0..40)) {
        run(&ops)?;
    }

    /// sync is commutative, associative and idempotent on reachable states, and agrees with
    /// the model's join; compare/descends follow the contexts.
    #[test]
    fn sync_laws(ops in prop::collection::vec(op(), 0..40)) {
        let replicas = run(&ops)?;
        let (a, b, c) = (&replicas[0].0, &replicas[1].0, &replicas[2].0);
        prop_assert_eq!(a.sync(b), b.sync(a));
        prop_assert_eq!(a.sync(b).sync(c), a.sync(&b.sync(c)));
        prop_assert_eq!(a.sync(a), a.clone());
        prop_assert_eq!(observe(&a.sync(b)), replicas[0].1.sync(&replicas[1].1));
        let joined = a.sync(b);
        prop_assert!(joined.descends(a) && joined.descends(b));
        prop_assert_eq!(a.less(&joined), !a.descends(b));
        prop_assert_eq!(a.compare(b), a.context().compare(&b.context()));
    }

    /// A set from a peer survives serialization; damaged bytes are errors, not panics.
    #[test]
    fn serde_round_trip(ops in prop::collection::vec(op(), 0..30), noise in prop::collection::vec(any::<u8>(), 0..48)) {
        let replicas = run(&ops)?;
        for (set, _) in &replicas {
            let bytes = postcard::to_stdvec(set).unwrap();
            prop_assert_eq!(&postcard::from_bytes::<DvvSet<u32>>(&bytes).unwrap(), set);
        }
        if let Ok(set) = postcard::from_bytes::<DvvSet<u32>>(&noise) {
            // Whatever decodes satisfies the invariants, so the operations stay total.
            let _ = set.sync(&replicas[0].0).context();
        }
    }
}

/// Paper §4.4 / Riak "sibling explosion": two clients each read, then write back with the
/// context they read, interleaved so each write misses the other client's latest write.
/// With dotted version vectors each write discards exactly what its writer saw: 2 siblings.
#[test]
fn interleaved_read_modify_write_keeps_two_siblings_one_coordinator() {
    let coordinator = Actor::from("node-a");
    let mut store: DvvSet<u32> = DvvSet::empty();
    let mut read = [VClock::new(), VClock::new()];
    for i in 0..100_u32 {
        let client = (i % 2) as usize;
        store.update(&read[client], &coordinator, i, u64::from(i));
        read[client] = store.context(); // the client reads again right after its write
        assert_eq!(store.len(), if i == 0 { 1 } else { 2 }, "after write {i}");
    }
    let values: BTreeSet<u32> = store.values().copied().collect();
    assert_eq!(values, BTreeSet::from([98, 99]));
    // Only the coordinator's dots: the clock does not grow with the number of clients.
    assert_eq!(store.context().len(), 1);
    assert_eq!(store.context().get(&coordinator), 100);
}

/// Same scenario with each client going through a different coordinator; the two replicas
/// replicate (sync) after every write.
#[test]
fn interleaved_read_modify_write_keeps_two_siblings_two_coordinators() {
    let coordinators = [Actor::from("node-a"), Actor::from("node-b")];
    let mut stores: [DvvSet<u32>; 2] = [DvvSet::empty(), DvvSet::empty()];
    let mut read = [VClock::new(), VClock::new()];
    for i in 0..100_u32 {
        let c = (i % 2) as usize;
        stores[c].update(&read[c], &coordinators[c], i, u64::from(i));
        stores[1 - c] = stores[1 - c].sync(&stores[c]);
        read[c] = stores[c].context();
        assert_eq!(stores[0], stores[1]);
        assert_eq!(
            stores[c].len(),
            if i == 0 { 1 } else { 2 },
            "after write {i}"
        );
    }
    let values: BTreeSet<u32> = stores[0].values().copied().collect();
    assert_eq!(values, BTreeSet::from([98, 99]));
}

/// For contrast: one vector clock per object, with the coordinator as actor (Dynamo's
/// server-side clocks without dots). A write whose context does not descend the stored clock
/// must keep every stored value as a sibling, so the same workload piles them up.
#[test]
fn plain_vclock_per_object_explodes() {
    let coordinator = Actor::from("node-a");
    let mut clock = VClock::new();
    let mut values: Vec<u32> = Vec::new();
    let mut read = [VClock::new(), VClock::new()];
    for i in 0..100_u32 {
        let c = (i % 2) as usize;
        if read[c].descends(&clock) {
            values.clear();
        }
        values.push(i);
        clock.merge(&read[c]);
        clock.increment(&coordinator, u64::from(i));
        read[c] = clock.clone();
    }
    assert_eq!(values.len(), 100, "every stale write became a sibling");
}

/// Tombstones are values: a delete with the full context leaves a single tombstone that
/// later syncs propagate, and a concurrent write survives it as a sibling.
#[test]
fn tombstones_are_values() {
    #[derive(Clone, Debug, PartialEq)]
    enum V {
        Put(&'static str),
        Deleted,
    }
    let (a, b) = (Actor::from("a"), Actor::from("b"));
    let base = DvvSet::new(&a, V::Put("x"), 1);
    let deleted = base.clone().updated(&base.context(), &a, V::Deleted, 2);
    assert_eq!(deleted.values().collect::<Vec<_>>(), [&V::Deleted]);
    let concurrent = base.clone().updated(&base.context(), &b, V::Put("y"), 3);
    let merged = deleted.sync(&concurrent);
    assert_eq!(merged.len(), 2);
    assert!(merged.values().any(|v| *v == V::Deleted));
    assert!(merged.values().any(|v| *v == V::Put("y")));
}
