//! Issue 29, backup and restore that keep causality, with the `dynamo` binary as a user runs
//! it against real nodes (in-process, over QUIC with mutual TLS):
//!
//! - a backup taken while a node is down holds every key with every version (siblings,
//!   tombstones), and one cut short and resumed equals one never interrupted;
//! - restored into a fresh cluster, a backup of that cluster equals the original key by key,
//!   dots included, and restoring twice changes nothing;
//! - restored into the cluster after it moved on, an overwrite and a delete made since stay;
//! - a backup older than a cluster's tombstone grace is refused unless the operator accepts
//!   that deleted keys may come back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dynamo_client::Client;
use dynamo_client::client::GetOutcome;
use dynamo_protocol::{BucketProps, RequestOptions};
use dynamo_tests::process::dynamo_binary;
use dynamo_tests::{TestCluster, sorted_values};

/// Runs `dynamo ARGS` as the cluster's admin; returns its exit code and what it printed.
async fn dynamo(cluster: &TestCluster, args: &[&str]) -> (i32, String) {
    let nodes: Vec<String> = cluster
        .addresses()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut command = std::process::Command::new(dynamo_binary());
    command
        .args(args)
        .env("DYNAMO_NODES", nodes.join(","))
        .env("DYNAMO_CERTS_DIR", cluster.certs_dir())
        .env("DYNAMO_IDENTITY", "tester");
    // The nodes run on this runtime: the command waits on a thread of its own.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run dynamo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// `dynamo backup` of the whole cluster into `path`, which must succeed.
async fn backup(cluster: &TestCluster, path: &Path, extra: &[&str]) -> String {
    let path = path.to_str().expect("path");
    let mut args = vec!["backup", "--out", path];
    args.extend_from_slice(extra);
    let (code, text) = dynamo(cluster, &args).await;
    assert_eq!(code, 0, "dynamo backup {extra:?}: {text}");
    text
}

async fn restore(cluster: &TestCluster, path: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["restore", path.to_str().expect("path")];
    args.extend_from_slice(extra);
    dynamo(cluster, &args).await
}

/// `dynamo compare-backups`: whether the two hold the same keys with the same versions.
async fn same_backups(cluster: &TestCluster, first: &Path, second: &Path) -> (bool, String) {
    let args = [
        "compare-backups",
        first.to_str().expect("path"),
        second.to_str().expect("path"),
    ];
    let (code, text) = dynamo(cluster, &args).await;
    (code == 0, text)
}

async fn values(client: &Client, key: &str) -> Vec<String> {
    let read = client
        .get("carts", key.as_bytes(), RequestOptions::default())
        .await;
    sorted_values(&read.expect("read"))
}

async fn context(client: &Client, key: &str) -> Option<String> {
    match client
        .get("carts", key.as_bytes(), RequestOptions::default())
        .await
        .expect("read")
    {
        GetOutcome::Found(reply) => Some(reply.context),
        GetOutcome::NotFound { context } => (!context.is_empty()).then_some(context),
    }
}

async fn put(client: &Client, key: &str, value: &str, context: Option<String>) {
    client
        .put(
            "carts",
            key.as_bytes(),
            value.as_bytes().to_vec(),
            context,
            RequestOptions::default(),
        )
        .await
        .expect("write");
}

/// Keys `cart0..cart120` in bucket `carts` of `cluster`: every fifth with two siblings, every
/// seventh deleted. Then, with anti-entropy off, replicas made to differ: `late0..late20` and
/// a sibling of `cart1` written while node 3 was stopped, a sibling of `cart2` while node 2
/// was; node 1 is left stopped, so nodes 2 and 3 each lack a sibling the other holds.
async fn fill(cluster: &mut TestCluster) {
    let client = &cluster.client();
    client
        .create_bucket(BucketProps::new("carts"))
        .await
        .expect("bucket");
    for i in 0..120 {
        let key = format!("cart{i}");
        put(client, &key, &format!("v{i}"), None).await;
        if i % 5 == 0 {
            put(client, &key, &format!("sibling{i}"), None).await;
        }
        if i % 7 == 0 {
            client
                .delete("carts", key.as_bytes(), None, RequestOptions::default())
                .await
                .expect("delete");
        }
    }
    cluster.stop(2).await;
    for i in 0..20 {
        put(client, &format!("late{i}"), "while node-3 was down", None).await;
    }
    put(client, "cart1", "only on nodes 1 and 2", None).await;
    cluster.restart(2).await;
    cluster.wait_for_members(3).await;
    cluster.stop(1).await;
    // Restarted nodes listen on new ports: a client of the running ones.
    let client = &cluster.client();
    put(client, "cart2", "only on nodes 1 and 3", None).await;
    cluster.stop(0).await;
    cluster.restart(1).await;
    cluster.wait_for_members(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_every_version_and_resurrects_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str| -> PathBuf { dir.path().join(name) };
    // Anti-entropy off: the replicas stay as `fill` leaves them until a read repairs them.
    let mut source = TestCluster::start_with(3, |config| config.anti_entropy_interval_ms = 0).await;
    fill(&mut source).await;

    // With node 1 down: every key, with the versions of both replicas that are up.
    let text = backup(&source, &file("full.backup"), &["--page-keys", "7"]).await;
    assert!(
        text.contains("backed up 140 keys (18 deleted) of 2 buckets"),
        "{text}"
    );

    // One bucket, cut short anywhere, then resumed without naming the bucket again: the same
    // backup as one never interrupted.
    let carts = ["--bucket", "carts", "--page-keys", "7"];
    let text = backup(&source, &file("carts.backup"), &carts).await;
    assert!(
        text.contains("backed up 140 keys (18 deleted) of 1 bucket "),
        "{text}"
    );
    let bytes = std::fs::read(file("carts.backup")).expect("read");
    for cut in [bytes.len() / 3, bytes.len() / 2 + 5, bytes.len() - 3] {
        std::fs::write(file("cut.backup"), &bytes[..cut]).expect("write");
        let resume = ["--resume", "--page-keys", "7"];
        let text = backup(&source, &file("cut.backup"), &resume).await;
        assert!(text.contains("resumed"), "{text}");
        let (same, text) = same_backups(&source, &file("carts.backup"), &file("cut.backup")).await;
        assert!(same, "cut at {cut}: {text}");
        std::fs::remove_file(file("cut.backup")).expect("remove");
    }
    std::fs::write(file("cut.backup"), &bytes[..bytes.len() / 2]).expect("write");
    let (code, text) = dynamo(
        &source,
        &[
            "backup",
            "--out",
            file("full.backup").to_str().expect("path"),
        ],
    )
    .await;
    assert_ne!(code, 0, "an existing file is not overwritten");
    assert!(text.contains("--resume"), "{text}");

    // A fresh cluster, restored twice: the same keys with the same versions. An interrupted
    // backup restores what it holds and says it is incomplete; a bucket it lacks is refused.
    let fresh = TestCluster::start(3).await;
    let (code, text) = restore(&fresh, &file("cut.backup"), &[]).await;
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("incomplete"), "{text}");
    let (code, text) = restore(&fresh, &file("full.backup"), &["--bucket", "nosuch"]).await;
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("holds no bucket nosuch"), "{text}");
    for round in 0..2 {
        let (code, text) = restore(&fresh, &file("full.backup"), &[]).await;
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("restored 140 keys of 2 buckets"), "{text}");
        let copy = file(&format!("fresh{round}.backup"));
        backup(&fresh, &copy, &[]).await;
        let (same, text) = same_backups(&fresh, &file("full.backup"), &copy).await;
        assert!(same, "round {round}: {text}");
    }
    let fresh_client = fresh.client();
    assert_eq!(values(&fresh_client, "cart5").await, ["sibling5", "v5"]);
    assert!(values(&fresh_client, "cart7").await.is_empty());
    assert_eq!(
        values(&fresh_client, "late3").await,
        ["while node-3 was down"]
    );
    assert_eq!(
        values(&fresh_client, "cart1").await,
        ["only on nodes 1 and 2", "v1"]
    );
    assert_eq!(
        values(&fresh_client, "cart2").await,
        ["only on nodes 1 and 3", "v2"]
    );

    // The source moves on: an overwrite, a delete, a new key; then the restore.
    source.restart(0).await;
    source.wait_for_members(3).await;
    let client = source.client();
    let overwrite = context(&client, "cart5").await;
    put(&client, "cart5", "resolved", overwrite).await;
    client
        .delete("carts", b"cart6", None, RequestOptions::default())
        .await
        .expect("delete");
    put(&client, "new", "after the backup", None).await;
    let (code, text) = restore(&source, &file("full.backup"), &[]).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(values(&client, "cart5").await, ["resolved"]);
    assert!(
        values(&client, "cart6").await.is_empty(),
        "a later delete stays"
    );
    assert_eq!(values(&client, "cart10").await, ["sibling10", "v10"]);
    assert_eq!(values(&client, "new").await, ["after the backup"]);

    // A backup older than the tombstone grace: refused, then restored when accepted.
    let short_grace = TestCluster::start_with(1, |config| config.tombstone_grace_ms = 1_000).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (code, text) = restore(&short_grace, &file("full.backup"), &[]).await;
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("--allow-resurrection"), "{text}");
    let replicas_of_one = ["--allow-resurrection", "--w", "1"];
    let (code, text) = restore(&short_grace, &file("full.backup"), &replicas_of_one).await;
    assert_eq!(code, 0, "{text}");

    fresh.shutdown().await;
    short_grace.shutdown().await;
    source.shutdown().await;
}
