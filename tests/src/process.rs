//! Real `dynamo` node processes for the examples that measure what a user would see: the
//! binary from the same target directory, a child killed when dropped, its memory, and
//! SIGSTOP/SIGCONT.
//!
//! This module must not know how nodes work inside; it only starts and signals processes.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A node process, killed when dropped.
pub struct NodeProcess(pub Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl NodeProcess {
    /// Starts `dynamo node start` as node `name` listening on `address`, with its data under
    /// `dir/name`, its certificates in `certs`, and `seed` to join through (none founds).
    pub fn start(
        name: &str,
        address: SocketAddr,
        dir: &Path,
        certs: &Path,
        seed: Option<SocketAddr>,
    ) -> NodeProcess {
        let mut command = Command::new(dynamo_binary());
        command
            .args(["node", "start", "--name", name, "--partitions", "16"])
            .arg("--listen")
            .arg(address.to_string())
            .arg("--data-dir")
            .arg(dir.join(name))
            .arg("--certs-dir")
            .arg(certs)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(seed) = seed {
            command.arg("--seed").arg(seed.to_string());
        }
        NodeProcess(command.spawn().expect("start a node"))
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// Resident and peak resident memory, in MiB (Linux).
    pub fn memory_mib(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// The `dynamo` binary beside the running example (`target/<profile>/dynamo`).
pub fn dynamo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("this program's path");
    let dynamo = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("dynamo"))
        .expect("target directory");
    assert!(
        dynamo.exists(),
        "{} is missing: build it first (cargo build --release -p dynamo-cli)",
        dynamo.display()
    );
    dynamo
}

/// A loopback address with a port that was free a moment ago.
pub fn free_address() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
}

/// Latency percentile `p` (0 to 1) of sorted samples.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Command-line argument `i` as a number, or `default` when it is missing or not a number.
pub fn arg_or(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}
