//! A `dynamo` cluster deployed as a user deploys one: each node a real process on a host of its
//! own ([`crate::hosts`]), listening on every interface and advertising its name or address, a
//! throwaway cluster CA, and a client host from which the CLI and the Rust client reach it.
//!
//! Hosts `n1`..`nN` run the nodes of the same names; the last host, `c1`, runs clients.
//!
//! This module must not know how nodes work inside; it starts, signals and asks them as a user
//! would.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dynamo_client::ca::ClusterCa;
use dynamo_client::tls::{Role, TlsConfig};

use crate::hosts::{Network, describe};
use crate::process::dynamo_binary;

/// The port every node listens on, on its own host.
pub const PORT: u16 = 7000;

/// What nodes tell peers and clients to dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertise {
    /// Their host names (`n1:7000`), resolved through each host's hosts file.
    Names,
    /// Their IP addresses (`10.77.0.10:7000`).
    Addresses,
}

/// Node processes on hosts, and a client host; every process is killed when dropped.
pub struct HostCluster {
    /// The hosts: `n1`..`nN`, then `c1`.
    pub network: Network,
    /// Node `i`'s process, while it runs (behind a lock, so faults and a workload can share
    /// the cluster).
    nodes: Mutex<Vec<Option<Child>>>,
    count: usize,
    advertise: Advertise,
    dir: tempfile::TempDir,
    ca: ClusterCa,
    extra_args: Vec<String>,
    /// The binary each node runs, where it is not this build's `dynamo` (a rolling upgrade
    /// starts from another build's).
    binaries: Mutex<Vec<Option<PathBuf>>>,
}

impl HostCluster {
    /// Makes `count` node hosts and a client host, starts a node on each (`n1` founds, the
    /// others join through `n1` by the advertised form of its address) and waits until every
    /// member is up and in the ring. `Err` says why this machine cannot make hosts.
    pub fn start(count: usize, advertise: Advertise) -> Result<HostCluster, String> {
        Self::start_with(count, advertise, None)
    }

    /// [`HostCluster::start`] with node settings in TOML for every node.
    pub fn start_with(
        count: usize,
        advertise: Advertise,
        config: Option<&str>,
    ) -> Result<HostCluster, String> {
        let cluster = Self::prepare(count, advertise, config)?;
        cluster.start_all();
        Ok(cluster)
    }

    /// Makes the hosts, the CA and every identity of [`HostCluster::start_with`], and starts
    /// no node: what a node's data directory sits on can be set up first (see
    /// [`HostCluster::data_dir`]), then [`HostCluster::start_all`] starts them.
    pub fn prepare(
        count: usize,
        advertise: Advertise,
        config: Option<&str>,
    ) -> Result<HostCluster, String> {
        let mut names: Vec<String> = (1..=count).map(|i| format!("n{i}")).collect();
        names.push("c1".to_owned());
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let network = Network::create(&names)?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ca = ClusterCa::generate("hosts").map_err(|e| e.to_string())?;
        let mut cluster = HostCluster {
            network,
            nodes: Mutex::new((0..count).map(|_| None).collect()),
            count,
            advertise,
            dir,
            ca,
            extra_args: Vec::new(),
            binaries: Mutex::new(vec![None; count]),
        };
        if let Some(text) = config {
            let path = cluster.dir.path().join("node.toml");
            std::fs::write(&path, text).map_err(|e| e.to_string())?;
            cluster.extra_args = vec!["--config".into(), path.display().to_string()];
        }
        let certs = cluster.certs_dir();
        cluster.ca.install_cert(&certs).map_err(|e| e.to_string())?;
        for i in 0..count {
            cluster
                .ca
                .issue(Role::Node, &format!("n{}", i + 1))
                .and_then(|identity| identity.save(&certs, false))
                .map_err(|e| e.to_string())?;
        }
        let client_certs = cluster.client_certs_dir();
        cluster
            .ca
            .install_cert(&client_certs)
            .map_err(|e| e.to_string())?;
        cluster
            .ca
            .issue(Role::Admin, "ops")
            .and_then(|identity| identity.save(&client_certs, false))
            .map_err(|e| e.to_string())?;
        Ok(cluster)
    }

