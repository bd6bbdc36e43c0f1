//! Storage benchmarks: put and get of 1 KiB values (sync and buffered) and a partition scan,
//! through `FjallStore` and on bare fjall with the same key layout, so the cost of versioning
//! (read-merge-write of a DVV set, encoding, the Merkle tree update) shows as a ratio.
//!
//! After the criterion groups, a short timing loop prints `ratio versioned/bare` for buffered
//! puts and gets (target: within 1.5x).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use dynamo_storage::{Durability, FjallStore, LocalWrite, Store, StoreOptions};
use dynamo_vclock::VClock;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

const VALUE_BYTES: usize = 1024;

/// A byte value that serializes as one byte string (like the `quorum` crate's data values
/// should): the same postcard bytes as a `Vec<u8>`, but decoded with one copy instead of
/// one visit per byte.
#[derive(Clone, Debug, PartialEq)]
struct Blob(Vec<u8>);

impl serde::Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BlobVisitor;
        impl serde::de::Visitor<'_> for BlobVisitor {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(BlobVisitor)
    }
}
const PRELOADED: u32 = 10_000;
const PARTITIONS: u32 = 16;
const SCAN_KEYS: u32 = 1_000;

fn value() -> Vec<u8> {
    (0..VALUE_BYTES).map(|i| (i * 31 % 251) as u8).collect()
}

fn blob() -> Blob {
    Blob(value())
}

fn user_key(i: u32) -> Vec<u8> {
    format!("user:{i:08}").into_bytes()
}

fn raw_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut raw = partition.to_be_bytes().to_vec();
    raw.extend_from_slice(key);
    raw
}

struct Versioned {
    _dir: tempfile::TempDir,
    store: FjallStore<Blob>,
    next: u32,
}

impl Versioned {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FjallStore::open(dir.path(), &StoreOptions::new("bench", 1)).expect("open");
        Versioned {
            _dir: dir,
            store,
            next: 0,
        }
    }

    fn put(&mut self, durability: Durability) {
        let i = self.next;
        self.next += 1;
        let write = LocalWrite {
            context: &VClock::new(),
            value: blob(),
            now: u64::from(i),
        };
        self.store
            .update(i % PARTITIONS, &user_key(i), write, durability)
            .expect("put");
    }

    fn get(&self, i: u32) -> usize {
        let i = i % PRELOADED;
        self.store
            .get(i % PARTITIONS, &user_key(i))
            .expect("get")
            .map_or(0, |s| s.len())
    }

    fn scan(&self, partition: u32) -> usize {
        self.store
            .scan_partition(partition, None, usize::MAX)
            .expect("scan")
            .len()
    }
}

struct Bare {
    _dir: tempfile::TempDir,
    db: Database,
    data: Keyspace,
    next: u32,
}

impl Bare {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::builder(dir.path()).open().expect("open");
        let data = db
            .keyspace("data", KeyspaceCreateOptions::default)
            .expect("keyspace");
        Bare {
            _dir: dir,
            db,
            data,
            next: 0,
        }
    }

    fn put(&mut self, durability: Durability) {
        let i = self.next;
        self.next += 1;
        self.data
            .insert(raw_key(i % PARTITIONS, &user_key(i)), value())
            .expect("insert");
        if durability == Durability::Sync {
            self.db.persist(PersistMode::SyncAll).expect("persist");
        }
    }

    fn get(&self, i: u32) -> usize {
        let i = i % PRELOADED;
        self.data
            .get(raw_key(i % PARTITIONS, &user_key(i)))
            .expect("get")
            .map_or(0, |v| v.len())
    }

    /// A get that copies the value out, as a server answering a read does (the versioned get
    /// must copy: it decodes into owned values).
    fn get_copied(&self, i: u32) -> usize {
        let i = i % PRELOADED;
        self.data
            .get(raw_key(i % PARTITIONS, &user_key(i)))
            .expect("get")
            .map_or(0, |v| black_box(v.to_vec()).len())
    }

    fn scan(&self, partition: u32) -> usize {
        // Materialized like the versioned scan's result.
        let entries: Vec<(Vec<u8>, fjall::Slice)> = self
            .data
            .prefix(partition.to_be_bytes())
            .map(|g| {
                let (key, value) = g.into_inner().expect("entry");
                (key.to_vec(), value)
            })
            .collect();
        entries.len()
    }
}

fn preloaded() -> (Versioned, Bare) {
    let mut versioned = Versioned::new();
    let mut bare = Bare::new();
    for _ in 0..PRELOADED {
        versioned.put(Durability::Buffered);
        bare.put(Durability::Buffered);
    }
    (versioned, bare)
}

