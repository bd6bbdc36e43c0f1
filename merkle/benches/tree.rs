//! Incremental update rate, full rebuild time and memory of the Merkle tree (Dynamo paper
//! section 4.7). Prints the figures once, then times the same operations with criterion.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use dynamo_merkle::{KeyHash, MerkleTree, TreeShape, key_hash, placement_hash};

const KEYS: u32 = 1_000_000;

fn key(i: u32) -> Vec<u8> {
    format!("user:{i:08}").into_bytes()
}

fn state(i: u32, version: u32) -> Vec<u8> {
    format!("[{{clock:[(node-a,{version}),(node-b,{i})],value:cart-{i}}}]").into_bytes()
}

fn main() {
    let shape = TreeShape::default();
    let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    let states1: Vec<Vec<u8>> = (0..KEYS).map(|i| state(i, 1)).collect();
    let states2: Vec<Vec<u8>> = (0..KEYS).map(|i| state(i, 2)).collect();
    let h1: Vec<KeyHash> = keys
        .iter()
        .zip(&states1)
        .map(|(k, s)| key_hash(k, s))
        .collect();
    let h2: Vec<KeyHash> = keys
        .iter()
        .zip(&states2)
        .map(|(k, s)| key_hash(k, s))
        .collect();

    // Full rebuild from a scan of (key, hash) pairs.
    let started = Instant::now();
    let tree = MerkleTree::from_entries(shape, keys.iter().zip(h1.iter().copied()));
    let rebuild = started.elapsed();
    let started = Instant::now();
    let tree2 = MerkleTree::from_entries(
        shape,
        keys.iter().zip(&states1).map(|(k, s)| (k, key_hash(k, s))),
    );
    let rebuild_hashing = started.elapsed();
    assert_eq!(tree, tree2);
    println!(
        "tree [{shape}]: full rebuild of {KEYS} keys: {:.1} ms from (key, hash) pairs, \
         {:.1} ms including key_hash of each version state (limit 1000 ms)",
        rebuild.as_secs_f64() * 1e3,
        rebuild_hashing.as_secs_f64() * 1e3,
    );

    // Incremental updates: every key moves v1 -> v2 -> v1, 2M updates in total.
    let mut t = tree.clone();
    let started = Instant::now();
    for (k, (&a, &b)) in keys.iter().zip(h1.iter().zip(&h2)) {
        t.update(k, Some(a), Some(b));
    }
    for (k, (&a, &b)) in keys.iter().zip(h1.iter().zip(&h2)) {
        t.update(k, Some(b), Some(a));
    }
    let elapsed = started.elapsed();
    assert_eq!(t, tree);
    let rate = 2.0 * f64::from(KEYS) / elapsed.as_secs_f64();

    let mut t = tree.clone();
    let started = Instant::now();
    for (k, (s1, s2)) in keys.iter().zip(states1.iter().zip(&states2)) {
        let p = placement_hash(k);
        t.update_placed(p, Some(key_hash(k, s1)), Some(key_hash(k, s2)));
    }
    let elapsed_hashing = started.elapsed();
    let rate_hashing = f64::from(KEYS) / elapsed_hashing.as_secs_f64();
    println!(
        "tree [{shape}]: incremental updates on one core: {:.1} M/s given old and new key \
         hashes, {:.1} M/s including key_hash of both version states (target 2 M/s)",
        rate / 1e6,
        rate_hashing / 1e6,
    );
    println!(
        "tree [{shape}]: {} B per tree, {:.1} MiB for 1024 partitions (limit 100 MiB)",
        tree.heap_bytes(),
        (tree.heap_bytes() * 1024) as f64 / (1024.0 * 1024.0),
    );

    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut t = tree.clone();
    let mut i = 0usize;
    c.bench_function("update_one_key", |bench| {
        bench.iter(|| {
            let n = i % keys.len();
            i += 1;
            t.update(&keys[n], Some(h1[n]), Some(h2[n]));
            t.update(&keys[n], Some(h2[n]), Some(h1[n]));
        });
    });
    c.bench_function("rebuild_1m_keys", |bench| {
        bench.iter(|| {
            black_box(MerkleTree::from_entries(
                shape,
                keys.iter().zip(h1.iter().copied()),
            ))
        });
    });
    c.bench_function("serialize_default_tree", |bench| {
        bench.iter(|| black_box(tree.to_bytes()));
    });
    c.final_summary();
}
