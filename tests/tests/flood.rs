//! Issue 12, security review hole 3: one client raised a node's memory to 2 GB with thousands
//! of streams carrying partial frames, and had 2,000 connections accepted. Under the same kind
//! of flood (bounded here so the test stays quick), the node keeps the flooder to its limits
//! and a second client's requests keep succeeding. The node's memory under a full-size flood
//! is measured by `cargo run -p dynamo-tests --example flood_memory`.

use std::time::{Duration, Instant};

use dynamo_client::tls::Role;
use dynamo_client::transport::TransportLimits;
use dynamo_protocol::RequestOptions;
use dynamo_tests::TestCluster;
use dynamo_tests::flood::{Flood, FloodPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_does_not_starve_another() {
    let cluster = TestCluster::start(1).await;
    let address = cluster.addresses()[0];
    let limits = TransportLimits::default();
    let plan = FloodPlan {
        connections: limits.max_connections_per_identity + 36,
        streams_per_connection: 16,
        announced: 8 * 1024 * 1024,
        sent: 16 * 1024,
    };
    let flood = Flood::start(&cluster.tls_as(Role::Client, "flood"), address, plan).await;
    // The connections over the per-identity limit are closed right after their handshake.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        flood.admitted() <= limits.max_connections_per_identity,
        "{} of {} connections admitted",
        flood.admitted(),
        flood.attempted()
    );
    assert!(flood.streams() > 0, "the flood opened no stream");

    let client = cluster.client();
    let one = RequestOptions {
        w: Some(1),
        r: Some(1),
        timeout_ms: Some(2_000),
        ..RequestOptions::default()
    };
    let started = Instant::now();
    for i in 0..30 {
        let key = format!("k{i}");
        client
            .put("default", key.as_bytes(), b"v".to_vec(), None, one)
            .await
            .unwrap_or_else(|e| panic!("put {key} during the flood: {e}"));
        client
            .get("default", key.as_bytes(), one)
            .await
            .unwrap_or_else(|e| panic!("get {key} during the flood: {e}"));
    }
    eprintln!(
        "30 puts and gets during a flood of {} connections ({} admitted) and {} streams took {:?}",
        flood.attempted(),
        flood.admitted(),
        flood.streams(),
        started.elapsed()
    );
    flood.stop().await;
    cluster.shutdown().await;
}
