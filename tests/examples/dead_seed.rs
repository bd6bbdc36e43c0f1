//! Times the client library against a 3-node cluster whose first seed is dead (issue 13: `get`,
//! `put` and `status` took 5 to 45 s): a fresh client (so it first fetches the ring) runs
//! status, put and get, ROUNDS times; prints the slowest of each.
//!
//! ```text
//! cargo run --release -p dynamo-tests --example dead_seed [ROUNDS]     # default 10
//! ```

use std::time::{Duration, Instant};

use dynamo_client::Client;
use dynamo_protocol::RequestOptions;
use dynamo_tests::process::arg_or;
use dynamo_tests::{TestCluster, tls_for};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = arg_or(1, 10) as usize;
    let mut cluster = TestCluster::start(3).await;
    let addresses = cluster.addresses();
    cluster.stop(0).await;
    // Let the others see it down, as a user arriving after the failure would.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let tls = tls_for(&cluster.certs_dir(), "tester");
    let mut slowest = [Duration::ZERO; 3];
    for round in 0..rounds {
        let client = Client::new(&tls, addresses.clone(), Duration::from_secs(5)).expect("client");
        let key = format!("k{round}");
        let timed = [
            time(async { client.status().await.map(drop) }).await,
            time(async {
                client
                    .put(
                        "default",
                        key.as_bytes(),
                        b"v".to_vec(),
                        None,
                        RequestOptions::default(),
                    )
                    .await
                    .map(drop)
            })
            .await,
            time(async {
                client
                    .get("default", key.as_bytes(), RequestOptions::default())
                    .await
                    .map(drop)
            })
            .await,
        ];
        for (slow, took) in slowest.iter_mut().zip(timed) {
            *slow = (*slow).max(took);
        }
    }
    println!(
        "first seed dead, {rounds} fresh clients: slowest status {:.0} ms, put {:.0} ms, get {:.0} ms",
        slowest[0].as_secs_f64() * 1000.0,
        slowest[1].as_secs_f64() * 1000.0,
        slowest[2].as_secs_f64() * 1000.0
    );
    cluster.shutdown().await;
}

async fn time<E: std::fmt::Debug>(
    operation: impl std::future::Future<Output = Result<(), E>>,
) -> Duration {
    let started = Instant::now();
    operation.await.expect("the operation succeeds");
    started.elapsed()
}
