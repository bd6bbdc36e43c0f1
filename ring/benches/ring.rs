//! Ring benchmarks: key -> preference list (target < 200 ns for N = 3, 1024 partitions, 100
//! nodes), the claim for 1000 nodes, a join at that size, and MD5 key hashing throughput.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dynamo_ring::{Member, Ring, key_position};

fn nodes(count: usize) -> Vec<Member> {
    (0..count)
        .map(|i| Member::new(format!("node-{i:04}"), format!("zone-{}", i % 5), 1))
        .collect()
}

fn preference_list(c: &mut Criterion) {
    let ring = Ring::equal_partitions(1024, 3, nodes(100)).expect("valid ring");
    let keys: Vec<Vec<u8>> = (0..4096)
        .map(|i| format!("user:{i:08}").into_bytes())
        .collect();
    let mut group = c.benchmark_group("preference_list");
    let mut i = 0;
    group.bench_function("n3_1024_partitions_100_nodes", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(ring.preference_list(black_box(&keys[i]), 3).len())
        });
    });
    let positions: Vec<u128> = keys.iter().map(|k| key_position(k)).collect();
    group.bench_function("n3_walk_only_from_position", |b| {
        b.iter(|| {
            i = (i + 1) % positions.len();
            let partition = ring.partition_of(black_box(positions[i]));
            black_box(ring.replicas_of_partition(partition, 3).len())
        });
    });
    group.bench_function("n3_extended_one_down", |b| {
        let down = ring.members()[7].id.clone();
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(
                ring.extended_preference_list(black_box(&keys[i]), 3, |n| *n != down)
                    .len(),
            )
        });
    });
    group.finish();
}

fn claim(c: &mut Criterion) {
    let mut group = c.benchmark_group("claim");
    group.sample_size(10);
    let members = nodes(1000);
    group.bench_function("fresh_1000_nodes_4096_partitions", |b| {
        b.iter(|| Ring::equal_partitions(4096, 3, black_box(members.clone())).expect("valid"));
    });
    let ring = Ring::equal_partitions(4096, 3, members).expect("valid ring");
    group.bench_function("join_1001st_node_4096_partitions", |b| {
        b.iter(|| {
            ring.add_member(Member::new("newcomer", "zone-new", 1))
                .expect("valid join")
        });
    });
    group.bench_function("leave_1_of_1000_nodes_4096_partitions", |b| {
        let leaver = ring.members()[500].id.clone();
        b.iter(|| ring.remove_member(&leaver).expect("valid leave"));
    });
    group.finish();
}

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_position");
    for size in [16usize, 64, 1024] {
        let key = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &key, |b, key| {
            b.iter(|| key_position(black_box(key)));
        });
    }
    group.finish();
}

criterion_group!(benches, preference_list, claim, hashing);
criterion_main!(benches);
