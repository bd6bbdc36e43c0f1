//! Real `dynamo` node processes for the examples that measure what a user would see: the
//! binary from the same target directory, a child killed when dropped, its memory, and
//! SIGSTOP/SIGCONT.
//!
//! This module must not know how nodes work inside; it only starts and signals processes.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamo_client::Client;
use dynamo_client::ca::ClusterCa;
use dynamo_client::tls::{Role, TlsConfig};
use dynamo_protocol::RequestOptions;

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
        Self::start_with(name, address, dir, certs, seed, None)
    }

    /// [`NodeProcess::start`] with a TOML configuration file.
    pub fn start_with(
        name: &str,
        address: SocketAddr,
        dir: &Path,
        certs: &Path,
        seed: Option<SocketAddr>,
        config: Option<&Path>,
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
        if let Some(config) = config {
            command.arg("--config").arg(config);
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

/// The `dynamo` binary of the same target directory as the running program (see
/// [`binary_beside`]).
pub fn dynamo_binary() -> PathBuf {
    binary_beside("dynamo", "cargo build -p dynamo-cli")
}

/// The binary `name` of the same target directory as the running program: beside it (a
/// binary, `target/<profile>/`) or one level up (an example or a test,
/// `target/<profile>/examples/` or `.../deps/`). Panics with `build` (how to make it, with
/// `--release` for a release program) when it is not there.
pub fn binary_beside(name: &str, build: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("this program's path");
    let here = exe.parent().expect("the program's directory");
    let candidates = [Some(here), here.parent()];
    let found = candidates
        .into_iter()
        .flatten()
        .map(|dir| dir.join(name))
        .find(|path| path.exists());
    found.unwrap_or_else(|| {
        panic!(
            "no {name} binary beside {}: build it first ({build}, with --release for a release program)",
            exe.display()
        )
    })
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

/// Three `dynamo` processes (`n1` founds, the others join it) under `dir`, with a throwaway CA,
/// and a client identity of it.
pub struct ProcessCluster {
    /// The node processes, `n1` first.
    pub nodes: Vec<NodeProcess>,
    /// Their addresses.
    pub addresses: Vec<SocketAddr>,
    /// A client certificate of the cluster.
    pub tls: TlsConfig,
    dir: PathBuf,
    certs: PathBuf,
    config: Option<PathBuf>,
}

impl ProcessCluster {
    /// Starts `count` nodes with the node settings `config` (TOML, if any) and waits until
    /// every member is up and in the ring.
    pub async fn start(dir: &Path, count: usize, config: Option<&str>) -> ProcessCluster {
        let certs = dir.join("certs");
        let ca = ClusterCa::generate("measure").expect("CA");
        ca.install_cert(&certs).expect("CA certificate");
        let config = config.map(|text| {
            let path = dir.join("node.toml");
            std::fs::write(&path, text).expect("write the node configuration");
            path
        });
        let addresses: Vec<SocketAddr> = (0..count).map(|_| free_address()).collect();
        let tls = TlsConfig::new(
            ca.cert_pem(),
            &ca.issue(Role::Client, "app").expect("client certificate"),
        )
        .expect("tls");
        let mut cluster = ProcessCluster {
            nodes: Vec::new(),
            addresses,
            tls,
            dir: dir.to_path_buf(),
            certs,
            config,
        };
        for i in 0..count {
            ca.issue(Role::Node, &format!("n{}", i + 1))
                .expect("certificate")
                .save(&cluster.certs, false)
                .expect("save");
            let node = cluster.start_node(i);
            cluster.nodes.push(node);
            if i == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        cluster.wait_until_up(count).await;
        cluster
    }

    /// Starts node `index` (again) on its data directory.
    pub fn start_node(&self, index: usize) -> NodeProcess {
        let seed = (index > 0).then_some(self.addresses[0]);
        NodeProcess::start_with(
            &format!("n{}", index + 1),
            self.addresses[index],
            &self.dir,
            &self.certs,
            seed,
            self.config.as_deref(),
        )
    }

    /// A new client of the cluster.
    pub fn client(&self) -> Client {
        Client::new(&self.tls, self.addresses.clone(), Duration::from_secs(5)).expect("client")
    }

    /// Waits (bounded) until some node sees `count` members up and in the ring.
    pub async fn wait_until_up(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .client()
                .status()
                .await
                .is_ok_and(|s| s.members.iter().filter(|m| m.in_ring && m.up).count() == count);
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not form");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Writes `k0..k{keys}` with 1 KiB values at `options`, retrying while the last ring is
    /// still spreading.
    pub async fn write_keys(&self, client: &Client, keys: u32, options: RequestOptions) {
        for i in 0..keys {
            let mut attempts = 0;
            while let Err(error) = client
                .put(
                    "default",
                    format!("k{i}").as_bytes(),
                    vec![1; 1024],
                    None,
                    options,
                )
                .await
            {
                attempts += 1;
                assert!(attempts < 50, "writing k{i}: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Latencies and failures of a closed-loop load.
#[derive(Default)]
pub struct LoadReport {
    /// Get latencies, sorted.
    pub gets: Vec<Duration>,
    /// Put latencies, sorted.
    pub puts: Vec<Duration>,
    /// Requests that failed.
    pub failures: usize,
    /// The first failure's error, to say what failed.
    pub first_failure: Option<String>,
}

impl LoadReport {
    /// One line per operation: count, p50, p99, p99.9 and max.
    pub fn print(&self, label: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        for (what, samples) in [("get", &self.gets), ("put", &self.puts)] {
            println!(
                "{label}: {what} x{}: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
                samples.len(),
                ms(percentile(samples, 0.5)),
                ms(percentile(samples, 0.99)),
                ms(percentile(samples, 0.999)),
                ms(samples.last().copied().unwrap_or_default()),
            );
        }
        match &self.first_failure {
            Some(error) => println!(
                "{label}: {} requests failed, the first with: {error}",
                self.failures
            ),
            None => println!("{label}: 0 requests failed"),
        }
    }
}

/// Runs `concurrency` workers for `duration`, each doing 50% gets and 50% blind 1 KiB puts of
/// keys `k0..k{keys}` chosen by a fixed pseudo-random sequence.
pub async fn run_load(
    client: Arc<Client>,
    duration: Duration,
    concurrency: usize,
    keys: u64,
) -> LoadReport {
    let until = Instant::now() + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let client = client.clone();
        workers.spawn(async move {
            let mut report = LoadReport::default();
            let mut i = worker as u64;
            while Instant::now() < until {
                i = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let key = format!("k{}", (i >> 33) % keys);
                let started = Instant::now();
                let options = RequestOptions::default();
                let outcome = if i & (1 << 40) == 0 {
                    let outcome = client
                        .get("default", key.as_bytes(), options)
                        .await
                        .map(drop);
                    report.gets.push(started.elapsed());
                    outcome
                } else {
                    let value = vec![2; 1024];
                    let outcome = client
                        .put("default", key.as_bytes(), value, None, options)
                        .await
                        .map(drop);
                    report.puts.push(started.elapsed());
                    outcome
                };
                if let Err(error) = outcome {
                    report.failures += 1;
                    report
                        .first_failure
                        .get_or_insert_with(|| error.to_string());
                }
            }
            report
        });
    }
    let mut total = LoadReport::default();
    while let Some(joined) = workers.join_next().await {
        let report = joined.expect("worker");
        total.gets.extend(report.gets);
        total.puts.extend(report.puts);
        total.failures += report.failures;
        total.first_failure = total.first_failure.or(report.first_failure);
    }
    total.gets.sort();
    total.puts.sort();
    total
}
