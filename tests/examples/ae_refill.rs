//! Measures Merkle anti-entropy refilling a wiped replica (paper 4.7; issue 11's figures): a
//! 3-node cluster (N = 3) holds KEYS keys of 1 KiB, node 3 loses its data directory and
//! restarts, and nothing reads. Prints the time until node 3's store holds every key and the
//! bytes anti-entropy moved, against the data size.
//!
//! ```text
//! cargo run --release -p dynamo-tests --example ae_refill [KEYS]     # default 10000
//! ```

use std::time::{Duration, Instant};

use dynamo_protocol::RequestOptions;
use dynamo_tests::TestCluster;
use dynamo_tests::process::arg_or;

const VALUE_BYTES: usize = 1024;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let keys = arg_or(1, 10_000) as usize;
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let written = Instant::now();
    let all = RequestOptions {
        w: Some(3),
        ..RequestOptions::default()
    };
    for i in 0..keys {
        let value = vec![b'a' + (i % 26) as u8; VALUE_BYTES];
        client
            .put("default", format!("key-{i}").as_bytes(), value, None, all)
            .await
            .expect("put");
    }
    println!(
        "wrote {keys} keys of {VALUE_BYTES} B at W=3 in {:.1} s",
        written.elapsed().as_secs_f64()
    );
    let moved_before = bytes_moved(&cluster).await;
    cluster.stop(2).await;
    std::fs::remove_dir_all(cluster.data_dir(2)).expect("wipe node-3");
    let wiped = Instant::now();
    cluster.restart(2).await;
    // Every pair agreeing after the restart means node 3's trees equal its peers'.
    while !idle(&cluster, wiped.elapsed()).await {
        assert!(
            wiped.elapsed() < Duration::from_secs(600),
            "not refilled after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seconds = wiped.elapsed().as_secs_f64();
    let moved = bytes_moved(&cluster).await - moved_before;
    cluster.stop(2).await;
    let held = cluster.keys_on_disk(2, "key-");
    assert_eq!(held, keys, "node-3's store after anti-entropy");
    let data = (keys * VALUE_BYTES) as f64;
    println!(
        "node-3 refilled by anti-entropy alone in {seconds:.1} s: {moved} B moved for {data:.0} B of values ({:.2}x)",
        moved as f64 / data
    );
    cluster.shutdown().await;
}

/// Bytes anti-entropy moved, summed over the running nodes.
async fn bytes_moved(cluster: &TestCluster) -> u64 {
    cluster
        .status_sum(|status| status.anti_entropy.bytes_moved)
        .await
}

/// Whether every node has compared every pair since the wipe (`since` ago) and runs no exchange.
async fn idle(cluster: &TestCluster, since: Duration) -> bool {
    let since = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
    let mut idle = true;
    for address in cluster.addresses() {
        match cluster.client_of(address).status().await {
            Ok(status) => idle &= status.anti_entropy.settled_within(since),
            Err(_) => idle = false,
        }
    }
    idle
}
