//! `dynamo bench`: a load generator in the style of YCSB, cassandra-stress and `basho_bench`, run
//! through the client library like any application (issue 16).
//!
//! Workloads are YCSB's: A (50% read, 50% update), B (95/5), C (100% read), D (read latest,
//! 5% inserts), F (read-modify-write with the read's context, as a Dynamo client must) and W
//! (100% blind writes). Keys are uniform or zipfian (scrambled, so hot keys spread over the
//! ring); the run is closed loop (each worker as fast as it can) or open loop at a target rate,
//! where latency is measured from when a request was due, not when it was sent, so a stall is
//! not hidden by the requests it delayed (coordinated omission). Latencies go to HDR histograms
//! and the report (`bench_report.rs`).
//! `--transport` measures the bare QUIC + mTLS request/response ceiling with `Ping`.
//!
//! This module must not know how nodes serve requests; it only uses the client library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use dynamo_client::address::NodeAddress;
use dynamo_client::client::{Client, ClientError, GetOutcome};
use dynamo_protocol::{BucketProps, Request, RequestOptions, Response};
use dynamo_resolve::Resolver;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Zipf};

use crate::bench_http::HttpTarget;
use crate::bench_report::{Op, Report, Tally};

/// YCSB's core workloads, plus W.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// 50% read, 50% update (a blind write of an existing key).
    A,
    /// 95% read, 5% update.
    B,
    /// 100% read.
    C,
    /// 95% read of recently inserted keys, 5% insert of new keys.
    D,
    /// 50% read, 50% read-modify-write (read, then write with the read's context).
    F,
    /// 100% blind write.
    W,
}

impl Workload {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Workload::A => "50% read, 50% update",
            Workload::B => "95% read, 5% update",
            Workload::C => "100% read",
            Workload::D => "95% read latest, 5% insert",
            Workload::F => "50% read, 50% read-modify-write",
            Workload::W => "100% blind write",
        }
    }
}

/// How keys are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeyChoice {
    /// Every key as likely.
    Uniform,
    /// A few keys hot (YCSB's scrambled zipfian, constant `--zipf`).
    Zipfian,
}

/// How the client reads a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReadPath {
    /// R replicas' copies, asked by the client, which asks a coordinator when they differ.
    Copies,
    /// One replica of the key, which coordinates the read.
    Coordinated,
}

/// `dynamo bench` options.
#[derive(Args, Clone)]
pub(crate) struct BenchArgs {
    /// Workload.
    #[arg(long, value_enum, default_value = "a", ignore_case = true)]
    pub(crate) workload: Workload,
    /// Number of keys.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) keys: u64,
    /// Value size in bytes (at most 16 MiB: every worker holds one).
    #[arg(long, default_value_t = 1024, value_parser = parse_value_size)]
    pub(crate) value_size: usize,
    /// Requests in flight (workers).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub(crate) concurrency: u64,
    /// How long to run, in seconds (ignored with --ops).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) seconds: u64,
    /// Run this many operations instead of a duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) ops: Option<u64>,
    /// Key distribution.
    #[arg(long, value_enum, default_value = "zipfian")]
    pub(crate) distribution: KeyChoice,
    /// Zipfian constant (0.99 in YCSB: Dynamo's hot keys).
    #[arg(long, default_value_t = 0.99)]
    pub(crate) zipf: f64,
    /// Write every key once before the run (the load phase).
    #[arg(long)]
    pub(crate) load: bool,
    /// Open loop at this many operations per second in all (closed loop without it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) rate: Option<u64>,
    /// Bucket (created as N=3, R=2, W=2, last write wins if missing, so blind writes do not
    /// pile up siblings).
    #[arg(long, default_value = "bench")]
    pub(crate) bucket: String,
    /// Measure the transport ceiling instead: `Ping` requests of `--value-size` bytes, no
    /// store, no quorum.
    #[arg(long)]
    pub(crate) transport: bool,
    /// Send every request to the first of --nodes, which coordinates or forwards it
    /// (server-driven coordination, paper 6.4), instead of to the key's replicas.
    #[arg(long)]
    pub(crate) server_driven: bool,
    /// How reads go: the client asks R replicas for their copies (`copies`), or one replica
    /// coordinates each read (`coordinated`).
    #[arg(long, value_enum, default_value = "copies")]
    pub(crate) reads: ReadPath,
    /// Send reads and writes to the HTTP API of these nodes instead (comma-separated
    /// `HOST:PORT` of each node's `http_listen`), round robin, with the same certificate; the
    /// bucket is still checked over QUIC through --nodes.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["transport", "server_driven"])]
    pub(crate) http: Vec<SocketAddr>,
    /// Seed of the key and operation choices.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Write `latency.svg` (the latency distribution), `throughput.svg` (operations per
    /// second over the run) and `slowest.svg` (the slowest operation of each second) to this
    /// directory.
    #[arg(long)]
    pub(crate) plot: Option<std::path::PathBuf>,
}

