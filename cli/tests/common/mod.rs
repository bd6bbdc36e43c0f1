//! What the CLI tests that run a node share: a node process killed when dropped, and a setup
//! that runs `dynamo` with no environment defaults against it.

#![allow(dead_code, unreachable_pub)] // each test file uses a part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) const DYNAMO: &str = env!("CARGO_BIN_EXE_dynamo");

/// A `dynamo dev cluster` process, stopped with SIGTERM (so it stops its nodes) when dropped,
/// also when the test fails.
pub(crate) struct DevCluster(pub(crate) Child);

impl DevCluster {
    /// Starts a 3-node dev cluster in `dir` from `base_port` and waits (bounded) until it says
    /// it is up; returns it with the banner it printed.
    pub(crate) fn start(dir: &Path, base_port: u16) -> (DevCluster, String) {
        let mut child = Command::new(DYNAMO)
            .args(["dev", "cluster", "--nodes", "3", "--base-port"])
            .arg(base_port.to_string())
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dev cluster");
        let output = child.stdout.take().expect("stdout");
        let cluster = DevCluster(child);
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut banner = Vec::new();
        loop {
            let line = lines_rx
                .recv_timeout(Duration::from_secs(90))
                .expect("the dev cluster came up");
            let done = line.contains("Ctrl-C stops the cluster");
            banner.push(line);
            if done {
                return (cluster, banner.join("\n"));
            }
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node (or proxy) process, killed when dropped (also when the test fails).
pub(crate) struct NodeProcess(pub(crate) Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) struct Setup {
    pub(crate) dir: PathBuf,
    pub(crate) address: String,
}

impl Setup {
    /// A setup in `dir` whose node listens on a port from `base` to `base + 3999` (test files
    /// pass different bases, so they can run at once).
    pub(crate) fn new(dir: &Path, base: u16) -> Setup {
        let port = base + (std::process::id() % 4_000) as u16;
        Setup {
            dir: dir.to_path_buf(),
            address: format!("127.0.0.1:{port}"),
        }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("utf-8 path").to_owned()
    }

    /// Runs `dynamo` with `args`, stdin not a terminal, no environment defaults.
    pub(crate) fn dynamo(&self, args: &[&str]) -> Output {
        Command::new(DYNAMO)
            .args(args)
            .env("DYNAMO_NODES", &self.address)
            .env_remove("DYNAMO_CERTS_DIR")
            .env_remove("DYNAMO_IDENTITY")
            .env_remove("DYNAMO_CA_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("run dynamo")
    }

    /// Runs `dynamo` as the identity in certificate directory `certs`.
    pub(crate) fn as_identity(&self, certs: &str, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--certs-dir", certs]);
        self.dynamo(&all)
    }

    /// Creates a cluster CA in directory `name`; returns its path.
    pub(crate) fn init_ca(&self, name: &str) -> String {
        let ca = self.path(name);
        let output = self.dynamo(&["cert", "init", "--ca-dir", &ca]);
        assert!(output.status.success(), "{output:?}");
        ca
    }

    pub(crate) fn issue(&self, ca: &str, dir: &str, role: &str, name: &str) -> Output {
        self.dynamo(&["cert", "issue", "--ca-dir", ca, "--dir", dir, role, name])
    }

    pub(crate) fn start_node(&self, certs: &str) -> Child {
        // Warnings only: nobody reads the pipe while the node runs.
        self.start_node_logging(certs, Stdio::piped(), "warn")
    }

    /// Starts node `n1` on the setup's data directory, its log (`RUST_LOG=filter`) going to
    /// `stderr`.
    pub(crate) fn start_node_logging(&self, certs: &str, stderr: Stdio, filter: &str) -> Child {
        Command::new(DYNAMO)
            .args(["node", "start", "--name", "n1", "--listen", &self.address])
            .args(["--data-dir", &self.path("data"), "--certs-dir", certs])
            .args(["--partitions", "8"])
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start node")
    }
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub(crate) fn assert_refused(output: &Output, expected: &str) {
    assert!(!output.status.success(), "not refused: {output:?}");
    assert!(
        stderr(output).contains(expected),
        "expected {expected:?} in: {}",
        stderr(output)
    );
}

impl Setup {
    /// Waits (bounded) until the node answers `status` for the identity in `certs`.
    pub(crate) fn wait_until_serving(&self, certs: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.as_identity(certs, &["status"]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "the node did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
