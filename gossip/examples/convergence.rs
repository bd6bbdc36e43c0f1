//! Prints the gossip crate's target figures from seeded simulations (paper section 4.8):
//! state-change spread at 1000 nodes with and without loss, bytes per node per round, crash
//! detection time, false `NodeDown`s over an hour under loss and jitter, and partition healing.
//!
//! Run with `cargo run --release -p dynamo-gossip --example convergence [section...]`, where a
//! section is one of `spread`, `bytes`, `detect`, `false`, `partition` (all by default).

use std::time::{Duration, Instant};

use dynamo_gossip::Event;
use dynamo_gossip::sim::{Sim, SimConfig};

const SEEDS: u64 = 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wants = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    let started = Instant::now();
    if wants("spread") {
        spread(1000, 0.0);
        spread(1000, 0.10);
    }
    if wants("bytes") {
        bytes(1000);
    }
    if wants("detect") {
        detect(1000, 5);
    }
    if wants("false") {
        false_positives(100, 3600, 3);
    }
    if wants("partition") {
        partition(100, SEEDS);
        partition(1000, 3);
    }
    println!("(wall time {:.1} s)", started.elapsed().as_secs_f64());
}

fn summary(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return "no samples".into();
    }
    let pick = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!(
        "min {:.1}  median {:.1}  p90 {:.1}  max {:.1}",
        pick(0.0),
        pick(0.5),
        pick(0.9),
        pick(1.0)
    )
}

fn warm(config: SimConfig) -> Sim {
    let nodes = config.nodes;
    let mut sim = Sim::new(config);
    let rounds = sim.run_until_converged(120);
    assert!(rounds.is_some(), "{nodes} nodes did not converge");
    sim
}

/// A state change on one node must reach every node within 15 rounds (no loss) or 20 (10%
/// loss).
fn spread(nodes: usize, loss: f64) {
    let mut rounds_taken = Vec::new();
    let mut warmups = Vec::new();
    for seed in 0..SEEDS {
        let mut sim = Sim::new(SimConfig {
            nodes,
            loss,
            seed,
            ..SimConfig::default()
        });
        let warm = sim.run_until_converged(120).expect("cluster converges");
        warmups.push(warm as f64);
        sim.run_rounds(3);
        let origin = (seed as usize * 7919) % nodes;
        let version = sim
            .set(origin, "ring", vec![seed as u8; 64])
            .expect("running");
        let everyone = sim.running_others(origin);
        let start = sim.now();
        let step = Duration::from_millis(100);
        while sim.holders_of(origin, version) < everyone {
            sim.run_until(sim.now() + step);
            assert!(
                sim.now().saturating_sub(start) < Duration::from_secs(60),
                "no spread"
            );
        }
        rounds_taken.push(sim.now().saturating_sub(start).as_secs_f64());
    }
    println!(
        "spread {nodes} nodes, loss {:>3.0}%: rounds for a change to reach all: {}",
        loss * 100.0,
        summary(&mut rounds_taken.clone())
    );
    println!(
        "    per seed: {}",
        rounds_taken
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "    (cold start from seeds to full agreement: {})",
        summary(&mut warmups)
    );
}

/// Bytes per node per round in steady state, and how often one change is carried.
fn bytes(nodes: usize) {
    let mut sim = warm(SimConfig {
        nodes,
        wire: true,
        seed: 1,
        ..SimConfig::default()
    });
    sim.run_rounds(5);
    let rounds = 10;
    let before = sim.stats().clone();
    sim.run_rounds(rounds);
    let after = sim.stats().clone();
    let per_node_round = (after.bytes - before.bytes) as f64 / (nodes as f64 * f64::from(rounds));
    let msgs = (after.messages - before.messages) as f64 / (nodes as f64 * f64::from(rounds));
    let idle_changes = after.changes_sent - before.changes_sent;
    let max_node = after
        .bytes_by_node
        .iter()
        .zip(&before.bytes_by_node)
        .map(|(a, b)| a - b)
        .max()
        .unwrap_or(0) as f64
        / f64::from(rounds);
    println!(
        "bytes {nodes} nodes, steady state: {per_node_round:.0} bytes/node/round (max node {max_node:.0}), {msgs:.1} messages/node/round, {idle_changes} state entries resent in {rounds} idle rounds"
    );
    // One change on every node: how many times is each change delivered?
    let before = sim.stats().clone();
    for i in 0..nodes {
        sim.set(i, "load", vec![1; 16]);
    }
    sim.run_rounds(30);
    let after = sim.stats().clone();
    let sent = (after.changes_sent - before.changes_sent) as f64;
    let needed = (nodes * (nodes - 1)) as f64;
    println!(
        "    one change on each of {nodes} nodes: {sent:.0} entries sent for {needed:.0} needed ({:.2} sends per member per peer per change)",
        sent / needed
    );
}

