//! Benchmarks: compare/merge of 10-entry clocks, DVV-set update with 1, 2 and 10 siblings,
//! context encode/decode.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dynamo_vclock::{Actor, Context, DvvSet, Entry, VClock};

fn clock(offset: u64) -> VClock {
    (0..10_u64)
        .map(|i| {
            let counter = 1 + (i + offset) % 7;
            (
                format!("node-{i:02}"),
                Entry {
                    counter,
                    timestamp: 1_700_000_000_000 + i,
                },
            )
        })
        .collect()
}

fn clocks(c: &mut Criterion) {
    let (a, b) = (clock(0), clock(3));
    c.bench_function("vclock/compare_10", |bench| {
        bench.iter(|| black_box(&a).compare(black_box(&b)));
    });
    c.bench_function("vclock/merge_10", |bench| {
        bench.iter(|| black_box(&a).merged(black_box(&b)));
    });
}

/// A set with `n` siblings: `n` writes through distinct coordinators from an empty context.
fn siblings(n: usize) -> DvvSet<Vec<u8>> {
    let mut set = DvvSet::empty();
    for i in 0..n {
        set.update(
            &VClock::new(),
            &Actor::new(format!("node-{i}")),
            vec![0; 64],
            i as u64,
        );
    }
    set
}

fn dvvset(c: &mut Criterion) {
    let coordinator = Actor::from("node-0");
    let mut group = c.benchmark_group("dvvset/update");
    for n in [1, 2, 10] {
        let set = siblings(n);
        // Resolving write: the client read every sibling.
        let full = set.context();
        group.bench_with_input(BenchmarkId::new("resolve", n), &set, |bench, set| {
            bench.iter(|| {
                let mut s = set.clone();
                s.update(black_box(&full), &coordinator, vec![1; 64], 99);
                s
            });
        });
        // Blind write: the client read nothing, so it adds a sibling.
        let empty = VClock::new();
        group.bench_with_input(BenchmarkId::new("blind", n), &set, |bench, set| {
            bench.iter(|| {
                let mut s = set.clone();
                s.update(black_box(&empty), &coordinator, vec![1; 64], 99);
                s
            });
        });
    }
    group.finish();
}

fn context(c: &mut Criterion) {
    let ctx = Context::new(clock(0));
    let bytes = ctx.to_bytes();
    let text = ctx.to_text();
    println!(
        "context of 10 entries: {} bytes, {} text chars",
        bytes.len(),
        text.len()
    );
    c.bench_function("context/encode_bytes_10", |bench| {
        bench.iter(|| black_box(&ctx).to_bytes());
    });
    c.bench_function("context/decode_bytes_10", |bench| {
        bench.iter(|| Context::from_bytes(black_box(&bytes)));
    });
    c.bench_function("context/encode_text_10", |bench| {
        bench.iter(|| black_box(&ctx).to_text());
    });
    c.bench_function("context/decode_text_10", |bench| {
        bench.iter(|| Context::from_text(black_box(&text)));
    });
}

criterion_group!(benches, clocks, dvvset, context);
criterion_main!(benches);
