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

use dynamo_node::Client;
use dynamo_node::protocol::RequestOptions;
use dynamo_node::tls::{ClusterCa, Role, TlsConfig};
use dynamo_tests::process::{NodeProcess, arg_or, free_address, percentile};

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
    let certs = dir.path().join("certs");
    let ca = ClusterCa::generate("suspend").expect("CA");
    ca.install_cert(&certs).expect("CA certificate");
    let addresses: Vec<_> = (0..3).map(|_| free_address()).collect();
    let mut nodes = Vec::new();
    for (i, &address) in addresses.iter().enumerate() {
        let name = format!("n{}", i + 1);
        ca.issue(Role::Node, &name)
            .expect("certificate")
            .save(&certs, false)
            .expect("save");
        let seed = (i > 0).then_some(addresses[0]);
        nodes.push(NodeProcess::start(&name, address, dir.path(), &certs, seed));
        if i == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let tls = TlsConfig::new(
        ca.cert_pem(),
        &ca.issue(Role::Client, "app").expect("client certificate"),
    )
    .expect("tls");
    let fresh = || Client::new(&tls, addresses.clone(), Duration::from_secs(5)).expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = fresh()
            .status()
            .await
            .is_ok_and(|s| s.members.iter().filter(|m| m.in_ring && m.up).count() == 3);
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster did not form");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let client = Arc::new(fresh());
    for i in 0..1000u32 {
        // The last ring may still be spreading when every member first shows up: retry.
        let mut attempts = 0;
        while let Err(error) = client
            .put(
                "default",
                format!("k{i}").as_bytes(),
                vec![1; 1024],
                None,
                RequestOptions::default(),
            )
            .await
        {
            attempts += 1;
            assert!(attempts < 50, "load phase: {error}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    nodes[0].signal(signal);
    println!("n1 (the first seed) {done} with SIG{signal}");
    for round in 0..3 {
        let client = fresh();
        let started = Instant::now();
        let status = client.status().await.map(drop);
        let status_took = started.elapsed();
        let started = Instant::now();
        let put = client
            .put(
                "default",
                format!("fresh{round}").as_bytes(),
                b"v".to_vec(),
                None,
                RequestOptions::default(),
            )
            .await
            .map(drop);
        let put_took = started.elapsed();
        let started = Instant::now();
        let get = client
            .get(
                "default",
                format!("fresh{round}").as_bytes(),
                RequestOptions::default(),
            )
            .await
            .map(drop);
        let get_took = started.elapsed();
        println!(
            "fresh client {round}: status {:.0} ms ({}), put {:.0} ms ({}), get {:.0} ms ({})",
            status_took.as_secs_f64() * 1000.0,
            if status.is_ok() { "ok" } else { "failed" },
            put_took.as_secs_f64() * 1000.0,
            if put.is_ok() { "ok" } else { "failed" },
            get_took.as_secs_f64() * 1000.0,
            if get.is_ok() { "ok" } else { "failed" },
        );
    }

    let until = Instant::now() + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let client = client.clone();
        workers.spawn(async move {
            let mut gets = Vec::new();
            let mut puts = Vec::new();
            let mut failures = 0usize;
            let mut i = worker as u64;
            while Instant::now() < until {
                i = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let key = format!("k{}", (i >> 33) % 1000);
                let started = Instant::now();
                let ok = if i & (1 << 40) == 0 {
                    let ok = client
                        .get("default", key.as_bytes(), RequestOptions::default())
                        .await
                        .is_ok();
                    gets.push(started.elapsed());
                    ok
                } else {
                    let ok = client
                        .put(
                            "default",
                            key.as_bytes(),
                            vec![2; 1024],
                            None,
                            RequestOptions::default(),
                        )
                        .await
                        .is_ok();
                    puts.push(started.elapsed());
                    ok
                };
                if !ok {
                    failures += 1;
                }
            }
            (gets, puts, failures)
        });
    }
    let (mut gets, mut puts, mut failures) = (Vec::new(), Vec::new(), 0);
    while let Some(joined) = workers.join_next().await {
        let (g, p, f) = joined.expect("worker");
        gets.extend(g);
        puts.extend(p);
        failures += f;
    }
    for (what, samples) in [("get", &mut gets), ("put", &mut puts)] {
        samples.sort();
        println!(
            "{what}: {} in {seconds} s with n1 {done}; p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
            samples.len(),
            ms(percentile(samples, 0.5)),
            ms(percentile(samples, 0.99)),
            ms(percentile(samples, 0.999)),
            ms(samples.last().copied().unwrap_or_default()),
        );
    }
    println!("failed requests: {failures}");
    if signal == "STOP" {
        nodes[0].signal("CONT");
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
