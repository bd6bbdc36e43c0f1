//! Measures a real `dynamo` node process under a client's flood (issue 12, security review
//! hole 3: one client took a node from 11 MB to 2.0 GB). One client identity opens CONNECTIONS
//! connections (the node keeps its per-identity limit of them), and on each up to STREAMS
//! streams that announce an 8 MiB frame, send 1 MiB of it and stall. Meanwhile a second client
//! reads and writes. Prints the node's resident memory before, at its peak during, and after
//! the flood, and the second client's latencies and failures.
//!
//! ```text
//! cargo build --release -p dynamo-cli
//! cargo run --release -p dynamo-tests --example flood_memory [SECONDS] [CONNECTIONS] [STREAMS]
//! ```
//! (defaults: 15 s, 2000 connections, 64 streams; the `dynamo` binary is taken from the same
//! target directory as this example.)

use std::time::{Duration, Instant};

use dynamo_client::Client;
use dynamo_client::ca::ClusterCa;
use dynamo_client::tls::{Role, TlsConfig};
use dynamo_protocol::RequestOptions;
use dynamo_tests::flood::{Flood, FloodPlan};
use dynamo_tests::process::{NodeProcess, arg_or, free_address, percentile};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = arg_or(1, 15);
    let connections = arg_or(2, 2_000) as usize;
    let streams = arg_or(3, 64) as usize;

    let dir = tempfile::tempdir().expect("temporary directory");
    let certs = dir.path().join("certs");
    let ca = ClusterCa::generate("flood").expect("CA");
    ca.install_cert(&certs).expect("CA certificate");
    ca.issue(Role::Node, "n1")
        .expect("node certificate")
        .save(&certs, false)
        .expect("save");
    let tls = |role, name| {
        TlsConfig::new(ca.cert_pem(), &ca.issue(role, name).expect("issue")).expect("tls")
    };
    let address = free_address();
    let node = NodeProcess::start("n1", address, dir.path(), &certs, None);
    let client = Client::new(
        &tls(Role::Client, "app"),
        vec![address],
        Duration::from_secs(5),
    )
    .expect("client");
    let one = RequestOptions {
        r: Some(1),
        w: Some(1),
        timeout_ms: Some(2_000),
        ..RequestOptions::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .put("default", b"warm", b"up".to_vec(), None, one)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the node did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (baseline, _) = node.memory_mib();
    println!("node RSS before the flood: {baseline:.1} MiB");

    let plan = FloodPlan {
        connections,
        streams_per_connection: streams,
        announced: 8 * 1024 * 1024,
        sent: 1024 * 1024,
    };
    let started = Instant::now();
    let flooder = tls(Role::Client, "flood");
    let flood = tokio::spawn(async move { Flood::start(&flooder, address, plan).await });
    let mut latencies = Vec::new();
    let mut failures = 0;
    let mut peak = 0.0f64;
    let until = started + Duration::from_secs(seconds);
    let mut i = 0u64;
    while Instant::now() < until || !flood.is_finished() {
        let key = format!("k{}", i % 100);
        i += 1;
        let begun = Instant::now();
        let ok = if i.is_multiple_of(2) {
            client
                .put("default", key.as_bytes(), vec![7; 1024], None, one)
                .await
                .is_ok()
        } else {
            client.get("default", key.as_bytes(), one).await.is_ok()
        };
        latencies.push(begun.elapsed());
        if !ok {
            failures += 1;
        }
        peak = peak.max(node.memory_mib().0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flood = flood.await.expect("the flood");
    println!(
        "flood: {} connections attempted in {:.1} s, {} kept by the node",
        flood.attempted(),
        started.elapsed().as_secs_f64(),
        flood.admitted()
    );
    println!(
        "during the flood: {} streams opened; node RSS peaked at {peak:.1} MiB (VmHWM {:.1} MiB)",
        flood.streams(),
        node.memory_mib().1
    );
    latencies.sort();
    println!(
        "second client: {} requests, {failures} failed; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    let stopped = Instant::now();
    flood.stop().await;
    for after in [1u64, 3, 5, 10, 30, 45] {
        let at = stopped + Duration::from_secs(after);
        tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
        println!(
            "{after:>2} s after the flood: node RSS {:.1} MiB",
            node.memory_mib().0
        );
    }
    drop(node);
}
