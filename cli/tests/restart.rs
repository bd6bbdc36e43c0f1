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
        let mut children = Vec::new();
        for (i, address) in self.addresses.iter().enumerate() {
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
            if i > 0 {
                command.args(["--seed", &self.addresses[0]]);
            }
            children.push(command.spawn().expect("start a node"));
            if i == 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Nodes { children }
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

fn init(dir: &Path) -> Setup {
    let certs = dir.join("certs");
    let certs_arg = certs.to_str().expect("utf-8 path");
    let base = 41_000 + (std::process::id() % 15_000) as u16;
    let addresses: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    let setup = Setup {
        dir: dir.to_path_buf(),
        certs: certs.clone(),
        addresses,
    };
    assert!(
        setup
            .dynamo(&["cert", "init", "--dir", certs_arg])
            .status
            .success()
    );
    for name in ["n1", "n2", "n3"] {
        let issued = setup.dynamo(&["cert", "issue", "--dir", certs_arg, "--node", name]);
        assert!(issued.status.success(), "{issued:?}");
    }
    let issued = setup.dynamo(&["cert", "issue", "--dir", certs_arg, "--client", "admin"]);
    assert!(issued.status.success(), "{issued:?}");
    setup
}

/// Issue 10: `kill -9` of every node, then a restart of every node: the bucket and its keys
/// are all there.
#[test]
fn a_custom_bucket_and_its_keys_survive_kill_9_of_every_node() {
    let dir = tempfile::tempdir().expect("dir");
    let setup = init(dir.path());
    let mut nodes = setup.start_nodes();
    setup.wait_until_up();
    let created = setup.dynamo(&[
        "bucket", "create", "carts", "--n", "3", "--r", "2", "--w", "3",
    ]);
    assert!(created.status.success(), "{created:?}");
    for i in 0..KEYS {
        // Every node sees every other up, but the last ring may still be on its way.
        let mut put = setup.dynamo(&["put", "carts", &format!("k{i}"), &format!("v{i}")]);
        for _ in 0..20 {
            if put.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            put = setup.dynamo(&["put", "carts", &format!("k{i}"), &format!("v{i}")]);
        }
        assert!(put.status.success(), "put k{i}: {put:?}");
    }
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
