//! `dynamo dev bench`, what `cargo xtask bench` runs (issue 16): local 3-node clusters, one per
//! durability mode, the workloads of `dynamo bench` at several concurrencies, the transport
//! ceiling and server- against client-driven coordination, with the nodes' CPU per operation;
//! writes `report.md`, `results.jsonl` and SVG plots.
//!
//! This module must not know how nodes serve requests: it starts clusters with `dev` and
//! measures them with `bench`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;
use dynamo_client::client::Client;

use crate::bench::{
    self, BenchArgs, KeyChoice, ReadPath, Workload, node_addresses, parse_value_size,
};
use crate::bench_http::HttpTarget;
use crate::bench_report::{Report, Series, plot};
use crate::dev;

/// `dynamo dev bench` (what `cargo xtask bench` runs): the matrix of issue 16.
#[derive(Args, Clone)]
pub(crate) struct MatrixArgs {
    /// Where the clusters live and the report is written.
    #[arg(long, default_value = "target/bench-report")]
    pub(crate) out: std::path::PathBuf,
    /// Seconds per point.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) seconds: u64,
    /// Concurrencies.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    pub(crate) concurrency: Vec<u64>,
    /// Workloads.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "a,b,c,f,w",
        ignore_case = true
    )]
    pub(crate) workloads: Vec<Workload>,
    /// Durability modes, one cluster each.
    #[arg(long, value_delimiter = ',', default_value = "sync,buffered", value_parser = ["sync", "buffered"])]
    pub(crate) durability: Vec<String>,
    /// Keys (loaded once per cluster) and value size.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) keys: u64,
    /// Value size in bytes (at most 16 MiB).
    #[arg(long, default_value_t = 1024, value_parser = parse_value_size)]
    pub(crate) value_size: usize,
    /// Port of the first node.
    #[arg(long, default_value_t = 7300)]
    pub(crate) base_port: u16,
}

/// CPU time (user + system) the processes `pids` have used, from /proc (Linux; zero elsewhere).
fn cpu_time(pids: &[u32]) -> Duration {
    // /proc/PID/stat fields 14 and 15 are utime and stime in clock ticks, 100 per second on
    // Linux for every architecture we run on.
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let after_name = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    Duration::from_millis(ticks * 10)
}

/// One point of the matrix.
struct Point {
    pub(crate) durability: String,
    label: String,
    pub(crate) concurrency: u64,
    report: Report,
    /// Cluster CPU per operation.
    cpu_per_op: Duration,
    /// The load generator's CPU per operation (this process: the client library's work).
    client_cpu_per_op: Duration,
}

/// Runs one point against `cluster`, measuring the nodes' CPU while it runs.
async fn point(
    cluster: &dev::LocalCluster,
    client: Client,
    args: BenchArgs,
    durability: &str,
    label: String,
) -> Result<Point> {
    let pids: Vec<u32> = cluster.children.iter().map(|(_, c)| c.id()).collect();
    let before = cpu_time(&pids);
    let client_before = cpu_time(&[std::process::id()]);
    let concurrency = args.concurrency;
    let http = if args.http.is_empty() {
        None
    } else {
        let tls = crate::load_tls(&cluster.client_certs, None)?;
        Some(HttpTarget::new(&tls, &args.http)?)
    };
    let report = bench::run(
        client,
        http,
        node_addresses(&cluster.addresses),
        args,
        5_000,
        true,
    )
    .await?;
    let ops = u32::try_from(report.total_ops.max(1)).unwrap_or(u32::MAX);
    let cpu_per_op = cpu_time(&pids).saturating_sub(before) / ops;
    let client_cpu_per_op = cpu_time(&[std::process::id()]).saturating_sub(client_before) / ops;
    eprintln!(
        "{durability:>8} {label:<28} c={concurrency:<3} {:>8.0} ops/s  p99.9 {:>7.2} ms  cpu/op {:.3} ms + client {:.3} ms",
        report.throughput(),
        report.overall_ms()[3],
        cpu_per_op.as_secs_f64() * 1000.0,
        client_cpu_per_op.as_secs_f64() * 1000.0
    );
    Ok(Point {
        durability: durability.to_string(),
        label,
        concurrency,
        report,
        cpu_per_op,
        client_cpu_per_op,
    })
}

