//! Issue 29: a rolling upgrade on real hosts. Three nodes of an earlier commit's binary (built
//! by the test from this clone's history) are upgraded one at a time to this build while the
//! chaos workload writes, adds to carts and deletes from the client host; then the checker
//! reads everything back with R = N.
//!
//! Needs root and iproute2 to make the hosts, and a clone with the earlier commit; where either
//! is missing the test says why and passes without running (a failed build fails it). The
//! earlier binary is built into this target directory (`upgrade-from/`): about 30 s on the
//! development machine, where the dependencies were compiled already; dependencies built with
//! other features take longer the first time.

use std::path::Path;
use std::time::{Duration, Instant};

use dynamo_tests::chaos::{self, Phase};
use dynamo_tests::earlier::Earlier;
use dynamo_tests::host_cluster::{Advertise, HostCluster, members};

/// The commit the upgrade starts from: the last before protocol versions, which speaks only
/// protocol version 1 (no client-side reads).
const FROM: &str = "16f82247c44a0d872ecd2119885af294b6df4473";

/// Anti-entropy runs often, so the replicas agree soon after the last node is upgraded.
const CONFIG: &str = "anti_entropy_interval_ms = 3000\n";

/// Lines a node logs when a peer or client sends it a request it cannot decode.
const UNDECODABLE: &str = "bad request frame";

/// Waits until node `node` itself answers a status that shows every member up and in the
/// ring: the node serves again before the next one is stopped.
fn wait_until_serving(cluster: &HostCluster, node: usize, count: usize) {
    let address = cluster.node_address(node);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = cluster.cli(&["status", "--json", "--nodes", &address]);
        let up = serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .ok()
            .filter(|_| output.status.success())
            .map(|status| {
                members(&status)
                    .iter()
                    .filter(|m| m["up"] == true && m["in_ring"] == true)
                    .count()
            });
        if up == Some(count) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "n{} did not serve within 60 s: {}\n{}",
            node + 1,
            dynamo_tests::hosts::describe(&output),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_rolling_upgrade_loses_nothing_and_fails_nothing() {
    let cluster = match HostCluster::prepare(3, Advertise::Addresses, Some(CONFIG)) {
        Ok(cluster) => cluster,
        Err(reason) => {
            eprintln!("skipped: this machine cannot make test hosts ({reason})");
            return;
        }
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let earlier = match dynamo_tests::earlier::dynamo_of(&repo, FROM) {
        Ok(Earlier::Built(binary)) => binary,
        Ok(Earlier::Unavailable(reason)) => {
            eprintln!("skipped: no binary of {FROM} ({reason})");
            return;
        }
        Err(error) => panic!("building {FROM}: {error}"),
    };
    for node in 0..3 {
        cluster.use_binary(node, Some(earlier.clone()));
    }
    cluster.start_all();
    let tls = cluster.client_tls("workload");
    chaos::create_buckets(&cluster);
    let phase = Phase::new("before");
    // Ended by the STOP phase; the deadline only bounds a run that hangs.
    let until = Instant::now() + Duration::from_secs(300);
    let mut upgraded_at = Vec::new();
    let (history, done) = std::thread::scope(|scope| {
        let workload = scope.spawn(|| {
            chaos::run_workload(&cluster, &tls, &phase, 4, until, Duration::from_secs(2))
        });
        std::thread::sleep(Duration::from_secs(5));
        phase.set("upgrading");
        let started = Instant::now();
        for node in 0..3 {
            cluster.stop(node);
            cluster.use_binary(node, None);
            cluster.start_node(node);
            wait_until_serving(&cluster, node, 3);
            upgraded_at.push(started.elapsed());
            std::thread::sleep(Duration::from_secs(2));
        }
        phase.set("after");
        std::thread::sleep(Duration::from_secs(10));
        phase.set(chaos::STOP);
        let done = Instant::now();
        (workload.join().expect("workload"), done)
    });
    let verdict = chaos::check(&cluster, &tls, &history, done, Duration::from_secs(60));
    println!("{}", chaos::REPORT_HEADER);
    println!(
        "{}",
        chaos::report_row(
            &format!("rolling upgrade from {FROM}"),
            &history,
            &verdict,
            "upgrading"
        )
    );
    println!("nodes upgraded at {upgraded_at:?} into the upgrade");
    println!("acknowledged by phase: {:?}", history.acknowledged);
    println!("errors: {:?}", history.errors);
    println!("reads: {:?}", history.read_paths);
    let logs = cluster.logs();
    assert!(
        verdict.checked > 100,
        "the workload did too little: {history:?}"
    );
    assert!(verdict.passed(), "{verdict:#?}\n{logs}");
    assert_eq!(
        history.errors_in("upgrading"),
        0,
        "operations failed during the upgrade: {:?}",
        history.errors
    );
    // The earlier nodes never got a request they could not decode: the client saw their
    // protocol version and read through coordinators. Once all are upgraded, it reads copies.
    // (Nodes log at warn unless DYNAMO_TEST_LOG says otherwise.)
    let filter = std::env::var("DYNAMO_TEST_LOG").unwrap_or_else(|_| "warn".into());
    if filter == "error" || filter == "off" {
        eprintln!("not checked: nodes log at {filter}, which hides {UNDECODABLE:?}");
    } else {
        for node in 0..3 {
            let path = cluster.log_path(node);
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(!log.contains(UNDECODABLE), "{}:\n{log}", path.display());
        }
    }
    assert!(
        history.read_paths.from_copies > 0,
        "{:?}",
        history.read_paths
    );
    assert!(history.acknowledged.get("after").is_some_and(|&n| n > 0));
    // An earlier build's CLI still reads from the upgraded cluster.
    let (key, value) = history.writes.first().expect("a write acknowledged");
    let output = cluster
        .network
        .command(cluster.client_host(), &earlier)
        .args(["get", chaos::BUCKET, key])
        .env("DYNAMO_NODES", cluster.node_addresses())
        .env("DYNAMO_CERTS_DIR", cluster.client_certs_dir())
        .output()
        .expect("run the earlier CLI");
    let described = dynamo_tests::hosts::describe(&output);
    assert!(output.status.success(), "{described}");
    assert!(described.contains(value.as_str()), "{described}");
}