/// `--value-size`: 0 to 16 MiB.
pub(crate) fn parse_value_size(text: &str) -> Result<usize, String> {
    const MAX: usize = 16 << 20;
    match text.parse::<usize>() {
        Ok(size) if size <= MAX => Ok(size),
        _ => Err(format!("a value size is 0 to {MAX} bytes")),
    }
}

impl BenchArgs {
    /// A closed-loop run of `workload` on the `bench` bucket (zipfian constant 0.99, seed 1),
    /// as the matrix and the scale sweep run them.
    pub(crate) fn closed_loop(
        workload: Workload,
        distribution: KeyChoice,
        (keys, value_size): (u64, usize),
        concurrency: u64,
        seconds: u64,
    ) -> Self {
        BenchArgs {
            workload,
            keys,
            value_size,
            concurrency,
            seconds,
            ops: None,
            distribution,
            zipf: 0.99,
            load: false,
            rate: None,
            bucket: "bench".into(),
            transport: false,
            server_driven: false,
            reads: ReadPath::Copies,
            http: Vec::new(),
            seed: 1,
            plot: None,
        }
    }

    /// The load phase alone: every key written once, then a single read.
    pub(crate) fn load_only(self) -> Self {
        BenchArgs {
            workload: Workload::C,
            load: true,
            ops: Some(1),
            ..self
        }
    }
}

/// Chooses keys: an index below `keys` (or below the latest insert, for D).
struct KeyChooser {
    zipf: Option<Zipf<f64>>,
    keys: u64,
}

impl KeyChooser {
    fn new(args: &BenchArgs) -> Result<Self> {
        let zipf = match args.distribution {
            KeyChoice::Uniform => None,
            KeyChoice::Zipfian => Some(
                Zipf::new(args.keys as f64, args.zipf)
                    .map_err(|e| anyhow::anyhow!("--zipf {}: {e}", args.zipf))?,
            ),
        };
        Ok(Self {
            zipf,
            keys: args.keys,
        })
    }

    /// A popularity rank: 0 is the hottest.
    fn rank(&self, rng: &mut SmallRng) -> u64 {
        match &self.zipf {
            Some(zipf) => (zipf.sample(rng) as u64)
                .saturating_sub(1)
                .min(self.keys - 1),
            None => rng.random_range(0..self.keys),
        }
    }

    /// A key index, hot ranks scattered over the key space (scrambled zipfian).
    fn key(&self, rng: &mut SmallRng) -> u64 {
        let rank = self.rank(rng);
        if self.zipf.is_some() {
            scramble(rank) % self.keys
        } else {
            rank
        }
    }
}