/// Nodes of each of the matrix's clusters.
pub(crate) const MATRIX_NODES: usize = 3;

/// Runs the matrix and writes `report.md` and `results.jsonl` under `--out`.
pub(crate) async fn run(args: MatrixArgs, log_format: &str) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let base = |workload, concurrency| {
        BenchArgs::closed_loop(
            workload,
            KeyChoice::Zipfian,
            (args.keys, args.value_size),
            concurrency,
            args.seconds,
        )
    };
    let started = Instant::now();
    let mut points = Vec::new();
    for (i, durability) in args.durability.iter().enumerate() {
        let dir = args.out.join(format!("cluster-{durability}"));
        let port = u16::try_from(10 * i)
            .ok()
            .and_then(|offset| args.base_port.checked_add(offset))
            .context("--base-port leaves no room for a cluster per durability mode")?;
        let cluster_args = dev::ClusterArgs::local(MATRIX_NODES, dir, port, durability);
        let cluster = dev::start_fresh(&cluster_args, log_format).await?;
        let client = || dev::client(&cluster);
        // The load phase: every key once.
        let load = base(Workload::C, 32).load_only();
        bench::run(
            client()?,
            None,
            node_addresses(&cluster.addresses),
            load,
            5_000,
            true,
        )
        .await?;
        if i == 0 {
            for &concurrency in &args.concurrency {
                let mut ping = base(Workload::C, concurrency);
                ping.transport = true;
                points.push(
                    point(
                        &cluster,
                        client()?,
                        ping,
                        "-",
                        "transport ceiling (Ping)".into(),
                    )
                    .await?,
                );
            }
        }
        for &workload in &args.workloads {
            for &concurrency in &args.concurrency {
                let label = format!("{workload:?}: {}", workload.describe());
                points.push(
                    point(
                        &cluster,
                        client()?,
                        base(workload, concurrency),
                        durability,
                        label,
                    )
                    .await?,
                );
            }
        }
        // Issue 15: reads and blind writes through the HTTP API (round robin over the nodes)
        // against the QUIC client at the same concurrency.
        if i == 0 {
            let at = args.concurrency.iter().copied().max().unwrap_or(32).min(32);
            for workload in [Workload::C, Workload::W] {
                let mut bench = base(workload, at);
                bench.http.clone_from(&cluster.http_addresses);
                let label = format!("{workload:?} over HTTP");
                points.push(point(&cluster, client()?, bench, durability, label).await?);
            }
        }
        // Paper 6.4, Table 2: the same workload coordinated by one fixed node (server-driven)
        // and by the key's replicas (client-driven).
        let table2 = args.concurrency.iter().copied().max().unwrap_or(32);
        for server_driven in [true, false] {
            let mut bench = base(Workload::B, table2);
            bench.server_driven = server_driven;
            let client = if server_driven {
                dev::client_to(&cluster, vec![cluster.addresses[0]])?.server_driven()
            } else {
                client()?
            };
            let label = if server_driven {
                "B, server-driven"
            } else {
                "B, client-driven"
            };
            points.push(point(&cluster, client, bench, durability, label.into()).await?);
        }
        // Issue 28: reads coordinated by a replica against reads from R replicas' copies,
        // with the CPU each costs the nodes and the client.
        let at = args.concurrency.iter().copied().max().unwrap_or(32).min(32);
        for reads in [ReadPath::Coordinated, ReadPath::Copies] {
            let mut bench = base(Workload::C, at);
            bench.reads = reads;
            let (client, label) = match reads {
                ReadPath::Coordinated => (client()?.coordinated_reads(), "C, coordinated reads"),
                ReadPath::Copies => (client()?, "C, reads from R copies"),
            };
            points.push(point(&cluster, client, bench, durability, label.into()).await?);
        }
        drop(cluster);
    }
    let took = started.elapsed();
    matrix_plots(&args, &points)?;
    let report = markdown(&args, &points, took);
    let path = args.out.join("report.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    let mut jsonl = String::new();
    for p in &points {
        let mut line = p.report.json();
        line["durability"] = p.durability.clone().into();
        line["label"] = p.label.clone().into();
        line["concurrency"] = p.concurrency.into();
        line["cluster_cpu_ms_per_op"] = (p.cpu_per_op.as_secs_f64() * 1000.0).into();
        line["client_cpu_ms_per_op"] = (p.client_cpu_per_op.as_secs_f64() * 1000.0).into();
        let _ = writeln!(jsonl, "{line}");
    }
    let path = args.out.join("results.jsonl");
    std::fs::write(&path, jsonl).with_context(|| format!("writing {}", path.display()))?;
    println!("{report}");
    println!(
        "wrote {} and results.jsonl in {:.0} s",
        args.out.join("report.md").display(),
        took.as_secs_f64()
    );
    Ok(())
}