    /// Starts every node (`n1` first, as the founder) and waits until every member is up and
    /// in the ring.
    pub fn start_all(&self) {
        for i in 0..self.count {
            self.start_node(i);
            if i == 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        self.wait_until_up(self.count, Duration::from_secs(60));
    }

    fn lock_nodes(&self) -> std::sync::MutexGuard<'_, Vec<Option<Child>>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// The directory with the CA certificate and the `ops` admin identity.
    pub fn client_certs_dir(&self) -> PathBuf {
        self.dir.path().join("client-certs")
    }

    /// The host index of the client host.
    pub fn client_host(&self) -> usize {
        self.count
    }

    /// How many node hosts there are.
    pub fn node_count(&self) -> usize {
        self.count
    }

    /// A TLS configuration of a new client identity of the cluster.
    pub fn client_tls(&self, name: &str) -> TlsConfig {
        let identity = self.ca.issue(Role::Client, name).expect("client identity");
        TlsConfig::new(self.ca.cert_pem(), &identity).expect("client TLS")
    }

    /// What the others dial to reach node `i` now.
    pub fn node_address(&self, i: usize) -> String {
        let host = self.network.host(i);
        match self.advertise {
            Advertise::Names => format!("{}:{PORT}", host.name),
            Advertise::Addresses => format!("{}:{PORT}", host.ip),
        }
    }

    /// Every node's address, comma-separated (for `DYNAMO_NODES`).
    pub fn node_addresses(&self) -> String {
        (0..self.count)
            .map(|i| self.node_address(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s log file (its stderr), for the message of a failing test.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}.log", i + 1))
    }

    /// Starts node `i` (again) on its host and data directory; nodes other than `n1` name `n1`
    /// as their seed. Nodes log warnings, or what `DYNAMO_TEST_LOG` says (`RUST_LOG` syntax).
    pub fn start_node(&self, i: usize) {
        let name = format!("n{}", i + 1);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("node log");
        let binary = self
            .binaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)[i]
            .clone()
            .unwrap_or_else(dynamo_binary);
        let mut command = self.network.command(i, binary);
        command
            .args(["node", "start", "--name", &name, "--partitions", "16"])
            .args(["--listen", &format!("0.0.0.0:{PORT}")])
            .args(["--advertise", &self.node_address(i)])
            .arg("--data-dir")
            .arg(self.dir.path().join(&name))
            .arg("--certs-dir")
            .arg(self.certs_dir())
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("DYNAMO_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if i > 0 {
            command.args(["--seed", &self.node_address(0)]);
        }
        self.lock_nodes()[i] = Some(command.spawn().expect("start a node"));
    }

    /// Makes node `i` run `binary` (`None`: this build's `dynamo`) from its next start.
    pub fn use_binary(&self, i: usize, binary: Option<PathBuf>) {
        self.binaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)[i] = binary;
    }

    /// Stops node `i` gracefully (`SIGTERM`), as an operator or a supervisor does, and waits
    /// for it to exit (`kill -9` after 30 s).
    pub fn stop(&self, i: usize) {
        let taken = self.lock_nodes()[i].take();
        let Some(mut child) = taken else { return };
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `kill -9` of node `i`.
    pub fn kill(&self, i: usize) {
        let taken = self.lock_nodes()[i].take();
        if let Some(mut child) = taken {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) to node `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let nodes = self.lock_nodes();
        let child = nodes[i].as_ref().expect("node running");
        let sent = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// Runs `dynamo ARGS` on host `host` as the `ops` admin, with every node as a seed.
    pub fn cli_on(&self, host: usize, args: &[&str]) -> Output {
        self.network
            .command(host, dynamo_binary())
            .args(args)
            .env("DYNAMO_NODES", self.node_addresses())
            .env("DYNAMO_CERTS_DIR", self.client_certs_dir())
            .env("DYNAMO_IDENTITY", "ops")
            .env("DYNAMO_TIMEOUT_MS", "5000")
            .stdin(Stdio::null())
            .output()
            .expect("run dynamo")
    }

    /// Runs `dynamo ARGS` on the client host (see [`HostCluster::cli_on`]).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_on(self.client_host(), args)
    }

    /// `dynamo status --json` from the client host, parsed; `None` while it fails.
    pub fn status(&self) -> Option<serde_json::Value> {
        let output = self.cli(&["status", "--json"]);
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// Waits (bounded by `within`) until the client host sees `count` members up and in the
    /// ring, and returns that status.
    pub fn wait_until_up(&self, count: usize, within: Duration) -> serde_json::Value {
        self.wait_for_status(within, "every member up and in the ring", |status| {
            members(status)
                .iter()
                .filter(|m| m["up"] == true && m["in_ring"] == true)
                .count()
                == count
        })
    }

    /// Waits (bounded by `within`) until the client host's status satisfies `ready`.
    pub fn wait_for_status(
        &self,
        within: Duration,
        what: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            if let Some(status) = self.status() {
                if ready(&status) {
                    return status;
                }
                last = Some(status);
            }
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {what}; the last status was {last:#?}; node logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The tail of every node's log.
    pub fn logs(&self) -> String {
        (0..self.count)
            .map(|i| {
                let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- n{}\n{}", i + 1, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs `dynamo ARGS` on the client host and fails the test unless it succeeds.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "dynamo {} failed: {}",
            args.join(" "),
            describe(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `dynamo ARGS` on the client host until it succeeds (bounded by `within`), and
    /// fails the test with the last failure when it never does.
    pub fn cli_until_ok(&self, args: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let output = self.cli(args);
            if output.status.success() {
                return String::from_utf8_lossy(&output.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "dynamo {} kept failing for {within:?}; the last time: {}\nnode logs:\n{}",
                args.join(" "),
                describe(&output),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The data directory of node `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    /// The working directory of the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The members of a `dynamo status --json`.
pub fn members(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["members"].as_array().cloned().unwrap_or_default()
}

impl Drop for HostCluster {
    fn drop(&mut self) {
        for i in 0..self.count {
            if let Some(child) = &self.lock_nodes()[i] {
                // A paused node would not die of SIGKILL until continued on some kernels.
                let _ = std::process::Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
            }
            self.kill(i);
        }
    }
}
