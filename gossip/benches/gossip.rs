//! Gossip message handling (issue 16): one gossip round of a 32-member cluster in steady state,
//! every member carrying a 2 KiB key (the size of a small ring), messages delivered at once and
//! decoded from bytes as a node would. Criterion's throughput line prints messages handled per
//! second.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dynamo_gossip::{Config, DEFAULT_MAX_MESSAGE_BYTES, Gossip, Identity, Message, Status};

const MEMBERS: usize = 32;

struct Cluster {
    nodes: Vec<Gossip>,
    by_address: HashMap<String, usize>,
    now: Duration,
}

impl Cluster {
    fn new() -> Cluster {
        let address = |i: usize| format!("10.0.0.{i}:7946");
        let config = Config {
            seeds: vec![address(0)],
            ..Config::default()
        };
        let mut nodes = Vec::new();
        let mut by_address = HashMap::new();
        for i in 0..MEMBERS {
            let identity = Identity::new(format!("n{i}"), 1, address(i));
            let mut node = Gossip::new(
                config.clone(),
                identity,
                Status::Alive,
                Duration::ZERO,
                i as u64,
            );
            node.set("ring", vec![i as u8; 2048]).expect("set");
            nodes.push(node);
            by_address.insert(address(i), i);
        }
        let mut cluster = Cluster {
            nodes,
            by_address,
            now: Duration::ZERO,
        };
        // Until every member knows every other.
        for _ in 0..60 {
            cluster.round();
        }
        cluster
    }

    /// One interval: every member ticks, then messages flow until none is left. Returns how
    /// many were handled.
    fn round(&mut self) -> u64 {
        self.now += Duration::from_secs(1);
        for node in &mut self.nodes {
            node.handle_timeout(self.now);
        }
        let mut handled = 0;
        loop {
            let mut moved = false;
            for from in 0..self.nodes.len() {
                while let Some(transmit) = self.nodes[from].poll_transmit() {
                    moved = true;
                    let Some(&to) = self.by_address.get(&transmit.address) else {
                        continue;
                    };
                    let bytes = transmit
                        .message
                        .encode(DEFAULT_MAX_MESSAGE_BYTES)
                        .expect("encode");
                    let message =
                        Message::decode(&bytes, DEFAULT_MAX_MESSAGE_BYTES).expect("decode");
                    let from_address = format!("10.0.0.{from}:7946");
                    let _ = self.nodes[to].handle_message(self.now, &from_address, message);
                    handled += 1;
                }
            }
            if !moved {
                return handled;
            }
        }
    }
}

fn steady_state_round(c: &mut Criterion) {
    let mut cluster = Cluster::new();
    let per_round = cluster.round();
    assert!(
        cluster.nodes.iter().all(|n| n.members().count() == MEMBERS),
        "the cluster formed"
    );
    let mut group = c.benchmark_group("gossip");
    group.throughput(Throughput::Elements(per_round));
    group.bench_function(
        format!("round of {MEMBERS} members ({per_round} messages)"),
        |b| {
            b.iter(|| black_box(cluster.round()));
        },
    );
    group.finish();
}

criterion_group!(benches, steady_state_round);
criterion_main!(benches);