/// splitmix64: spreads consecutive ranks over the key space.
fn scramble(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn key_name(index: u64) -> Vec<u8> {
    format!("user{index:012}").into_bytes()
}

fn value(size: usize, salt: u64) -> Vec<u8> {
    (0..size)
        .map(|i| (salt as usize).wrapping_add(i) as u8)
        .collect()
}

/// Shared by every worker.
struct Shared {
    client: Client,
    http: Option<HttpTarget>,
    addresses: Vec<NodeAddress>,
    args: BenchArgs,
    chooser: KeyChooser,
    options: RequestOptions,
    started: Instant,
    /// Operations done so far (for the progress line).
    done: AtomicU64,
    /// Operations started so far (`--ops` stops at exactly that many).
    claimed: AtomicU64,
    /// Next key index an insert takes (workload D).
    next_insert: AtomicU64,
}

impl Shared {
    /// Runs one operation of the workload and says which kind it was; failures go to `tally`.
    async fn one(&self, rng: &mut SmallRng, tally: &mut Tally) -> Op {
        let args = &self.args;
        let bucket = args.bucket.as_str();
        if args.transport {
            let address = self.addresses[rng.random_range(0..self.addresses.len())].clone();
            let request = Request::Ping(value(args.value_size, rng.random()));
            match self.client.request_to(address, &request).await {
                Ok(Response::Pong(_)) => {}
                Ok(other) => tally.error(&ClientError::Unexpected(format!("{other:?}"))),
                Err(error) => tally.error(&error),
            }
            return Op::Ping;
        }
        let roll = rng.random_range(0..100u32);
        let op = match (args.workload, roll) {
            (Workload::C, _)
            | (Workload::A | Workload::F, 0..50)
            | (Workload::B | Workload::D, 0..95) => Op::Read,
            (Workload::A | Workload::B | Workload::W, _) => Op::Update,
            (Workload::D, _) => Op::Insert,
            (Workload::F, _) => Op::ReadModifyWrite,
        };
        let key = match (op, args.workload) {
            (Op::Insert, _) => self.next_insert.fetch_add(1, Ordering::Relaxed),
            // D reads the latest: recent inserts are the hot keys.
            (_, Workload::D) => {
                let latest = self.next_insert.load(Ordering::Relaxed).max(1);
                latest - 1 - self.chooser.rank(rng) % latest
            }
            _ => self.chooser.key(rng),
        };
        let key = key_name(key);
        if let Some(http) = &self.http {
            let url = http.url(rng, bucket, &key);
            let outcome = match op {
                Op::Read => http.read(&url).await.map(|(_, siblings)| {
                    tally.siblings_seen += u64::from(siblings);
                }),
                Op::Update | Op::Insert => {
                    http.write(&url, value(args.value_size, rng.random()), None)
                        .await
                }
                Op::ReadModifyWrite => match http.read(&url).await {
                    Ok((context, _)) => {
                        http.write(&url, value(args.value_size, rng.random()), Some(&context))
                            .await
                    }
                    Err(error) => Err(error),
                },
                Op::Ping => Ok(()),
            };
            if let Err(error) = outcome {
                tally.error(&error);
            }
            return op;
        }
        let outcome = match op {
            Op::Read => self.read(&key, tally).await.map(drop),
            Op::Update | Op::Insert => self
                .client
                .put(
                    bucket,
                    &key,
                    value(args.value_size, rng.random()),
                    None,
                    self.options,
                )
                .await
                .map(drop),
            Op::ReadModifyWrite => match self.read(&key, tally).await {
                Ok(context) => self
                    .client
                    .put(
                        bucket,
                        &key,
                        value(args.value_size, rng.random()),
                        Some(context),
                        self.options,
                    )
                    .await
                    .map(drop),
                Err(error) => Err(error),
            },
            Op::Ping => Ok(()),
        };
        if let Err(error) = outcome {
            tally.error(&error);
        }
        op
    }

    /// A get: the context to write with; counts reads that saw siblings.
    async fn read(&self, key: &[u8], tally: &mut Tally) -> Result<String, ClientError> {
        match self
            .client
            .get(&self.args.bucket, key, self.options)
            .await?
        {
            GetOutcome::Found(reply) => {
                if reply.values.len() > 1 {
                    tally.siblings_seen += 1;
                }
                Ok(reply.context)
            }
            GetOutcome::NotFound { context } => Ok(context),
        }
    }

    /// Whether the run is over; otherwise the caller may start one more operation.
    fn finished(&self) -> bool {
        match self.args.ops {
            Some(ops) => self.claimed.fetch_add(1, Ordering::Relaxed) >= ops,
            None => self.started.elapsed() >= Duration::from_secs(self.args.seconds),
        }
    }
}

/// One worker: closed loop, or open loop with one request due every `period`.
async fn worker(shared: Arc<Shared>, index: u64) -> Tally {
    let mut rng = SmallRng::seed_from_u64(scramble(shared.args.seed ^ scramble(index)));
    let mut tally = Tally::new();
    let period = shared
        .args
        .rate
        .map(|rate| Duration::from_secs_f64(shared.args.concurrency as f64 / rate as f64));
    let mut due = shared.started
        + period.map_or(Duration::ZERO, |p| {
            p.mul_f64(index as f64 / shared.args.concurrency as f64)
        });
    while !shared.finished() {
        let sent = match period {
            Some(period) => {
                tokio::time::sleep_until(due.into()).await;
                let was_due = due;
                due += period;
                // Coordinated omission: latency counts from when the request was due.
                was_due
            }
            None => Instant::now(),
        };
        let op = shared.one(&mut rng, &mut tally).await;
        let second = shared.started.elapsed().as_secs() as usize;
        tally.record(op, sent.elapsed(), second);
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    tally
}

/// Makes sure the bucket exists (creating it needs an admin certificate).
async fn ensure_bucket(client: &Client, bucket: &str) -> Result<()> {
    let buckets = client.list_buckets().await.context("listing buckets")?;
    if buckets.iter().any(|b| b.name == bucket) {
        return Ok(());
    }
    let props = BucketProps {
        name: bucket.to_string(),
        n: 3,
        r: 2,
        w: 2,
        pr: 0,
        pw: 0,
        resolver: Resolver::Lww,
    };
    client.create_bucket(props).await.with_context(|| {
        format!("creating bucket {bucket} (needs an admin certificate; or pass --bucket with one that exists)")
    })
}

/// Writes every key once, `concurrency` at a time.
async fn load(shared: &Arc<Shared>) -> Result<(u64, Duration)> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..shared.args.concurrency {
        let (shared, next) = (shared.clone(), next.clone());
        workers.spawn(async move {
            let mut failed = 0u64;
            let mut first = None;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= shared.args.keys {
                    return (failed, first);
                }
                let key = key_name(index);
                let bytes = value(shared.args.value_size, index);
                if let Err(error) = shared
                    .client
                    .put(&shared.args.bucket, &key, bytes, None, shared.options)
                    .await
                {
                    failed += 1;
                    first.get_or_insert(error.to_string());
                }
            }
        });
    }
    let mut failed = 0;
    let mut first_failure = None;
    while let Some(joined) = workers.join_next().await {
        let (count, first) = joined.context("a load worker stopped")?;
        failed += count;
        first_failure = first_failure.or(first);
    }
    if let Some(first) = first_failure {
        eprintln!("load: {failed} writes failed, the first with: {first}");
    }
    Ok((failed, started.elapsed()))
}

