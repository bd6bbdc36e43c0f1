//! A node whose disk fills up (issue 26): one node of three on a small tmpfs (needs root to
//! mount it; skips with a message otherwise) under a write load of 32 KiB values.
//!
//! Before: its store was poisoned by a failed journal write ("storage engine error:
//! Poisoned"), 30% of the cluster's writes failed because the full node kept coordinating, it
//! stayed UP, and it never recovered until restarted. Now: it refuses writes before the disk
//! runs out, shows FULL, the cluster's writes go on without a failure, it serves reads, and
//! once space returns it takes writes again and anti-entropy catches it up, without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dynamo_client::Client;
use dynamo_client::client::GetOutcome;
use dynamo_client::tls::Role;
use dynamo_node::NodeConfig;
use dynamo_protocol::{Request, RequestOptions, Response};
use dynamo_quorum::{ReplicaReply, ReplicaRequest};
use dynamo_tests::TestCluster;

/// Where the small disk is mounted, for [`on_small_disk`] (a `fn` pointer cannot capture it).
static SMALL_DISK: OnceLock<PathBuf> = OnceLock::new();
const SMALL_DISK_MIB: u64 = 320;
const RESERVE_MIB: u64 = 160;
const VALUE_BYTES: usize = 32 * 1024;

/// node-3 keeps its data on the small disk.
fn on_small_disk(config: &mut NodeConfig) {
    if config.name == "node-3"
        && let Some(disk) = SMALL_DISK.get()
    {
        config.data_dir = disk.join(&config.name);
        config.disk_reserve_bytes = RESERVE_MIB << 20;
    }
}

/// A tmpfs of `mib` MiB at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let size = format!("size={mib}m");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("mount -t tmpfs failed ({status}); it needs root"));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, mib: u64) {
        let option = format!("remount,size={mib}m");
        let status = Command::new("mount")
            .args(["-o", &option])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(status.success(), "resizing the tmpfs failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Whether `node` (by name) shows a full disk in `address`'s status.
async fn shows_full(client: &Client, node: &str) -> bool {
    client
        .status()
        .await
        .is_ok_and(|status| status.members.iter().any(|m| m.id == node && m.disk_full))
}

/// Keys of `keys` that node `address` itself holds (asked as a peer, so no other replica
/// answers for it).
async fn held_by(cluster: &TestCluster, address: SocketAddr, keys: &[String]) -> usize {
    let peer = Client::new(
        &cluster.tls_as(Role::Node, "checker"),
        vec![address],
        Duration::from_secs(5),
    )
    .expect("peer client");
    let Ok(Some(ring)) = peer.ring().await else {
        return 0;
    };
    let mut held = 0;
    for key in keys {
        let skey = dynamo_protocol::storage_key("default", key.as_bytes());
        let request = Request::Replica {
            partition: ring.partition_of_key(&skey),
            request: ReplicaRequest::Read { key: skey },
        };
        if let Ok(Response::Replica(ReplicaReply::Found(_))) =
            peer.request_to(address, &request).await
        {
            held += 1;
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_loses_nothing_and_recovers_by_itself() {
    let base = tempfile::tempdir().expect("temporary directory");
    let tmpfs = match Tmpfs::mount(&base.path().join("small"), SMALL_DISK_MIB) {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            eprintln!("skipped: no small disk for this test ({reason})");
            return;
        }
    };
    SMALL_DISK.set(tmpfs.0.clone()).expect("set once");
    let cluster = TestCluster::start_with(3, on_small_disk).await;
    let client = cluster.client();
    let observer = cluster.client_of(cluster.addresses()[0]);
    let full_node = cluster.addresses()[2];
    let options = RequestOptions::default();
    let value = vec![7u8; VALUE_BYTES];

    // Write until node-3 shows FULL, then as many again: no write may fail once it is full.
    let mut keys = Vec::new();
    let mut failed_before_full = 0;
    let mut full_after = None;
    let limit = (SMALL_DISK_MIB << 20) as usize / VALUE_BYTES * 2;
    while keys.len() < limit && full_after.is_none_or(|at: usize| keys.len() < 2 * at) {
        let key = format!("fill{}", keys.len());
        let written = client
            .put("default", key.as_bytes(), value.clone(), None, options)
            .await;
        match (written, full_after) {
            (Ok(_), _) => keys.push(key),
            (Err(error), None) => {
                failed_before_full += 1;
                eprintln!("a write failed while node-3 filled up: {error}");
                assert!(failed_before_full <= 5, "writes keep failing: {error}");
            }
            (Err(error), Some(_)) => panic!("a write failed with node-3 full: {error}"),
        }
        if full_after.is_none() && keys.len() % 50 == 0 && shows_full(&observer, "node-3").await {
            full_after = Some(keys.len());
        }
    }
    let full_after = full_after.expect("node-3's disk never filled up");
    eprintln!(
        "node-3 full after {full_after} writes; {} acknowledged in all, {failed_before_full} failed",
        keys.len()
    );
    // A full node serves reads of what it has.
    let first = cluster
        .client_of(full_node)
        .get("default", keys[0].as_bytes(), options)
        .await
        .expect("a read through the full node");
    assert!(matches!(first, GetOutcome::Found(_)), "{first:?}");
    let held_while_full = held_by(&cluster, full_node, &keys).await;
    assert!(
        held_while_full < keys.len(),
        "node-3 held every key while full"
    );

    // Space returns: no restart; node-3 takes writes again and catches up.
    tmpfs.resize(1024);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    loop {
        let held = held_by(&cluster, full_node, &keys).await;
        if held == keys.len() && !shows_full(&observer, "node-3").await {
            break;
        }
        if Instant::now() >= deadline {
            let own = cluster.client_of(full_node).status().await.expect("status");
            let ae = &own.anti_entropy;
            panic!(
                "node-3 holds {held} of {} keys 120 s after space returned; full as node-1 \
                 sees it: {}; node-3's anti-entropy: in progress {:?}, repaired {}, \
                 throttled {:?}, allowed {} B/s",
                keys.len(),
                shows_full(&observer, "node-3").await,
                ae.in_progress,
                ae.repaired_keys,
                ae.throttled,
                ae.allowed_bytes_per_sec,
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "node-3 held {held_while_full} of {} keys while full; caught up {:.1} s after space returned",
        keys.len(),
        started.elapsed().as_secs_f64()
    );
    // Its store was never poisoned: a write it coordinates itself succeeds.
    cluster
        .client_of(full_node)
        .put("default", b"after", b"room".to_vec(), None, options)
        .await
        .expect("a write through node-3 after space returned");
    let all = RequestOptions {
        r: Some(3),
        ..options
    };
    for key in &keys {
        let read = client.get("default", key.as_bytes(), all).await;
        assert!(
            matches!(&read, Ok(GetOutcome::Found(reply)) if reply.values == [value.clone()]),
            "{key}: {read:?}"
        );
    }
    cluster.shutdown().await;
    drop(tmpfs);
}