/// Per durability mode: throughput against concurrency, and the latency distribution at the
/// highest concurrency, one line per workload.
fn matrix_plots(args: &MatrixArgs, points: &[Point]) -> Result<()> {
    let top = args.concurrency.iter().copied().max().unwrap_or(0);
    for durability in &args.durability {
        let mine: Vec<&Point> = points
            .iter()
            .filter(|p| &p.durability == durability && !p.label.contains("driven"))
            .collect();
        let mut labels: Vec<&str> = mine.iter().map(|p| p.label.as_str()).collect();
        labels.dedup();
        let throughput: Vec<Series> = labels
            .iter()
            .map(|label| {
                let line = mine
                    .iter()
                    .filter(|p| p.label == *label)
                    .map(|p| (p.concurrency as f64, p.report.throughput()))
                    .collect();
                ((*label).to_string(), line)
            })
            .collect();
        plot(
            &args.out.join(format!("throughput-{durability}.svg")),
            &format!("throughput, {durability} durability"),
            ("concurrency", "operations per second"),
            &throughput,
        )?;
        let latency: Vec<Series> = mine
            .iter()
            .filter(|p| p.concurrency == top)
            .map(|p| (p.label.clone(), p.report.curve().to_vec()))
            .collect();
        plot(
            &args.out.join(format!("latency-{durability}.svg")),
            &format!("latency distribution at concurrency {top}, {durability} durability"),
            (
                "nines (1 = p90, 2 = p99, 3 = p99.9, 5 = max)",
                "latency, ms",
            ),
            &latency,
        )?;
    }
    Ok(())
}

fn markdown(args: &MatrixArgs, points: &[Point], took: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# dynamo bench report\n");
    let _ = writeln!(
        out,
        "{MATRIX_NODES} local nodes, (N, R, W) = (3, 2, 2), {} keys (zipfian 0.99), {} B values, {} s per point, closed loop; the whole run took {:.0} s. Cluster CPU is user + system time of the node processes per operation; client CPU, that of the load generator. Worker threads on {} cores: {} per node, {} for the load generator.\n",
        args.keys,
        args.value_size,
        args.seconds,
        took.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        dev::core_share(MATRIX_NODES),
        tokio::runtime::Handle::current().metrics().num_workers(),
    );
    for durability in &args.durability {
        let _ = writeln!(
            out,
            "![throughput, {durability}](throughput-{durability}.svg) ![latency, {durability}](latency-{durability}.svg)\n"
        );
    }
    let _ = writeln!(
        out,
        "| durability | run | concurrency | ops/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | cluster CPU ms/op | client CPU ms/op |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for p in points {
        let [p50, _, p99, p999, max] = p.report.overall_ms();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {p50:.2} | {p99:.2} | {p999:.2} | {max:.2} | {} | {:.3} | {:.3} |",
            p.durability,
            p.label,
            p.concurrency,
            p.report.throughput(),
            p.report.error_count(),
            p.cpu_per_op.as_secs_f64() * 1000.0,
            p.client_cpu_per_op.as_secs_f64() * 1000.0
        );
    }
    out
}