/// Socket addresses as the client's node addresses.
pub(crate) fn node_addresses(addresses: &[SocketAddr]) -> Vec<NodeAddress> {
    addresses.iter().map(NodeAddress::from).collect()
}

/// Runs the benchmark; `quiet` keeps the load phase's line off stdout.
pub(crate) async fn run(
    client: Client,
    http: Option<HttpTarget>,
    addresses: Vec<NodeAddress>,
    args: BenchArgs,
    timeout_ms: u64,
    quiet: bool,
) -> Result<Report> {
    if args.transport && args.value_size > dynamo_protocol::MAX_PING_BYTES {
        bail!(
            "--transport pings carry at most {} bytes; lower --value-size",
            dynamo_protocol::MAX_PING_BYTES
        );
    }
    if !args.transport {
        ensure_bucket(&client, &args.bucket).await?;
    }
    let chooser = KeyChooser::new(&args)?;
    let options = RequestOptions {
        timeout_ms: Some(timeout_ms),
        ..RequestOptions::default()
    };
    let mut shared = Arc::new(Shared {
        client,
        http,
        addresses,
        next_insert: AtomicU64::new(args.keys),
        args,
        chooser,
        options,
        started: Instant::now(),
        done: AtomicU64::new(0),
        claimed: AtomicU64::new(0),
    });
    let mut load_line = None;
    if shared.args.load && !shared.args.transport {
        let (failed, took) = load(&shared).await?;
        let line = format!(
            "load: {} keys in {:.1} s ({:.0} ops/s), {failed} failed",
            shared.args.keys,
            took.as_secs_f64(),
            shared.args.keys as f64 / took.as_secs_f64()
        );
        if !quiet {
            println!("{line}");
        }
        load_line = Some((took, failed));
        if let Some(inner) = Arc::get_mut(&mut shared) {
            inner.started = Instant::now();
        }
    }
    let progress = progress_line(&shared);
    let mut workers = tokio::task::JoinSet::new();
    for index in 0..shared.args.concurrency {
        workers.spawn(worker(shared.clone(), index));
    }
    let mut total = Tally::new();
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("a bench worker stopped")?);
    }
    let elapsed = shared.started.elapsed();
    progress.abort();
    let report = Report::new(describe_run(&shared.args), &total, elapsed, load_line);
    Ok(if shared.http.is_none() {
        report.with_read_paths(shared.client.read_paths())
    } else {
        report
    })
}

