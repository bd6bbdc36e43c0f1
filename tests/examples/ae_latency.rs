//! Foreground latency with anti-entropy working against without it (issue 11: "within 20%"):
//! three real `dynamo` processes (N = 3); n3 is killed while KEYS keys are written at W = 2, so
//! it misses all of them, then restarts. The same closed-loop load (50% gets, 50% blind puts,
//! CONCURRENCY workers, SECONDS) then runs once with anti-entropy off and once with it
//! refilling n3 (a sweep every `INTERVAL_MS`, at the default 16 MiB/s ceiling). Prints both runs'
//! percentiles.
//!
//! ```text
//! cargo build --release -p dynamo-cli
//! cargo run --release -p dynamo-tests --example ae_latency [SECONDS] [CONCURRENCY] [KEYS] [INTERVAL_MS]
//! ```
//! (defaults: 20 s, 8 workers, 20,000 keys, a sweep every 1,000 ms.)

use std::sync::Arc;
use std::time::Duration;

use dynamo_protocol::{Request, RequestOptions, Response};
use dynamo_tests::process::{ProcessCluster, arg_or, run_load};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = arg_or(1, 20);
    let concurrency = arg_or(2, 8) as usize;
    let keys = arg_or(3, 20_000) as u32;
    let interval_ms = arg_or(4, 1000);
    let on = format!("anti_entropy_interval_ms = {interval_ms}\n");
    for (label, config) in [
        ("anti-entropy off", "anti_entropy_interval_ms = 0\n"),
        ("anti-entropy on", on.as_str()),
    ] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut cluster = ProcessCluster::start(dir.path(), 3, Some(config)).await;
        let client = Arc::new(cluster.client());
        drop(cluster.nodes.remove(2)); // SIGKILL
        let two = RequestOptions {
            w: Some(2),
            ..RequestOptions::default()
        };
        cluster.write_keys(&client, keys, two).await;
        let restarted = cluster.start_node(2);
        cluster.nodes.push(restarted);
        cluster.wait_until_up(3).await;
        let report = run_load(
            client.clone(),
            Duration::from_secs(seconds),
            concurrency,
            u64::from(keys),
        )
        .await;
        report.print(label);
        let status = client
            .request_to(cluster.addresses[2], &Request::Status)
            .await;
        if let Ok(Response::Status(status)) = status {
            let ae = &status.anti_entropy;
            println!(
                "{label}: n3 repaired {} keys ({:.1} MiB); allowed now {:.1} MiB/s",
                ae.repaired_keys,
                ae.bytes_moved as f64 / (1024.0 * 1024.0),
                ae.allowed_bytes_per_sec as f64 / (1024.0 * 1024.0)
            );
        }
    }
}
