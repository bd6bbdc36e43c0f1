//! A full-cluster restart of real `dynamo` processes after `kill -9` of every node (issue 10):
//! the custom bucket comes back with its N/R/W and every key written at W = N is readable.
//! Before node state lived in the store, the bucket table lived only in gossip and a custom
//! bucket vanished when every node stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DYNAMO: &str = env!("CARGO_BIN_EXE_dynamo");
const KEYS: usize = 20;

/// Node processes, killed with SIGKILL when dropped (also when the test fails).
struct Nodes {
    children: Vec<Child>,
}

impl Nodes {
    fn kill_all(&mut self) {
        for child in &mut self.children {
            let _ = child.kill(); // SIGKILL: no shutdown, no flush
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.kill_all();
    }
}

struct Setup {
    dir: PathBuf,
    certs: PathBuf,
    addresses: Vec<String>,
}

impl Setup {
    fn dynamo(&self, args: &[&str]) -> Output {
        Command::new(DYNAMO)
            .args(args)
            .env("DYNAMO_NODES", self.addresses.join(","))
            .env("DYNAMO_CERTS_DIR", &self.certs)
            .env("DYNAMO_IDENTITY", "admin")
            .output()
            .expect("run dynamo")
    }

    fn start_nodes(&self) -> Nodes {
        let children = (0..self.addresses.len())
            .map(|i| self.start_node(i))
            .collect();
        Nodes { children }
    }

    /// Starts node `i` (`n{i+1}`); the first one founds the cluster, the others join it. Every
    /// node runs anti-entropy every second (settings from a config file, as an operator would).
    fn start_node(&self, i: usize) -> Child {
        let config = self.dir.join("node.toml");
        std::fs::write(&config, "anti_entropy_interval_ms = 1000\n").expect("write config");
        let address = &self.addresses[i];
        {
            let name = format!("n{}", i + 1);
            let mut command = Command::new(DYNAMO);
            command
                .args(["node", "start", "--name", &name, "--listen", address])
                .arg("--data-dir")
                .arg(self.dir.join(&name))
                .arg("--certs-dir")
                .arg(&self.certs)
                .args(["--partitions", "16"])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command.arg("--config").arg(&config);
            if i > 0 {
                command.args(["--seed", &self.addresses[0]]);
            }
            let child = command.spawn().expect("start a node");
            if i == 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
            child
        }
    }

    /// Waits for the cluster, creates bucket `carts` (N=3, R=2, W=3) and writes `k{i}` =
    /// `v{i}` for every i below KEYS.
    fn create_carts_and_write_keys(&self) {
        self.wait_until_up();
        let created = self.dynamo(&[
            "bucket", "create", "carts", "--n", "3", "--r", "2", "--w", "3",
        ]);
        assert!(created.status.success(), "{created:?}");
        for i in 0..KEYS {
            let put = || self.dynamo(&["put", "carts", &format!("k{i}"), &format!("v{i}")]);
            // Every node sees every other up, but the last ring may still be on its way.
            let mut output = put();
            for _ in 0..20 {
                if output.status.success() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
                output = put();
            }
            assert!(output.status.success(), "put k{i}: {output:?}");
        }
    }