/// What ran and how, the first line of the report.
fn describe_run(args: &BenchArgs) -> String {
    let what = if args.transport {
        format!("transport ceiling: Ping of {} B", args.value_size)
    } else {
        format!(
            "workload {:?} ({}), {} over {} keys, {} B values",
            args.workload,
            args.workload.describe(),
            match args.distribution {
                KeyChoice::Uniform => "uniform".to_string(),
                KeyChoice::Zipfian => format!("zipfian {}", args.zipf),
            },
            args.keys,
            args.value_size
        )
    };
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate} ops/s"),
        None => "closed loop".to_string(),
    };
    let reads = if args.transport {
        ""
    } else if !args.http.is_empty() {
        ", through the HTTP API"
    } else if args.server_driven {
        ", server-driven"
    } else if args.reads == ReadPath::Copies {
        ", reads from R copies"
    } else {
        ", coordinated reads"
    };
    format!("{what}, concurrency {}, {mode}{reads}", args.concurrency)
}

/// A progress line on stderr while the run lasts (hidden when stderr is not a terminal).
fn progress_line(shared: &Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let shared = shared.clone();
    tokio::spawn(async move {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let done = shared.done.load(Ordering::Relaxed);
            bar.set_message(format!("{done} ops, {} ops/s now", (done - last) * 2));
            bar.tick();
            last = done;
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        Cli::parse_from(std::iter::once("bench").chain(extra.iter().copied())).bench
    }

    /// YCSB's zipfian: keys stay in range, the hottest key takes far more than its uniform
    /// share, and hot keys are scattered (not keys 0, 1, 2: they would share partitions).
    #[test]
    fn keys_follow_their_distribution() {
        let mut rng = SmallRng::seed_from_u64(7);
        // (distribution, share of draws the most drawn key gets at least, at most)
        let cases = [("zipfian", 0.05, 1.0), ("uniform", 0.0, 0.01)];
        for (distribution, at_least, at_most) in cases {
            let chooser =
                KeyChooser::new(&args(&["--distribution", distribution, "--keys", "1000"]))
                    .expect("chooser");
            let mut counts = BTreeMap::new();
            for _ in 0..20_000 {
                let key = chooser.key(&mut rng);
                assert!(key < 1000, "{distribution}: {key}");
                *counts.entry(key).or_insert(0u32) += 1;
            }
            let (&hottest, &count) = counts.iter().max_by_key(|(_, c)| **c).expect("draws");
            let share = f64::from(count) / 20_000.0;
            assert!(
                share >= at_least && share <= at_most,
                "{distribution}: {share}"
            );
            if distribution == "zipfian" {
                assert_ne!(hottest, 0, "hot ranks are scrambled over the key space");
            }
        }
        assert!(KeyChooser::new(&args(&["--zipf=-1"])).is_err());
    }
}
