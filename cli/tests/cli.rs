//! The `dynamo` binary end to end: `dynamo dev cluster` starts three node processes, and put,
//! get, delete and status run through the binary against them (exit codes included).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{DYNAMO, DevCluster};

fn dynamo(args: &[&str], nodes: &str, certs: &Path) -> Output {
    Command::new(DYNAMO)
        .args(args)
        .env("DYNAMO_NODES", nodes)
        .env("DYNAMO_CERTS_DIR", certs)
        .env_remove("DYNAMO_IDENTITY")
        .output()
        .expect("run dynamo")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn dev_cluster_then_put_get_delete_and_status() {
    let dir = tempfile::tempdir().expect("dir");
    let base_port = 21_000 + (std::process::id() % 20_000) as u16;
    let (cluster, banner) = DevCluster::start(dir.path(), base_port);
    assert!(banner.contains("export DYNAMO_NODES="), "{banner}");
    assert!(
        banner.contains(&format!(
            "HTTP API https://node.dynamo:{}/",
            base_port + 100
        )),
        "{banner}"
    );
    let nodes: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", base_port + i))
        .collect();
    let nodes = nodes.join(",");
    // Security review hole 6: clients get a directory with their own identity and the CA
    // certificate, nothing else (no CA key, no node keys).
    let certs = dir.path().join("certs").join("client");
    assert!(
        banner.contains(&format!("DYNAMO_CERTS_DIR={}", certs.display())),
        "{banner}"
    );
    let mut files: Vec<String> = std::fs::read_dir(&certs)
        .expect("client certs")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    assert_eq!(files, ["admin.admin.key", "admin.admin.pem", "ca.pem"]);

    let put = dynamo(&["put", "default", "greeting", "hello"], &nodes, &certs);
    assert!(put.status.success(), "put: {put:?}");
    assert!(stdout(&put).contains("ok"), "{}", stdout(&put));

    let get = dynamo(&["get", "default", "greeting"], &nodes, &certs);
    assert_eq!(get.status.code(), Some(0), "get: {get:?}");
    assert_eq!(stdout(&get).lines().next(), Some("hello"));

    let missing = dynamo(&["get", "default", "nothing-here"], &nodes, &certs);
    assert_eq!(
        missing.status.code(),
        Some(3),
        "not found exits 3: {missing:?}"
    );

    // Two writes from the same context are siblings: exit code 4 and both values.
    let json = dynamo(&["get", "default", "greeting", "--json"], &nodes, &certs);
    let read: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let context = read["context"].as_str().expect("context").to_owned();
    for value in ["hi", "hey"] {
        let put = dynamo(
            &["put", "default", "greeting", value, "--context", &context],
            &nodes,
            &certs,
        );
        assert!(put.status.success(), "{put:?}");
    }
    let siblings = dynamo(&["get", "default", "greeting"], &nodes, &certs);
    assert_eq!(
        siblings.status.code(),
        Some(4),
        "siblings exit 4: {siblings:?}"
    );
    assert!(stdout(&siblings).contains("hi") && stdout(&siblings).contains("hey"));

    let json = dynamo(&["get", "default", "greeting", "--json"], &nodes, &certs);
    let read: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let context = read["context"].as_str().expect("context").to_owned();
    let delete = dynamo(
        &["delete", "default", "greeting", "--context", &context],
        &nodes,
        &certs,
    );
    assert!(delete.status.success(), "{delete:?}");
    let gone = dynamo(&["get", "default", "greeting"], &nodes, &certs);
    assert_eq!(gone.status.code(), Some(3));

    // Issue 14: a bucket's resolver, its typed cart operations, and what a resolved get shows.
    let run = |args: &[&str]| dynamo(args, &nodes, &certs);
    let created = run(&["bucket", "create", "shop", "--resolver", "cart"]);
    assert!(created.status.success(), "{created:?}");
    let listed = stdout(&run(&["bucket", "list"]));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("shop") && l.ends_with("cart")),
        "{listed}"
    );
    for (args, expected) in [
        (
            &["cart", "add", "shop", "alice", "kibble"][..],
            "added kibble",
        ),
        (&["cart", "add", "shop", "alice", "toy"], "added toy"),
        (
            &["cart", "remove", "shop", "alice", "kibble"],
            "removed kibble",
        ),
        (
            &["cart", "remove", "shop", "alice", "kibble"],
            "kibble was not in the cart",
        ),
        (&["cart", "show", "shop", "alice"], "cart (1):\n  toy"),
        (
            &["get", "shop", "alice"],
            "toy\nresolved by cart: one version",
        ),
    ] {
        let output = run(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert!(
            stdout(&output).contains(expected),
            "{args:?}: {}",
            stdout(&output)
        );
    }
    // Bad input gets a clear error: raw bytes in a cart bucket, cart commands elsewhere, a
    // resolver that does not exist, a resolver changed after creation.
    for (args, says) in [
        (
            &["put", "shop", "bob", "kibble"][..],
            "write it with `dynamo cart add`",
        ),
        (
            &["cart", "add", "default", "alice", "kibble"],
            "resolves by siblings",
        ),
        (
            &["bucket", "create", "b2", "--resolver", "crdt"],
            "unknown resolver",
        ),
        (
            &[
                "bucket",
                "create",
                "shop",
                "--resolver",
                "union",
                "--update",
            ],
            "chosen when it is created",
        ),
    ] {
        let output = run(args);
        assert!(!output.status.success(), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    // Issue 16: `dynamo bench` runs a workload and the transport ceiling through the binary.
    for (args, op) in [
        (
            &[
                "bench",
                "--workload",
                "a",
                "--ops",
                "200",
                "--concurrency",
                "4",
                "--json",
            ][..],
            "all",
        ),
        (
            &[
                "bench",
                "--transport",
                "--ops",
                "100",
                "--concurrency",
                "4",
                "--json",
            ],
            "ping",
        ),
    ] {
        let output = run(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        let expected = if op == "ping" { 100 } else { 200 };
        assert_eq!(report["ops"], expected, "{report}");
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        let last = report["operations"]
            .as_array()
            .and_then(|ops| ops.last())
            .cloned();
        assert_eq!(
            last.map(|row| row["op"].clone()),
            Some(op.into()),
            "{report}"
        );
    }
    let plots = dir.path().join("plots");
    let plot_dir = plots.to_string_lossy().into_owned();
    let plotted = run(&[
        "bench",
        "--workload",
        "c",
        "--ops",
        "50",
        "--plot",
        &plot_dir,
    ]);
    assert!(plotted.status.success(), "{plotted:?}");
    for file in ["latency.svg", "throughput.svg"] {
        let svg = std::fs::read_to_string(plots.join(file)).expect("plot written");
        assert!(
            svg.starts_with("<svg") && svg.contains("all operations"),
            "{file}"
        );
    }

    let status = dynamo(&["status", "--json"], &nodes, &certs);
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .all(|m| m["up"] == true && m["in_ring"] == true)
    );

    // Shares a person can add up: primary partitions sum to 100%, replicas to N x 100%.
    let sum = |field: &str| -> f64 {
        members
            .iter()
            .map(|m| m[field].as_f64().expect(field))
            .sum()
    };
    assert!((sum("primary_percent") - 100.0).abs() < 0.5, "{members:?}");
    assert!(
        (sum("replicated_percent") - 300.0).abs() < 0.5,
        "{members:?}"
    );

    let human = dynamo(&["status"], &nodes, &certs);
    assert!(stdout(&human).contains("node-1") && stdout(&human).contains("UP"));
    let header = stdout(&human).lines().nth(1).unwrap_or_default().to_owned();
    assert!(
        header.starts_with("state") && header.contains("primary") && header.contains("replicated"),
        "every column has a header: {header}"
    );

    // A second dev cluster in the same directory is refused and leaves the first one's files
    // alone (it used to report "up" while seeing the first cluster, and truncate its logs).
    let log = dir.path().join("node-1.log");
    let log_before = std::fs::metadata(&log).expect("log").len();
    let second = Command::new(DYNAMO)
        .args(["dev", "cluster", "--nodes", "3", "--base-port"])
        .arg((base_port + 10).to_string())
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("second dev cluster");
    assert!(!second.status.success(), "{second:?}");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{second:?}"
    );
    assert!(std::fs::metadata(&log).expect("log").len() >= log_before);

    // A usage error is exit code 2, with help a person can act on.
    let usage = dynamo(&["put", "default"], &nodes, &certs);
    assert_eq!(usage.status.code(), Some(2));
    drop(cluster);
}
