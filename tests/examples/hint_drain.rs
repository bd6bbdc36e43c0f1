//! Measures hinted handoff (paper 4.6; issue 11's "time from a node's restart to zero pending
//! hints"): a 4-node cluster (N = 3), node 4 stopped while KEYS keys of 1 KiB are written, so
//! fallbacks hold hints for it; then node 4 restarts. Prints the hints held and the time until
//! none are left.
//!
//! ```text
//! cargo run --release -p dynamo-tests --example hint_drain [KEYS]     # default 2000
//! ```

use std::time::{Duration, Instant};

use dynamo_tests::TestCluster;
use dynamo_tests::process::arg_or;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let keys = arg_or(1, 2_000) as usize;
    let mut cluster = TestCluster::start(4).await;
    cluster.stop(3).await;
    // Let the others see node 4 down, so writes go to fallbacks with hints.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let client = cluster.client();
    for i in 0..keys {
        let value = vec![b'a' + (i % 26) as u8; 1024];
        client
            .put(
                "default",
                format!("key-{i}").as_bytes(),
                value,
                None,
                dynamo_protocol::RequestOptions::default(),
            )
            .await
            .expect("put");
    }
    let held = cluster.hints_held_for("node-4").await;
    println!("{keys} keys written with node-4 down: {held} hints held for it");
    let restarted = Instant::now();
    cluster.restart(3).await;
    loop {
        let left = cluster.hints_held_for("node-4").await;
        if left == 0 {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(300),
            "{left} hints still held after 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "zero hints held {:.1} s after node-4 restarted",
        restarted.elapsed().as_secs_f64()
    );
    cluster.shutdown().await;
}
