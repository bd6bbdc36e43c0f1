//! Reproduces the experiment of the Dynamo paper's Figure 8 (section 6.2): load-balancing
//! efficiency against the size of the membership information, for strategy 1 (T random tokens
//! per node) and strategy 3 (Q equal partitions), with S = 30 nodes and N = 3.
//!
//! Efficiency is the mean load of a node divided by the load of the most loaded node, where a
//! node's load is the number of sampled keys it is one of the N replicas of. The size of the
//! membership information is the postcard encoding of the ring, as gossip would carry it.
//!
//! Run with `cargo run --release -p dynamo-ring --example ring_balance [-- --keys K]`.

use dynamo_ring::{Member, Ring, key_position};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NODES: usize = 30;
const REPLICAS: usize = 3;

fn main() {
    let keys = std::env::args()
        .skip_while(|a| a != "--keys")
        .nth(1)
        .and_then(|k| k.parse().ok())
        .unwrap_or(1_000_000usize);
    let members: Vec<Member> = (0..NODES)
        .map(|i| Member::new(format!("node-{i:02}"), format!("zone-{i:02}"), 1))
        .collect();
    let positions: Vec<u128> = (0..keys)
        .map(|i| key_position(format!("key-{i}").as_bytes()))
        .collect();

    println!("Dynamo Figure 8: S = {NODES} nodes, N = {REPLICAS}, {keys} sampled keys");
    println!(
        "{:<12} {:>10} {:>14} {:>12} {:>12}",
        "strategy", "parameter", "ring bytes", "efficiency", "(exact)"
    );
    for tokens in [1u32, 2, 4, 8, 16, 32, 64, 128, 256] {
        let mut rng = StdRng::seed_from_u64(u64::from(tokens));
        let ring =
            Ring::random_tokens(tokens, REPLICAS, members.clone(), &mut rng).expect("valid ring");
        report("1: tokens", &format!("T={tokens}"), &ring, &positions);
    }
    for partitions in [64u32, 128, 256, 512, 1024, 2048, 4096] {
        let ring =
            Ring::equal_partitions(partitions, REPLICAS, members.clone()).expect("valid ring");
        report("3: equal", &format!("Q={partitions}"), &ring, &positions);
    }
    println!();
    println!("efficiency = mean / max replica load over the key sample; (exact) uses the share");
    println!("of the hash space each node replicates, free of sampling noise.");
}

fn report(strategy: &str, parameter: &str, ring: &Ring, positions: &[u128]) {
    let mut load = vec![0u64; ring.members().len()];
    for &position in positions {
        let partition = ring.partition_of(position);
        for node in ring.replicas_of_partition(partition, REPLICAS) {
            let index = ring
                .members()
                .binary_search_by(|m| m.id.cmp(node))
                .expect("replicas are members");
            load[index] += 1;
        }
    }
    let efficiency = |values: &[f64]| {
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let max = values.iter().copied().fold(f64::MIN, f64::max);
        mean / max
    };
    let sampled: Vec<f64> = load.iter().map(|&l| l as f64).collect();
    let exact: Vec<f64> = ring
        .replica_shares(REPLICAS)
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    let bytes = postcard::to_allocvec(ring).map_or(0, |b| b.len());
    println!(
        "{strategy:<12} {parameter:>10} {bytes:>14} {:>12.3} {:>12.3}",
        efficiency(&sampled),
        efficiency(&exact)
    );
}