fn bench_puts(c: &mut Criterion) {
    let mut group = c.benchmark_group("put_1KiB");
    // Sync first: buffered runs leave the disk busy writing back their data, which would slow
    // whichever fsync-bound benchmark runs next.
    for (name, durability) in [
        ("sync", Durability::Sync),
        ("buffered", Durability::Buffered),
    ] {
        let mut versioned = Versioned::new();
        group.bench_function(BenchmarkId::new("versioned", name), |b| {
            b.iter(|| versioned.put(durability));
        });
        let mut bare = Bare::new();
        group.bench_function(BenchmarkId::new("bare_fjall", name), |b| {
            b.iter(|| bare.put(durability));
        });
    }
    group.finish();
}

fn bench_gets(c: &mut Criterion) {
    let (versioned, bare) = preloaded();
    let mut group = c.benchmark_group("get_1KiB");
    let mut i = 0u32;
    group.bench_function("versioned", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            black_box(versioned.get(i))
        });
    });
    group.bench_function("bare_fjall", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            black_box(bare.get(i))
        });
    });
    group.bench_function("bare_fjall_copied", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            black_box(bare.get_copied(i))
        });
    });
    group.finish();
}

fn bench_scan(c: &mut Criterion) {
    // One partition of SCAN_KEYS keys of 1 KiB.
    let mut versioned = Versioned::new();
    let mut bare = Bare::new();
    for _ in 0..SCAN_KEYS * PARTITIONS {
        versioned.put(Durability::Buffered);
        bare.put(Durability::Buffered);
    }
    let mut group = c.benchmark_group("scan_partition_1000x1KiB");
    group.bench_function("versioned", |b| b.iter(|| black_box(versioned.scan(3))));
    group.bench_function("bare_fjall", |b| b.iter(|| black_box(bare.scan(3))));
    group.finish();
}

/// Nanoseconds per call: runs `n` calls of `a` and of `b` alternately, five rounds each, and
/// keeps each one's best round (the machine is shared; interleaving spreads the noise).
fn ns_per_op_pair(n: u32, mut a: impl FnMut(u32), mut b: impl FnMut(u32)) -> (f64, f64) {
    let time = |op: &mut dyn FnMut(u32)| {
        let start = Instant::now();
        for i in 0..n {
            op(i);
        }
        start.elapsed().as_nanos() as f64 / f64::from(n)
    };
    let (mut best_a, mut best_b) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        best_a = best_a.min(time(&mut a));
        best_b = best_b.min(time(&mut b));
    }
    (best_a, best_b)
}

fn ratio_summary() {
    const N: u32 = 10_000;
    let mut versioned = Versioned::new();
    let mut bare = Bare::new();
    let (sync_v, sync_b) = ns_per_op_pair(
        200,
        |_| versioned.put(Durability::Sync),
        |_| bare.put(Durability::Sync),
    );
    let (put_v, put_b) = ns_per_op_pair(
        N,
        |_| versioned.put(Durability::Buffered),
        |_| bare.put(Durability::Buffered),
    );
    drop((versioned, bare));
    let (versioned, bare) = preloaded();
    let (get_v, get_b) = ns_per_op_pair(
        N,
        |i| {
            black_box(versioned.get(i.wrapping_mul(7919)));
        },
        |i| {
            black_box(bare.get(i.wrapping_mul(7919)));
        },
    );
    let (get_v2, get_copied) = ns_per_op_pair(
        N,
        |i| {
            black_box(versioned.get(i.wrapping_mul(7919)));
        },
        |i| {
            black_box(bare.get_copied(i.wrapping_mul(7919)));
        },
    );
    println!();
    println!("summary (1 KiB values, buffered, ns/op, best of 5 interleaved rounds x {N}):");
    println!("  put: versioned {put_v:>8.0}  bare fjall {put_b:>8.0}");
    println!("  get: versioned {get_v:>8.0}  bare fjall {get_b:>8.0}");
    println!(
        "  sync put (best of 5 x 200): versioned {sync_v:>8.0}  bare fjall {sync_b:>8.0}  ({:.2}x)",
        sync_v / sync_b
    );
    println!(
        "  get: versioned {get_v2:>8.0}  bare fjall copying the value out {get_copied:>8.0}  ({:.2}x)",
        get_v2 / get_copied
    );
    println!(
        "ratio versioned/bare: put {:.2}x, get {:.2}x (target <= 1.5x)",
        put_v / put_b,
        get_v / get_b
    );
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
        .configure_from_args();
    bench_puts(&mut c);
    bench_gets(&mut c);
    bench_scan(&mut c);
    c.final_summary();
    ratio_summary();
}