/// A crashed node must be marked down by every live node within 15 s.
fn detect(nodes: usize, runs: u64) {
    let mut all_down = Vec::new();
    let mut per_observer = Vec::new();
    for seed in 0..runs {
        let mut sim = warm(SimConfig {
            nodes,
            seed: 100 + seed,
            ..SimConfig::default()
        });
        sim.run_rounds(30);
        let victim = (seed as usize * 31 + 5) % nodes;
        let victim_id = sim.id(victim).clone();
        let log_start = sim.log().len();
        sim.crash(victim);
        let crashed_at = sim.now();
        let everyone = sim.running_others(victim);
        while sim.suspecting(victim) < everyone {
            sim.run_until(sim.now() + Duration::from_millis(100));
            assert!(sim.now().saturating_sub(crashed_at) < Duration::from_secs(120));
        }
        all_down.push(sim.now().saturating_sub(crashed_at).as_secs_f64());
        let mut this_run = Vec::new();
        for o in &sim.log()[log_start..] {
            if o.event == Event::NodeDown(victim_id.clone()) {
                this_run.push(o.at.saturating_sub(crashed_at).as_secs_f64());
            }
        }
        println!(
            "    run {seed}: all marked down after {:.1} s; per observer {}",
            all_down[all_down.len() - 1],
            summary(&mut this_run.clone())
        );
        per_observer.extend(this_run);
        assert_eq!(sim.stats().false_downs, 0);
    }
    println!(
        "detect {nodes} nodes: seconds until every live node marks a crashed node down: {}",
        summary(&mut all_down)
    );
    println!(
        "    per observer ({} NodeDown events): {}",
        per_observer.len(),
        summary(&mut per_observer)
    );
}

/// No false `NodeDown` over an hour with 5% loss and 0-200 ms jitter.
fn false_positives(nodes: usize, seconds: u64, runs: u64) {
    for seed in 0..runs {
        let mut sim = warm(SimConfig {
            nodes,
            loss: 0.05,
            latency: Duration::ZERO,
            jitter: Duration::from_millis(200),
            seed: 200 + seed,
            track_phi: true,
            ..SimConfig::default()
        });
        let start = sim.now();
        sim.run_until(start + Duration::from_secs(seconds));
        let stats = sim.stats();
        println!(
            "false downs {nodes} nodes, 5% loss, 0-200 ms jitter, {seconds} s virtual (seed {seed}): {} false NodeDown, highest phi on a live peer {:.2} (threshold {}), {} messages",
            stats.false_downs,
            stats.max_live_phi,
            sim.config().gossip.phi_threshold,
            stats.messages
        );
    }
}

/// Two halves cut apart for a minute, then healed: rounds until everyone agrees again.
fn partition(nodes: usize, runs: u64) {
    let mut rounds = Vec::new();
    for seed in 0..runs {
        let mut sim = warm(SimConfig {
            nodes,
            seed: 300 + seed,
            ..SimConfig::default()
        });
        sim.partition((0..nodes).map(|i| u32::from(i >= nodes / 2)).collect());
        sim.run_rounds(60);
        // Changes made on both sides during the partition must merge too.
        sim.set(0, "ring", vec![1]);
        sim.set(nodes - 1, "ring", vec![2]);
        sim.run_rounds(5);
        sim.heal();
        let healed = sim.run_until_converged(100).expect("halves merge");
        rounds.push(f64::from(healed));
    }
    println!(
        "partition {nodes} nodes into halves for 60 s, healed: rounds until all agree: {}",
        summary(&mut rounds)
    );
}
