//! `dynamo dev scale`, what `cargo xtask bench --scale` runs (issue 28): what a growing data
//! set costs. For each key count a fresh local 3-node cluster is loaded, then measured: the
//! load rate; reads and blind writes, uniform and zipfian, with throughput and p99.9; resident
//! memory per node; disk bytes per key; the time a restarted node takes to serve again; and
//! the time anti-entropy takes to refill a node whose disk was wiped, and the requests that
//! failed meanwhile. Writes `scale.md` and `scale.jsonl` (a line per key count as soon as it is
//! measured); keep a report to compare a later run with, and a regression in any figure shows.
//!
//! This module must not know how nodes work inside: it starts clusters with `dev`, measures
//! them with `bench` and reads what the nodes' status and the operating system say.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;
use dynamo_client::client::Client;
use dynamo_protocol::{Request, RequestOptions, Response};

use crate::bench::{self, BenchArgs, KeyChoice, Workload, node_addresses, parse_value_size};
use crate::bench_report::Report;
use crate::dev;
use crate::matrix::MATRIX_NODES;

/// `dynamo dev scale`: the scale sweep of issue 28.
#[derive(Args, Clone)]
pub(crate) struct ScaleArgs {
    /// Where the clusters live and the report is written.
    #[arg(long, default_value = "target/bench-report/scale")]
    pub(crate) out: std::path::PathBuf,
    /// Key counts, one fresh cluster each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,100000,1000000",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) keys: Vec<u64>,
    /// Adds 10,000,000 keys: about an hour of loading and 30 GB of disk on a small machine,
    /// so CI does not run it.
    #[arg(long)]
    pub(crate) long: bool,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) seconds: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) concurrency: u64,
    /// Value size in bytes (at most 16 MiB).
    #[arg(long, default_value_t = 1024, value_parser = parse_value_size)]
    pub(crate) value_size: usize,
    /// Port of the first node.
    #[arg(long, default_value_t = 7400)]
    pub(crate) base_port: u16,
    /// How long anti-entropy may take to refill a wiped node before the sweep reports it
    /// unfinished and goes on.
    #[arg(long, default_value_t = 900)]
    pub(crate) refill_limit_seconds: u64,
}

/// The node that is restarted and wiped (the last one, so the founder stays up).
const VICTIM: usize = MATRIX_NODES - 1;

/// What one key count measured.
struct Row {
    keys: u64,
    /// Keys written per second by the load phase.
    load_rate: f64,
    /// (label, ops/s, p99.9 ms) of each run.
    runs: Vec<(String, f64, f64)>,
    /// Failed operations of the load phase and of every run: a figure measured while
    /// requests failed is not comparable.
    errors: u64,
    /// Resident memory of each node after the runs, in MiB.
    rss_mib: Vec<f64>,
    /// Bytes of every node's data directory per key (all replicas together).
    disk_bytes_per_key: f64,
    /// From restarting a node on its disk to its first answered read.
    restart_to_serve: Duration,
    /// From restarting a wiped node to every pair of replicas agreeing; `None`: not within
    /// `--refill-limit-seconds`.
    refill: Option<Duration>,
}

