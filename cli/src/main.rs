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
mod backup;
mod bench;
mod bench_http;
mod bench_report;
mod cert;
mod cluster;
mod data;
mod dev;
mod matrix;
mod print;
mod proxy;
mod scale;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use dynamo_client::Client;
use dynamo_client::address::NodeAddress;
use dynamo_client::tls::{Identity, TlsConfig, TlsError};
use dynamo_node::{Node, NodeConfig};

use args::{BucketCommand, Cli, Command, DevCommand, HandoffCommand, JoinArgs, NodeCommand};

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
            Command::Dev(DevCommand::Bench(_) | DevCommand::Scale(_)) => {
                Some(dev::core_share(matrix::MATRIX_NODES + 1))
            }
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
        Command::Join(JoinArgs {
            seed,
            replace,
            node,
        }) => {
            init_logging(&cli.log_format);
            let mut config = node.to_config()?;
            config.seeds = vec![seed];
            config.replaces = replace;
            // An explicit join: a node that had left the cluster joins it again.
            config.rejoin = true;
            serve(config).await
        }
        Command::Node(NodeCommand::Remove(change)) => cluster::remove_node(change).await,
        Command::Leave(change) => cluster::leave(change).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
        Command::CompareBackups(args) => backup::compare(&args),
        Command::Put(args) => data::put(args).await,
        Command::Get(args) => data::get(args).await,
        Command::Delete(args) => data::delete(args).await,
        Command::Bench { bench, connection } => {
            let client = if bench.server_driven {
                let mut first = connection.clone();
                first.nodes.truncate(1);
                first.client()?.server_driven()
            } else if bench.reads == bench::ReadPath::Coordinated {
                connection.client()?.coordinated_reads()
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
        Command::Cart(command) => data::cart(command).await,
        Command::Bucket(BucketCommand::Create(args)) => cluster::create_bucket(args).await,
        Command::Handoff(HandoffCommand::Cancel(change)) => cluster::cancel_handoff(change).await,
        Command::Bucket(BucketCommand::List { connection }) => {
            cluster::list_buckets(connection).await
        }
        Command::Status { connection } => cluster::status(connection).await,
        Command::Ring { connection } => cluster::ring(connection).await,
        Command::Dev(DevCommand::Cluster(args)) => dev::cluster(args, &cli.log_format).await,
        Command::Dev(DevCommand::Demo(args)) => dev::demo_command(args, &cli.log_format).await,
        Command::Dev(DevCommand::Bench(args)) => {
            matrix::run(args, &cli.log_format).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(DevCommand::Scale(args)) => {
            scale::run(args, &cli.log_format).await?;
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
    tokio::select! {
        () = wait_for_signal() => {}
        why = node.stopped() => {
            // A failed fsync: exit so that a supervisor restarts the node; its store recovers
            // from the journal when it opens again.
            eprintln!("error: {why}");
            node.shutdown(Duration::from_secs(1)).await;
            return Ok(ExitCode::from(EXIT_STOPPED));
        }
    }
    node.shutdown(Duration::from_secs(5)).await;
    Ok(ExitCode::SUCCESS)
}

/// The exit code of a node that stopped serving because its store failed (see `Node::stopped`).
const EXIT_STOPPED: u8 = 75;

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
