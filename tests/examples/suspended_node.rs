//! Times the client library against three real `dynamo` processes while the first seed is
//! suspended with SIGSTOP (issue 13: `get` took 10 s while a node was suspended): fresh clients'
//! status, put and get, then a closed-loop load (50% gets, 50% blind puts over 1,000 keys,
//! CONCURRENCY workers) for SECONDS, printing its percentiles and failures.
//!
//! ```text
//! cargo build --release -p dynamo-cli
//! cargo run --release -p dynamo-tests --example suspended_node [SECONDS] [CONCURRENCY] [KILL]
//! ```
//! (defaults: 15 s, 8 workers; KILL = 1 kills the node with SIGKILL instead of suspending it.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamo_protocol::RequestOptions;
use dynamo_tests::process::{ProcessCluster, arg_or, run_load};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = arg_or(1, 15);
    let concurrency = arg_or(2, 8) as usize;
    let (signal, done) = if arg_or(3, 0) == 1 {
        ("KILL", "killed")
    } else {
        ("STOP", "suspended")
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let cluster = ProcessCluster::start(dir.path(), 3, None).await;
    let client = Arc::new(cluster.client());
    cluster
        .write_keys(&client, 1000, RequestOptions::default())
        .await;

    cluster.nodes[0].signal(signal);
    println!("n1 (the first seed) {done} with SIG{signal}");
    for round in 0..3 {
        let fresh = cluster.client();
        let key = format!("fresh{round}");
        let options = RequestOptions::default();
        let mut line = format!("fresh client {round}:");
        let started = Instant::now();
        let status = fresh.status().await.is_ok();
        line += &timed("status", started, status);
        let started = Instant::now();
        let put = fresh
            .put("default", key.as_bytes(), b"v".to_vec(), None, options)
            .await
            .is_ok();
        line += &timed("put", started, put);
        let started = Instant::now();
        let get = fresh.get("default", key.as_bytes(), options).await.is_ok();
        line += &timed("get", started, get);
        println!("{line}");
    }
    let report = run_load(client, Duration::from_secs(seconds), concurrency, 1000).await;
    report.print(&format!("{seconds} s, {concurrency} workers, n1 {done}"));
    if signal == "STOP" {
        cluster.nodes[0].signal("CONT");
    }
}

fn timed(what: &str, started: Instant, ok: bool) -> String {
    format!(
        " {what} {:.0} ms ({})",
        started.elapsed().as_secs_f64() * 1000.0,
        if ok { "ok" } else { "failed" }
    )
}
