//! The cost of resolution per read (issue 14): resolving a key's siblings with each resolver,
//! against only listing the raw siblings (`live_values`, what a `siblings` bucket does). Keys
//! with 1 and 3 concurrent versions; the cart and union values hold 20 items of 8 bytes.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dynamo_quorum::{Object, Value, live_values};
use dynamo_resolve::{Cart, ItemSet, Resolver, resolve};
use dynamo_vclock::{Actor, VClock};

fn value_for(resolver: Resolver, version: u64) -> Vec<u8> {
    match resolver {
        Resolver::Max => (version * 7).to_string().into_bytes(),
        Resolver::Union => ItemSet(
            (0..20)
                .map(|i| format!("item{:04}", i + version).into_bytes())
                .collect(),
        )
        .encode(),
        Resolver::Cart => {
            let mut cart = Cart::default();
            for i in 0..20 {
                cart.add(
                    format!("item{:04}", i + version).as_bytes(),
                    i * 10 + version,
                );
            }
            cart.remove(b"item0003");
            cart.encode()
        }
        Resolver::Siblings | Resolver::Lww => vec![7; 200],
    }
}

fn object(resolver: Resolver, siblings: u64) -> Object {
    let mut object = Object::empty();
    for v in 0..siblings {
        let actor = Actor::new(format!("n{v}#1"));
        object.update(
            &VClock::default(),
            &actor,
            Value::Data(value_for(resolver, v)),
            v,
        );
    }
    object
}

fn resolution(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    for siblings in [1, 3] {
        let raw = object(Resolver::Siblings, siblings);
        group.bench_with_input(BenchmarkId::new("raw siblings", siblings), &raw, |b, o| {
            b.iter(|| black_box(live_values(black_box(o)).len()));
        });
        for resolver in [
            Resolver::Lww,
            Resolver::Max,
            Resolver::Union,
            Resolver::Cart,
        ] {
            let object = object(resolver, siblings);
            let name = BenchmarkId::new(resolver.name(), siblings);
            group.bench_with_input(name, &object, |b, o| {
                b.iter(|| black_box(resolve(resolver, black_box(o))));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, resolution);
criterion_main!(benches);