/// Runs the sweep and writes `scale.md` and `scale.jsonl` under `--out`.
pub(crate) async fn run(args: ScaleArgs, log_format: &str) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut counts = args.keys.clone();
    if args.long {
        counts.push(10_000_000);
    }
    let started = Instant::now();
    let jsonl_path = args.out.join("scale.jsonl");
    std::fs::write(&jsonl_path, "").with_context(|| format!("writing {}", jsonl_path.display()))?;
    let mut rows = Vec::new();
    let mut failure = None;
    for (i, &keys) in counts.iter().enumerate() {
        let port = u16::try_from(10 * i)
            .ok()
            .and_then(|offset| args.base_port.checked_add(offset));
        let Some(port) = port else {
            failure = Some(anyhow::anyhow!(
                "--base-port {} leaves no room for {} clusters 10 ports apart",
                args.base_port,
                counts.len()
            ));
            break;
        };
        let dir = args.out.join(format!("cluster-{keys}"));
        let cluster_args = dev::ClusterArgs::local(MATRIX_NODES, dir.clone(), port, "sync");
        let row = match dev::start_fresh(&cluster_args, log_format).await {
            Ok(mut cluster) => measure(&args, keys, &mut cluster).await,
            Err(error) => Err(error),
        };
        let row = match row.with_context(|| format!("measuring {keys} keys")) {
            Ok(row) => row,
            Err(error) => {
                failure = Some(error);
                break;
            }
        };
        // The next count starts from an empty disk.
        let _ = std::fs::remove_dir_all(&dir);
        // Each row is kept as soon as it is measured: a later failure (or Ctrl-C during an
        // hour of loading) does not lose it.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&jsonl_path)
            .with_context(|| format!("writing {}", jsonl_path.display()))?;
        std::io::Write::write_all(&mut file, format!("{}\n", json(&row)).as_bytes())
            .with_context(|| format!("writing {}", jsonl_path.display()))?;
        rows.push(row);
    }
    let report = markdown(&args, &rows, started.elapsed());
    let path = args.out.join("scale.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    outln!("{report}");
    outln!(
        "wrote {} and scale.jsonl in {:.0} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Loads `keys` keys into `cluster` and measures it (see the module doc).
async fn measure(args: &ScaleArgs, keys: u64, cluster: &mut dev::LocalCluster) -> Result<Row> {
    let bench_args = |workload, distribution| {
        BenchArgs::closed_loop(
            workload,
            distribution,
            (keys, args.value_size),
            args.concurrency,
            args.seconds,
        )
    };
    let load = bench_args(Workload::C, KeyChoice::Uniform).load_only();
    let loaded = quiet_run(cluster, load).await?;
    let load_seconds = loaded.load_seconds().unwrap_or(f64::INFINITY);
    let load_rate = keys as f64 / load_seconds;
    let mut errors = loaded.load_failed();
    eprintln!("{keys:>9} keys: loaded at {load_rate:.0} keys/s, {errors} failed");
    let mut runs = Vec::new();
    for distribution in [KeyChoice::Uniform, KeyChoice::Zipfian] {
        for workload in [Workload::C, Workload::W] {
            let report = quiet_run(cluster, bench_args(workload, distribution)).await?;
            let label = format!(
                "{} {}",
                if workload == Workload::C {
                    "reads"
                } else {
                    "blind writes"
                },
                if distribution == KeyChoice::Uniform {
                    "uniform"
                } else {
                    "zipfian"
                }
            );
            let p999 = report.overall_ms()[3];
            eprintln!(
                "{keys:>9} keys: {label:<22} {:>8.0} ops/s  p99.9 {p999:>7.2} ms  errors {}",
                report.throughput(),
                report.error_count()
            );
            errors += report.error_count();
            runs.push((label, report.throughput(), p999));
        }
    }
    let rss_mib = cluster
        .children
        .iter()
        .map(|(_, child)| resident_bytes(child.id()) as f64 / (1024.0 * 1024.0))
        .collect();
    let disk: u64 = (0..MATRIX_NODES)
        .map(|i| dir_bytes(cluster.data_dir(i)))
        .sum();
    let disk_bytes_per_key = disk as f64 / keys as f64;

    let client = dev::client(cluster)?;
    let victim = cluster.addresses[VICTIM];
    cluster.stop(VICTIM);
    let restarted = Instant::now();
    cluster.restart(VICTIM)?;
    serves(&client, victim, Duration::from_secs(300)).await?;
    let restart_to_serve = restarted.elapsed();
    eprintln!(
        "{keys:>9} keys: a restarted node served after {:.2} s",
        restart_to_serve.as_secs_f64()
    );

    cluster.stop(VICTIM);
    let data_dir = cluster.data_dir(VICTIM).to_path_buf();
    std::fs::remove_dir_all(&data_dir).with_context(|| format!("wiping {}", data_dir.display()))?;
    let wiped = Instant::now();
    cluster.restart(VICTIM)?;
    let limit = Duration::from_secs(args.refill_limit_seconds);
    let refill = loop {
        if all_pairs_agree_since(&client, &cluster.addresses, wiped.elapsed()).await {
            break Some(wiped.elapsed());
        }
        if wiped.elapsed() > limit {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "{keys:>9} keys: anti-entropy refilled the wiped node in {}",
        refill.map_or_else(
            || format!("more than {} s", limit.as_secs()),
            |took| format!("{:.1} s", took.as_secs_f64())
        )
    );
    Ok(Row {
        keys,
        load_rate,
        runs,
        errors,
        rss_mib,
        disk_bytes_per_key,
        restart_to_serve,
        refill,
    })
}

/// One bench run against `cluster` with a client of its own, printing nothing.
async fn quiet_run(cluster: &dev::LocalCluster, args: BenchArgs) -> Result<Report> {
    let addresses = node_addresses(&cluster.addresses);
    bench::run(dev::client(cluster)?, None, addresses, args, 5_000, true).await
}

/// Waits until the node at `address` answers a read it coordinates itself.
async fn serves(client: &Client, address: SocketAddr, limit: Duration) -> Result<()> {
    let started = Instant::now();
    let read = Request::Get {
        bucket: "bench".into(),
        key: b"scale-probe".to_vec(),
        options: RequestOptions::default(),
    };
    loop {
        if let Ok(Response::Get(_) | Response::NotFound { .. }) =
            client.request_to(address, &read).await
        {
            return Ok(());
        }
        if started.elapsed() > limit {
            anyhow::bail!(
                "{address} did not serve within {} s of its restart",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether every node has compared every (partition, peer) pair since `since` ago and runs no
/// exchange: then the wiped node's trees equal its peers', so it holds what they hold.
async fn all_pairs_agree_since(client: &Client, addresses: &[SocketAddr], since: Duration) -> bool {
    let since = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
    for &address in addresses {
        let Ok(Response::Status(status)) = client.request_to(address, &Request::Status).await
        else {
            return false;
        };
        if !status.anti_entropy.settled_within(since) {
            return false;
        }
    }
    true
}

/// Resident memory of process `pid` in bytes, from /proc (Linux; zero elsewhere).
fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Bytes of the files under `dir`, recursively (apparent sizes).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

fn markdown(args: &ScaleArgs, rows: &[Row], took: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# dynamo scale report\n");
    let _ = writeln!(
        out,
        "{MATRIX_NODES} local nodes, (N, R, W) = (3, 2, 2), sync durability, {} B values, {} in flight, {} s per run, closed loop; a fresh cluster per key count, loaded once. The whole sweep took {:.0} s.\n",
        args.value_size,
        args.concurrency,
        args.seconds,
        took.as_secs_f64()
    );
    let labels: Vec<&str> = rows
        .first()
        .map(|row| row.runs.iter().map(|(label, ..)| label.as_str()).collect())
        .unwrap_or_default();
    let mut header = "| keys | load keys/s |".to_string();
    let mut rule = "|---|---|".to_string();
    for label in &labels {
        let _ = write!(header, " {label} ops/s | p99.9 ms |");
        rule.push_str("---|---|");
    }
    header.push_str(
        " RSS per node MiB | disk B per key | restart to serve s | refill wiped node s | errors |",
    );
    rule.push_str("---|---|---|---|---|");
    let _ = writeln!(out, "{header}\n{rule}");
    for row in rows {
        let mut line = format!("| {} | {:.0} |", row.keys, row.load_rate);
        for (_, ops, p999) in &row.runs {
            let _ = write!(line, " {ops:.0} | {p999:.1} |");
        }
        let rss: Vec<String> = row.rss_mib.iter().map(|m| format!("{m:.0}")).collect();
        let _ = write!(
            line,
            " {} | {:.0} | {:.2} | {} | {} |",
            rss.join(" / "),
            row.disk_bytes_per_key,
            row.restart_to_serve.as_secs_f64(),
            row.refill.map_or_else(
                || format!("> {}", args.refill_limit_seconds),
                |took| format!("{:.1}", took.as_secs_f64())
            ),
            row.errors
        );
        let _ = writeln!(out, "{line}");
    }
    out
}

fn json(row: &Row) -> serde_json::Value {
    let runs: Vec<_> = row
        .runs
        .iter()
        .map(|(label, ops, p999)| {
            serde_json::json!({"run": label, "ops_per_sec": ops, "p999_ms": p999})
        })
        .collect();
    serde_json::json!({
        "keys": row.keys,
        "load_keys_per_sec": row.load_rate,
        "runs": runs,
        "errors": row.errors,
        "rss_mib_per_node": row.rss_mib,
        "disk_bytes_per_key": row.disk_bytes_per_key,
        "restart_to_serve_seconds": row.restart_to_serve.as_secs_f64(),
        "refill_wiped_node_seconds": row.refill.map(|took| took.as_secs_f64()),
    })
}
