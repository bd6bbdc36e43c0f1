//! Cost of a diff session between two replicas of 1,000,000 keys that differ in 100 keys
//! (Dynamo paper section 4.7), next to the naive cost of sending every key's hash.
//! Prints the figures once, then times the session with criterion.
#![allow(missing_docs)]

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use dynamo_merkle::{
    DiffOutcome, KeyIndex, MerkleTree, TreeShape, diff_in_memory, key_hash, naive_exchange_bytes,
};

const KEYS: u32 = 1_000_000;
const DIFFERING: u32 = 100;

fn key(i: u32) -> Vec<u8> {
    format!("user:{i:08}").into_bytes()
}

fn state(i: u32, version: u32) -> Vec<u8> {
    // Stand-in for a serialized sibling set with its clocks.
    format!("[{{clock:[(node-a,{version}),(node-b,{i})],value:cart-{i}}}]").into_bytes()
}

struct Replica {
    tree: MerkleTree,
    index: KeyIndex,
}

impl Replica {
    fn set(&mut self, k: &[u8], s: Option<&[u8]>) {
        let new = s.map(|s| key_hash(k, s));
        let old = self.index.set(k, new);
        self.tree.update(k, old, new);
    }
}

/// Replica A holds keys 0..KEYS; B starts as a copy, then 100 keys differ: a third updated,
/// a third missing on B, a third only on B.
fn replicas(shape: TreeShape) -> (Replica, Replica, BTreeSet<Vec<u8>>) {
    let mut index = KeyIndex::new(shape);
    for i in 0..KEYS {
        let k = key(i);
        index.set(&k, Some(key_hash(&k, &state(i, 1))));
    }
    let tree = MerkleTree::from_entries(shape, index.iter());
    let a = Replica {
        tree: tree.clone(),
        index: index.clone(),
    };
    let mut b = Replica { tree, index };
    let mut changed = BTreeSet::new();
    let stride = KEYS / DIFFERING;
    for n in 0..DIFFERING {
        let i = n * stride + 7;
        let k = key(i);
        match n % 3 {
            0 => b.set(&k, Some(&state(i, 2))),
            1 => b.set(&k, None),
            _ => {
                let extra = key(KEYS + n);
                b.set(&extra, Some(&state(KEYS + n, 1)));
                changed.insert(extra);
                continue;
            }
        }
        changed.insert(k);
    }
    (a, b, changed)
}

fn run(a: &Replica, b: &Replica) -> DiffOutcome {
    diff_in_memory(&a.tree, &a.index, &b.tree, &b.index).expect("diff session")
}

fn report(shape: TreeShape, a: &Replica, b: &Replica, changed: &BTreeSet<Vec<u8>>) {
    let started = Instant::now();
    let outcome = run(a, b);
    let elapsed = started.elapsed();
    let found: BTreeSet<Vec<u8>> = outcome.differences.iter().map(|d| d.key.clone()).collect();
    assert_eq!(
        &found, changed,
        "the session must find exactly the changed keys"
    );
    let naive = naive_exchange_bytes(a.index.iter());
    let s = outcome.stats;
    assert!(s.round_trips <= u32::from(shape.depth()) + 2);
    assert!(s.total_bytes() < 256 * 1024);
    println!(
        "diff_cost [{shape}]: {} keys, {} differ: found {} keys exactly in {} round trips \
         (limit depth+2 = {}), {} B sent + {} B received = {} B ({:.1} KiB, limit 256 KiB), \
         session {:.1} ms; naive (every key's hash) = {} B ({:.1} MiB), {:.0}x more",
        KEYS,
        changed.len(),
        found.len(),
        s.round_trips,
        shape.depth() + 2,
        s.bytes_sent,
        s.bytes_received,
        s.total_bytes(),
        s.total_bytes() as f64 / 1024.0,
        elapsed.as_secs_f64() * 1e3,
        naive,
        naive as f64 / (1024.0 * 1024.0),
        naive as f64 / s.total_bytes() as f64,
    );
    let same = run(a, a);
    assert!(same.differences.is_empty() && same.stats.round_trips == 1);
    println!(
        "diff_cost [{shape}]: identical replicas: {} round trip, {} B sent, {} B received",
        same.stats.round_trips, same.stats.bytes_sent, same.stats.bytes_received
    );
}

fn main() {
    let shape = TreeShape::default();
    let (a, b, changed) = replicas(shape);
    report(shape, &a, &b, &changed);
    {
        // For comparison: a deeper tree for partitions this large.
        let deep = TreeShape::new(4, 4).expect("shape");
        let (a, b, changed) = replicas(deep);
        report(deep, &a, &b, &changed);
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    c.bench_function("diff_session_1m_keys_100_differ", |bench| {
        bench.iter(|| black_box(run(&a, &b)));
    });
    c.bench_function("diff_session_1m_keys_identical", |bench| {
        bench.iter(|| black_box(run(&a, &a)));
    });
    c.final_summary();
}
