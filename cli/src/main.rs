//! `dynamo`: run nodes and a local dev cluster, manage certificates, and talk to a cluster.
//!
//! Exit codes of data commands: 0 success (for `get`: exactly one value), 1 error, 2 usage,
//! 3 not found, 4 found with siblings. `--json` prints machine-readable output.
//!
//! This binary must not contain store logic: it parses arguments, fills a `NodeConfig` or
//! builds a `Client`, and prints what comes back.

/// `println!` that ends the process quietly when stdout is a closed pipe
/// (`dynamo status --json | head`) instead of panicking.
macro_rules! outln {
    () => {
        $crate::write_out(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

mod args;
mod bench;
mod bench_http;
mod cert;
mod dev;
mod matrix;
mod print;
mod proxy;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use dynamo_client::Client;
use dynamo_client::address::NodeAddress;
use dynamo_client::sets::SetOp;
use dynamo_client::tls::{Identity, TlsConfig, TlsError};
use dynamo_node::{Node, NodeConfig};
use dynamo_protocol::{BucketProps, Request, RequestOptions, Response};

use args::{BucketCommand, CartCommand, Cli, Command, DevCommand, HandoffCommand, NodeCommand};
use print::{
    anti_entropy_line, handoff_line, member_state, print_get, print_set, reaper_line, shown,
    write_exact,
};

/// jemalloc hands memory freed after a burst (a client's flood of partial frames, a large
/// handoff) back to the OS within seconds; glibc's allocator kept a node's peak for good.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The endpoints of the clients this command made, closed by [`close_clients`] before the
/// process exits.
static CLIENT_ENDPOINTS: std::sync::Mutex<Vec<dynamo_client::transport::Endpoint>> =
    std::sync::Mutex::new(Vec::new());

/// Remembers `client`'s endpoint for [`close_clients`].
pub(crate) fn close_at_exit(client: &Client) {
    CLIENT_ENDPOINTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(client.endpoint().clone());
}

/// Closes the connections of every client this command made, waiting a bounded moment for the
/// nodes to be told (see [`dynamo_client::client::CLOSE_DRAIN`]). A process that just exited
/// would leave each node holding its connection until the node's idle timeout, and a script
/// running the CLI in a loop would fill its identity's connection limit with them.
async fn close_clients() {
    let endpoints = std::mem::take(
        &mut *CLIENT_ENDPOINTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for endpoint in endpoints {
        endpoint.close().await;
    }
}

pub(crate) fn load_tls(dir: &Path, name: Option<&str>) -> Result<TlsConfig> {
    let ca_path = dir.join(dynamo_client::tls::CA_CERT_FILE);
    let ca = std::fs::read_to_string(&ca_path).with_context(|| {
        format!(
            "reading the cluster CA certificate {} (give --certs-dir or DYNAMO_CERTS_DIR the directory `dynamo cert issue` wrote your identity to)",
            ca_path.display()
        )
    })?;
    let identity = Identity::load(dir, None, name).map_err(|error| {
        let hint = match &error {
            TlsError::AmbiguousIdentity { .. } => {
                "pass --identity NAME or set DYNAMO_IDENTITY".to_owned()
            }
            _ => format!(
                "an admin issues one with `dynamo cert issue --client NAME --dir {}`",
                dir.display()
            ),
        };
        anyhow::Error::new(error).context(format!(
            "loading {} from {} ({hint})",
            name.map_or_else(|| "an identity".to_owned(), |n| format!("identity {n}")),
            dir.display()
        ))
    })?;
    TlsConfig::new(&ca, &identity).context("building the TLS configuration")
}

/// The address of member `name`, from the cluster's status.
async fn member_address(client: &Client, name: &str) -> Result<NodeAddress> {
    let status = client.status().await.context("reading the members")?;
    let Some(member) = status.members.iter().find(|m| m.id == name) else {
        let known: Vec<&str> = status.members.iter().map(|m| m.id.as_str()).collect();
        bail!("{name} is not a member (members: {})", known.join(", "));
    };
    member
        .address
        .parse()
        .with_context(|| format!("{name}'s address {:?}", member.address))
}

/// Asks the person at the terminal to confirm `action`; `yes` confirms in advance. Without a
/// terminal and without `yes`, refuses.
fn confirm(action: &str, yes: bool) -> Result<()> {
    use std::io::IsTerminal as _;
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "{action}: not confirmed (no terminal to ask on); pass --yes to confirm from a script"
        );
    }
    eprint!("{action}. Continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        bail!("cancelled")
    }
}

/// Makes every file and directory this process creates private to its user (0600 / 0700),
/// from the moment it is created: data, logs and certificates hold secrets.
fn private_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Writes one line to stdout; a reader that went away ends the process with success (its
/// consumer has what it wanted), any other failure with an error.
fn write_out(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(error) = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {error}");
        std::process::exit(1);
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, never in a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    private_umask();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let threads = cli
        .worker_threads
        .map(usize::from)
        .or_else(|| match &cli.command {
            // The matrix's load generator shares the machine with the nodes it starts, so it
            // takes its share of the cores as each of them does.
            Command::Dev(DevCommand::Bench(_)) => Some(dev::core_share(matrix::MATRIX_NODES + 1)),
            _ => None,
        });
    if let Some(threads) = threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let outcome = run(cli).await;
        close_clients().await;
        outcome
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Cert(command) => cert::cert(command),
        Command::Node(NodeCommand::Start(args)) => {
            init_logging(&cli.log_format);
            serve(args.to_config()?).await
        }
        Command::Join {
            seed,
            replace,
            node,
        } => {
            init_logging(&cli.log_format);
            let mut config = node.to_config()?;
            config.seeds = vec![seed];
            config.replaces = replace;
            // An explicit join: a node that had left the cluster joins it again.
            config.rejoin = true;
            serve(config).await
        }
        Command::Node(NodeCommand::Remove(change)) => {
            let name = &change.name;
            confirm(
                &format!(
                    "{name} will be taken out of the ring for good; its partitions get new owners"
                ),
                change.yes,
            )?;
            let request = Request::RemoveNode { name: name.clone() };
            let answer = change
                .connection
                .client()?
                .request_any(&request)
                .await
                .with_context(|| format!("removing {name}"))?;
            let Response::Ring(Some(ring)) = answer else {
                bail!("removing {name}: the node answered {answer:?}");
            };
            outln!(
                "{name} removed: ring version {} has {} members; anti-entropy refills its partitions",
                ring.version(),
                ring.members().len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Leave(change) => {
            let (_, node) = change
                .ask_member(
                    "will leave the cluster; its partitions move to the other members",
                    &Request::Leave,
                )
                .await?;
            outln!(
                "{} ({node}) is leaving; its partitions move to the other members",
                change.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Put {
            bucket,
            key,
            value,
            file,
            context,
            w,
            pw,
            connection,
        } => {
            let value = match (value, file) {
                (Some(value), _) => value.into_bytes(),
                (None, Some(file)) => read_value(&file)?,
                (None, None) => bail!("give a VALUE or --file"),
            };
            let options = RequestOptions {
                w,
                pw,
                timeout_ms: Some(connection.timeout_ms),
                ..RequestOptions::default()
            };
            let reply = connection
                .client()?
                .put(&bucket, key.as_bytes(), value, context, options)
                .await
                .with_context(|| format!("put {bucket}/{}", shown(&key)))?;
            if connection.json {
                outln!(
                    "{}",
                    serde_json::json!({"context": reply.context, "acknowledged": reply.acknowledged, "warnings": reply.warnings})
                );
            } else {
                outln!("ok ({} acknowledgements)", reply.acknowledged);
                outln!("context: {}", reply.context);
                for warning in &reply.warnings {
                    outln!("warning: {warning}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Get {
            bucket,
            key,
            r,
            pr,
            raw,
            output,
            connection,
        } => {
            let options = RequestOptions {
                r,
                pr,
                timeout_ms: Some(connection.timeout_ms),
                ..RequestOptions::default()
            };
            let outcome = connection
                .client()?
                .get(&bucket, key.as_bytes(), options)
                .await
                .with_context(|| format!("get {bucket}/{}", shown(&key)))?;
            if raw || output.is_some() {
                return write_exact(&outcome, output.as_deref());
            }
            Ok(print_get(&outcome, connection.json))
        }
        Command::Delete {
            bucket,
            key,
            context,
            r,
            w,
            connection,
        } => {
            let options = RequestOptions {
                r,
                w,
                timeout_ms: Some(connection.timeout_ms),
                ..RequestOptions::default()
            };
            let reply = connection
                .client()?
                .delete(&bucket, key.as_bytes(), context, options)
                .await
                .with_context(|| format!("delete {bucket}/{}", shown(&key)))?;
            if connection.json {
                outln!(
                    "{}",
                    serde_json::json!({"context": reply.context, "acknowledged": reply.acknowledged})
                );
            } else {
                outln!("deleted ({} acknowledgements)", reply.acknowledged);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { bench, connection } => {
            let client = if bench.server_driven {
                let mut first = connection.clone();
                first.nodes.truncate(1);
                first.client()?.server_driven()
            } else {
                connection.client()?
            };
            let plots = bench.plot.clone();
            let http = if bench.http.is_empty() {
                None
            } else {
                let tls = load_tls(&connection.certs_dir, connection.identity.as_deref())?;
                Some(bench_http::HttpTarget::new(&tls, &bench.http)?)
            };
            let report = bench::run(
                client,
                http,
                connection.nodes.clone(),
                bench,
                connection.timeout_ms,
                connection.json,
            )
            .await?;
            if let Some(dir) = plots {
                report.plots(&dir)?;
            }
            if connection.json {
                outln!("{}", report.json());
            } else {
                outln!("{}", report.text().trim_end());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxy {
            to,
            listen,
            certs_dir,
            identity,
        } => {
            let tls = load_tls(&certs_dir, identity.as_deref())?;
            proxy::run(&tls, to, listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cart(command) => {
            let (bucket, key, op, connection) = match command {
                CartCommand::Add(i) => (
                    i.bucket,
                    i.key,
                    Some(SetOp::Add(i.item.into())),
                    i.connection,
                ),
                CartCommand::Remove(i) => (
                    i.bucket,
                    i.key,
                    Some(SetOp::Remove(i.item.into())),
                    i.connection,
                ),
                CartCommand::Show {
                    bucket,
                    key,
                    connection,
                } => (bucket, key, None, connection),
            };
            let options = RequestOptions {
                timeout_ms: Some(connection.timeout_ms),
                ..RequestOptions::default()
            };
            let view = connection
                .client()?
                .update_set(&bucket, key.as_bytes(), op.clone(), options)
                .await
                .with_context(|| format!("cart {bucket}/{}", shown(&key)))?;
            print_set(&view, op.as_ref(), connection.json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bucket(BucketCommand::Create {
            name,
            n,
            r,
            w,
            pr,
            pw,
            resolver,
            update,
            connection,
        }) => {
            let props = BucketProps {
                name: name.clone(),
                n,
                r,
                w,
                pr,
                pw,
                resolver,
            };
            let client = connection.client()?;
            let describe = |b: &BucketProps| {
                format!(
                    "n={} r={} w={} pr={} pw={} resolver={}",
                    b.n, b.r, b.w, b.pr, b.pw, b.resolver
                )
            };
            let buckets = client.list_buckets().await.context("listing buckets")?;
            let existing = buckets.iter().find(|b| b.name == name);
            if let Some(existing) = existing {
                if *existing == props {
                    outln!("bucket {name} already has {}", describe(existing));
                    return Ok(ExitCode::SUCCESS);
                }
                if !update {
                    bail!(
                        "bucket {name} exists with {}; pass --update to change it to {}",
                        describe(existing),
                        describe(&props)
                    );
                }
            }
            let status = client.status().await.context("reading the members")?;
            let live = status
                .members
                .iter()
                .filter(|m| m.in_ring && m.up && m.status != "left")
                .count();
            let largest = [n, r, w, pr, pw].into_iter().max().unwrap_or(0);
            if largest > live {
                eprintln!(
                    "warning: {} asks for {largest} replicas but only {live} members are up: requests needing them fail until more join",
                    describe(&props)
                );
            }
            client
                .create_bucket(props.clone())
                .await
                .with_context(|| format!("creating bucket {name}"))?;
            let verb = if existing.is_some() {
                "changed to"
            } else {
                "created with"
            };
            outln!("bucket {name} {verb} {}", describe(&props));
            Ok(ExitCode::SUCCESS)
        }
        Command::Handoff(HandoffCommand::Cancel(change)) => {
            let (answer, _) = change
                .ask_member(
                    "will drop its partition transfers; anti-entropy copies that data instead, more slowly",
                    &Request::CancelHandoff,
                )
                .await?;
            let Response::Cancelled(dropped) = answer else {
                bail!("{} answered {answer:?}", change.name);
            };
            outln!("{}: {dropped} partition transfers cancelled", change.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bucket(BucketCommand::List { connection }) => {
            let buckets = connection
                .client()?
                .list_buckets()
                .await
                .context("listing buckets")?;
            if connection.json {
                let list: Vec<_> = buckets
                    .iter()
                    .map(|b| serde_json::json!({"name": b.name, "n": b.n, "r": b.r, "w": b.w, "pr": b.pr, "pw": b.pw, "resolver": b.resolver.name()}))
                    .collect();
                outln!("{}", serde_json::Value::Array(list));
            } else {
                outln!(
                    "{:<24} {:>3} {:>3} {:>3} {:>3} {:>3}  resolver",
                    "bucket",
                    "n",
                    "r",
                    "w",
                    "pr",
                    "pw"
                );
                for b in buckets {
                    outln!(
                        "{:<24} {:>3} {:>3} {:>3} {:>3} {:>3}  {}",
                        b.name,
                        b.n,
                        b.r,
                        b.w,
                        b.pr,
                        b.pw,
                        b.resolver
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { connection } => {
            let status = connection
                .client()?
                .status()
                .await
                .context("reading the status")?;
            // Primary shares sum to 100%, replicated shares to N x 100%.
            let total_partitions: u32 = status.members.iter().map(|m| m.partitions).sum();
            let primary_percent = |m: &dynamo_protocol::MemberStatus| {
                if total_partitions == 0 {
                    0.0
                } else {
                    f64::from(m.partitions) * 100.0 / f64::from(total_partitions)
                }
            };
            if connection.json {
                let members: Vec<_> = status
                    .members
                    .iter()
                    .map(|m| serde_json::json!({
                        "id": m.id, "address": m.address, "zone": m.zone, "capacity": m.capacity,
                        "state": member_state(m), "status": m.status, "up": m.up, "in_ring": m.in_ring,
                        "partitions": m.partitions, "primary_percent": primary_percent(m),
                        "replicated_percent": m.ownership_percent,
                        "pending_hints": m.pending_hints,
                    }))
                    .collect();
                let anti_entropy = serde_json::to_value(&status.anti_entropy).unwrap_or_default();
                outln!(
                    "{}",
                    serde_json::json!({"node": status.node, "ring_version": status.ring_version, "members": members, "anti_entropy": anti_entropy})
                );
            } else {
                outln!(
                    "as seen by {} (ring version {})",
                    status.node,
                    status.ring_version
                );
                outln!(
                    "{:<5} {:<16} {:<22} {:<10} {:<8} {:>10} {:>8} {:>10} {:>6}",
                    "state",
                    "node",
                    "address",
                    "zone",
                    "status",
                    "partitions",
                    "primary",
                    "replicated",
                    "hints"
                );
                for m in &status.members {
                    outln!(
                        "{:<5} {:<16} {:<22} {:<10} {:<8} {:>10} {:>7.1}% {:>9.1}% {:>6}",
                        member_state(m),
                        m.id,
                        m.address,
                        m.zone,
                        m.status,
                        m.partitions,
                        primary_percent(m),
                        m.ownership_percent,
                        m.pending_hints
                    );
                }
                outln!(
                    "primary: share of the partitions a node is first replica of (sums to 100%); replicated: share of the key space it stores (sums to N x 100%)"
                );
                outln!("{}", anti_entropy_line(&status.anti_entropy));
                outln!("{}", handoff_line(&status.handoff));
                outln!("{}", reaper_line(&status.reaper));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ring { connection } => {
            let Some(ring) = connection
                .client()?
                .ring()
                .await
                .context("reading the ring")?
            else {
                bail!("the node has no ring yet");
            };
            if connection.json {
                let owners: Vec<String> = (0..ring.partition_count())
                    .map(|p| ring.partition_owner(p).to_string())
                    .collect();
                outln!(
                    "{}",
                    serde_json::json!({"version": ring.version(), "partitions": ring.partition_count(), "owners": owners})
                );
            } else {
                outln!(
                    "ring version {}, {} partitions, target N {}",
                    ring.version(),
                    ring.partition_count(),
                    ring.target_n()
                );
                for (node, count) in ring.partition_counts() {
                    outln!("{node:<16} {count:>6} partitions");
                }
                let mut out = std::io::stdout().lock();
                for p in 0..ring.partition_count() {
                    let range = ring.partition_range(p);
                    let _ = writeln!(
                        out,
                        "{p:>6} {:032x}..{:032x} {}",
                        range.start,
                        range.end,
                        ring.partition_owner(p)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(DevCommand::Cluster(args)) => dev::cluster(args, &cli.log_format).await,
        Command::Dev(DevCommand::Demo(args)) => dev::demo_command(args, &cli.log_format).await,
        Command::Dev(DevCommand::Bench(args)) => {
            matrix::run(args, &cli.log_format).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The most value bytes one request can carry (a frame, less room for the rest of the
/// request). A node's own `max_value_bytes` (1 MiB by default) may be lower; it says so.
const MAX_REQUEST_VALUE: usize = dynamo_client::transport::MAX_FRAME_BYTES - 64 * 1024;

/// Reads a value from `file`, refusing before reading more than [`MAX_REQUEST_VALUE`] bytes
/// (a huge file or `/dev/zero` is never read into memory).
fn read_value(file: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let opened =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let too_large = |len: String| {
        anyhow::anyhow!(
            "{} holds {len} bytes; a value is at most {MAX_REQUEST_VALUE} bytes per request (and a node's max_value_bytes, 1 MiB by default)",
            file.display()
        )
    };
    if let Ok(meta) = opened.metadata()
        && meta.is_file()
        && meta.len() > MAX_REQUEST_VALUE as u64
    {
        return Err(too_large(meta.len().to_string()));
    }
    let mut value = Vec::new();
    opened
        .take(MAX_REQUEST_VALUE as u64 + 1)
        .read_to_end(&mut value)
        .with_context(|| format!("reading {}", file.display()))?;
    if value.len() > MAX_REQUEST_VALUE {
        return Err(too_large(format!("more than {MAX_REQUEST_VALUE}")));
    }
    Ok(value)
}

/// Runs a node until SIGINT or SIGTERM, then shuts it down gracefully.
async fn serve(config: NodeConfig) -> Result<ExitCode> {
    let node = Node::start(config).await.context("starting the node")?;
    outln!("node {} listening on {}", node.id(), node.address());
    if let Some(http) = node.http_address() {
        outln!(
            "node {} serves its HTTP API on {http} (https://{}:{}/)",
            node.id(),
            dynamo_client::tls::NODE_SERVER_NAME,
            http.port()
        );
    }
    wait_for_signal().await;
    node.shutdown(Duration::from_secs(5)).await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