    /// Waits until `status` through every node shows three members up.
    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self.addresses.iter().all(|address| {
                let output = Command::new(DYNAMO)
                    .args(["status", "--nodes", address])
                    .env("DYNAMO_CERTS_DIR", &self.certs)
                    .env("DYNAMO_IDENTITY", "admin")
                    .output()
                    .expect("run dynamo status");
                let text = String::from_utf8_lossy(&output.stdout);
                // UP, name, address, zone, status, partitions, ...: up, alive and in the ring.
                let ready = text.lines().filter(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.first() == Some(&"UP")
                        && fields.get(4) == Some(&"alive")
                        && fields.get(5).is_some_and(|p| *p != "0")
                });
                output.status.success() && ready.count() == 3
            });
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Certificates and addresses for three nodes; `slot` keeps the tests of this file (which run
/// in parallel, in one process) on different ports.
fn init(dir: &Path, slot: u16) -> Setup {
    let certs = dir.join("certs");
    let certs_arg = certs.to_str().expect("utf-8 path");
    let base = 41_000 + (std::process::id() % 4_000) as u16 * 6 + slot * 3;
    let addresses: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    let setup = Setup {
        dir: dir.to_path_buf(),
        certs: certs.clone(),
        addresses,
    };
    let ca = dir.join("ca");
    let ca_arg = ca.to_str().expect("utf-8 path");
    assert!(
        setup
            .dynamo(&["cert", "init", "--ca-dir", ca_arg])
            .status
            .success()
    );
    let issue = |role: &str, name: &str| {
        let issued = setup.dynamo(&[
            "cert", "issue", "--ca-dir", ca_arg, "--dir", certs_arg, role, name,
        ]);
        assert!(issued.status.success(), "{issued:?}");
    };
    for name in ["n1", "n2", "n3"] {
        issue("--node", name);
    }
    issue("--admin", "admin");
    setup
}

/// Issue 10: `kill -9` of every node, then a restart of every node: the bucket and its keys
/// are all there.
#[test]
fn a_custom_bucket_and_its_keys_survive_kill_9_of_every_node() {
    let dir = tempfile::tempdir().expect("dir");
    let setup = init(dir.path(), 0);
    let mut nodes = setup.start_nodes();
    setup.create_carts_and_write_keys();
    nodes.kill_all();

    let _nodes = setup.start_nodes();
    setup.wait_until_up();
    for address in &setup.addresses {
        let listed = setup.dynamo(&["bucket", "list", "--nodes", address]);
        let listing = text(&listed);
        let carts = listing
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&"carts"));
        assert_eq!(
            carts.as_deref(),
            Some(&["carts", "3", "2", "3", "0", "0"][..]),
            "bucket list through {address}: {listing}"
        );
    }
    for i in 0..KEYS {
        let got = setup.dynamo(&["get", "carts", &format!("k{i}")]);
        assert!(got.status.success(), "get k{i}: {got:?}");
        assert_eq!(text(&got).lines().next(), Some(format!("v{i}").as_str()));
    }
}

/// Keys stored on stopped node `n{index+1}`, read from its store directly.
fn keys_on_disk(setup: &Setup, index: usize) -> usize {
    use dynamo_storage::{FjallStore, Store, StoreOptions};
    let name = format!("n{}", index + 1);
    let options = StoreOptions::new(name.clone(), 1);
    let store: FjallStore<dynamo_quorum::Value> =
        FjallStore::open(setup.dir.join(&name).join("store"), &options).expect("open the store");
    let prefix = dynamo_node::protocol::storage_key("carts", b"k");
    (0..16)
        .map(|partition| {
            store
                .scan_partition(partition, None, 100_000)
                .expect("scan")
                .iter()
                .filter(|(key, _)| key.starts_with(&prefix))
                .count()
        })
        .sum()
}

/// Issue 11: a node whose disk was wiped (`kill -9`, data directory deleted, restarted under
/// the same name) is refilled by Merkle anti-entropy alone: no client reads anything, and its
/// store holds every key within seconds. Before anti-entropy it held 0 of 300 after 7 minutes.
#[test]
fn a_wiped_node_is_refilled_by_anti_entropy_without_reads() {
    let dir = tempfile::tempdir().expect("dir");
    let setup = init(dir.path(), 1);
    let mut nodes = setup.start_nodes();
    setup.create_carts_and_write_keys();
    // kill -9 node 3 and lose its disk.
    let mut third = nodes.children.remove(2);
    let _ = third.kill();
    let _ = third.wait();
    std::fs::remove_dir_all(setup.dir.join("n3")).expect("wipe n3");
    nodes.children.push(setup.start_node(2));
    setup.wait_until_up();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_secs(3));
        let mut third = nodes.children.remove(2);
        let _ = third.kill();
        let _ = third.wait();
        let held = keys_on_disk(&setup, 2);
        if held == KEYS {
            break;
        }
        assert!(Instant::now() < deadline, "n3 holds {held} of {KEYS} keys");
        nodes.children.push(setup.start_node(2));
    }
}
