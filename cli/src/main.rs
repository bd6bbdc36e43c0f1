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

mod bench;
mod dev;
mod proxy;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use dynamo_node::address::NodeAddress;
use dynamo_node::client::GetOutcome;
use dynamo_node::protocol::{BucketProps, GetReply, Request, RequestOptions, Response};
use dynamo_node::sets::{SetOp, SetView};
use dynamo_node::tls::{ClusterCa, Identity, Role, TlsConfig, TlsError};
use dynamo_node::{Client, DurabilityMode, Node, NodeConfig};
use dynamo_resolve::{Resolution, Resolver};

/// jemalloc hands memory freed after a burst (a client's flood of partial frames, a large
/// handoff) back to the OS within seconds; glibc's allocator kept a node's peak for good.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A Dynamo-style key-value store (DeCandia et al., SOSP 2007).
#[derive(Parser)]
#[command(name = "dynamo", version, about)]
struct Cli {
    /// Log format of `node start` and `dev cluster`.
    #[arg(long, global = true, default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
    /// Threads of the async runtime (every core without it). Nodes that share a machine do
    /// better with fewer each: `dev cluster` gives each node its share of the cores, and
    /// `dev bench` takes its own share beside its nodes.
    #[arg(long, global = true, env = "DYNAMO_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Certificates: a cluster CA and identities signed by it.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Start a node that joins the cluster of SEED (paper 4.8.1).
    Join {
        /// Address of a member of the cluster (HOST:PORT; an IP address or a DNS name).
        seed: NodeAddress,
        /// Take the place of member NAME, which is down for good: it leaves the ring and this
        /// node joins in the same ring change, taking over its partitions (anti-entropy fills
        /// them from the surviving replicas).
        #[arg(long, value_name = "NAME")]
        replace: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Ask the member NAME to leave the cluster; its partitions move to the others. Needs an
    /// admin certificate.
    Leave(MemberChange),
    /// Write a value.
    Put {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Value (or use --file).
        value: Option<String>,
        /// Read the value from a file.
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
        /// Context token from the read this write follows.
        #[arg(long)]
        context: Option<String>,
        /// Write quorum for this request.
        #[arg(long)]
        w: Option<usize>,
        /// Primary write quorum for this request.
        #[arg(long)]
        pw: Option<usize>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Read a key: every sibling and the context token.
    Get {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Read quorum for this request.
        #[arg(long)]
        r: Option<usize>,
        /// Primary read quorum for this request.
        #[arg(long)]
        pr: Option<usize>,
        /// Write the value's exact bytes to stdout, nothing else (one value only).
        #[arg(long, conflicts_with_all = ["output", "json"])]
        raw: bool,
        /// Write the value's exact bytes to FILE (one value only).
        #[arg(long, conflicts_with = "json")]
        output: Option<PathBuf>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a key (a tombstone that supersedes what the context saw).
    Delete {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Context token from the read this delete follows; without one, the key is read first
        /// and every version that read saw is deleted.
        #[arg(long)]
        context: Option<String>,
        /// Read quorum of the read a delete without --context starts with.
        #[arg(long)]
        r: Option<usize>,
        /// Write quorum for the tombstone.
        #[arg(long)]
        w: Option<usize>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Buckets: namespaces with their own N, R, W.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Load the cluster with a YCSB-style workload and report throughput and latency
    /// percentiles (HDR histograms). Creates the bucket (last write wins) if it is missing.
    Bench {
        #[command(flatten)]
        bench: bench::BenchArgs,
        #[command(flatten)]
        connection: Connection,
    },
    /// Serve one node's HTTP API on a loopback address without TLS, authenticated to the node
    /// with your certificate (like `kubectl proxy`), so a browser can open the status page.
    Proxy {
        /// The node's HTTP API address (its `--http-listen`).
        #[arg(long, env = "DYNAMO_HTTP")]
        to: SocketAddr,
        /// Where the proxy listens (a loopback address).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Directory with ca.pem and the identity's certificate.
        #[arg(long, env = "DYNAMO_CERTS_DIR", default_value = "dynamo-certs")]
        certs_dir: PathBuf,
        /// Name of the identity to use; needed only when the directory holds several.
        #[arg(long, env = "DYNAMO_IDENTITY")]
        identity: Option<String>,
    },
    /// Shopping carts: items in a `cart` bucket (removes stay removed) or a `union` bucket (the
    /// paper's cart). Each operation reads the key and writes with its context.
    #[command(subcommand)]
    Cart(CartCommand),
    /// Partition handoff after joins, leaves and restarts (progress is in `status`).
    #[command(subcommand)]
    Handoff(HandoffCommand),
    /// Members, up/down, zone, ownership, partitions and pending hints.
    Status {
        #[command(flatten)]
        connection: Connection,
    },
    /// Who owns which partition.
    Ring {
        #[command(flatten)]
        connection: Connection,
    },
    /// Local development helpers.
    #[command(subcommand)]
    Dev(dev::DevCommand),
}

#[derive(Subcommand)]
enum CertCommand {
    /// Create a cluster CA (ca.pem and its private key ca.key) in a private directory of its
    /// own. Keep that directory away from nodes and clients: it can mint any identity.
    Init {
        /// Directory for the CA (created 0700); refused if it already holds one.
        #[arg(long, env = "DYNAMO_CA_DIR", default_value = "dynamo-ca")]
        ca_dir: PathBuf,
        /// Cluster name written into the CA certificate.
        #[arg(long, default_value = "dynamo")]
        cluster: String,
    },
    /// Issue an identity signed by the cluster CA: its certificate, its key and the CA
    /// certificate (never the CA key) go into DIR, the directory to hand to that node or client.
    Issue {
        /// Directory of the CA made by `cert init` (read only).
        #[arg(long, env = "DYNAMO_CA_DIR", default_value = "dynamo-ca")]
        ca_dir: PathBuf,
        /// Directory to write the identity to (created 0700, files 0600).
        #[arg(long, env = "DYNAMO_CERTS_DIR", default_value = "dynamo-certs")]
        dir: PathBuf,
        #[command(flatten)]
        role: IssueRole,
        /// Replace an identity of the same name and role that already exists.
        #[arg(long)]
        force: bool,
    },
    /// Make what a new cluster needs in one step, for containers and scripts: the CA in
    /// `CA_DIR` unless it has one, and a directory `OUT/NAME` for each identity named that has
    /// none yet. Running it again changes nothing.
    Bootstrap {
        /// Directory of the CA (created 0700 if it has none).
        #[arg(long, env = "DYNAMO_CA_DIR", default_value = "dynamo-ca")]
        ca_dir: PathBuf,
        /// Where each identity gets its directory OUT/NAME.
        #[arg(long)]
        out: PathBuf,
        /// Node identities (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        /// Admin identities (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        admins: Vec<String>,
        /// Client identities (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        clients: Vec<String>,
        /// Cluster name written into a new CA certificate.
        #[arg(long, default_value = "dynamo")]
        cluster: String,
    },
}

/// Which role the issued certificate carries (exactly one).
#[derive(Args)]
#[group(required = true, multiple = false)]
struct IssueRole {
    /// A storage node with this name.
    #[arg(long)]
    node: Option<String>,
    /// An administrator: membership, node removal and buckets, plus what a client may do.
    #[arg(long)]
    admin: Option<String>,
    /// An application client: get, put, delete and read-only cluster information.
    #[arg(long)]
    client: Option<String>,
    /// A read-only client: get and read-only cluster information.
    #[arg(long)]
    read_only: Option<String>,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Start a node and serve until SIGINT or SIGTERM.
    Start(NodeArgs),
    /// Take a member that is down for good out of the ring; its partitions get new owners,
    /// which anti-entropy fills from the surviving replicas. Needs an admin certificate.
    Remove(MemberChange),
}

#[derive(Subcommand)]
enum HandoffCommand {
    /// Drop the partition transfers member NAME has queued or running; anti-entropy copies
    /// what they would have. A leaving node refuses. Needs an admin certificate.
    Cancel(MemberChange),
}

#[derive(Subcommand)]
enum BucketCommand {
    /// Create a bucket (`--update` changes an existing one). Needs an admin certificate.
    Create {
        /// Bucket name: 1 to 64 characters of a-z 0-9 _ -.
        name: String,
        /// Replicas per key.
        #[arg(long, default_value_t = 3)]
        n: usize,
        /// Read quorum.
        #[arg(long, default_value_t = 2)]
        r: usize,
        /// Write quorum.
        #[arg(long, default_value_t = 2)]
        w: usize,
        /// Primary read quorum.
        #[arg(long, default_value_t = 0)]
        pr: usize,
        /// Primary write quorum.
        #[arg(long, default_value_t = 0)]
        pw: usize,
        /// How concurrent versions resolve on read: siblings (every version, with the context),
        /// lww (newest write wins), max (largest integer), union (set union: the paper's cart,
        /// removed items can come back) or cart (observed-remove set: removes stay removed).
        /// Chosen at creation; it cannot change.
        #[arg(long, default_value = "siblings")]
        resolver: Resolver,
        /// Change the bucket if it exists (without it, an existing bucket is left as it is and
        /// the command fails).
        #[arg(long)]
        update: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// List buckets.
    List {
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Subcommand)]
enum CartCommand {
    /// Put an item in the cart.
    Add(CartItem),
    /// Take an item out of the cart (the adds this read saw).
    Remove(CartItem),
    /// The cart's items and what its read merged.
    Show {
        /// Bucket (created with --resolver cart or union).
        bucket: String,
        /// Key: the cart.
        key: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// One item of one cart.
#[derive(Args)]
struct CartItem {
    /// Bucket (created with --resolver cart or union).
    bucket: String,
    /// Key: the cart.
    key: String,
    /// The item.
    item: String,
    #[command(flatten)]
    connection: Connection,
}

/// A change an admin makes to one member, confirmed first.
#[derive(Args)]
struct MemberChange {
    /// The member's node id (as `dynamo status` shows it).
    name: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    connection: Connection,
}

impl MemberChange {
    /// Confirms `consequence` (of the member at its address) and sends `request` to the member.
    async fn ask_member(
        &self,
        consequence: &str,
        request: &Request,
    ) -> Result<(Response, NodeAddress)> {
        let client = self.connection.client()?;
        let node = member_address(&client, &self.name).await?;
        confirm(&format!("{} ({node}) {consequence}", self.name), self.yes)?;
        let answer = client
            .request_to(node.clone(), request)
            .await
            .with_context(|| format!("asking {} ({node})", self.name))?;
        Ok((answer, node))
    }
}

/// How to reach a cluster.
#[derive(Args, Clone)]
struct Connection {
    /// Node addresses to contact (comma-separated HOST:PORT; IP addresses or DNS names).
    #[arg(
        long = "nodes",
        env = "DYNAMO_NODES",
        value_delimiter = ',',
        default_value = "127.0.0.1:7000"
    )]
    nodes: Vec<NodeAddress>,
    /// Directory with ca.pem and the identity's certificate (made by `dynamo cert issue`).
    #[arg(long, env = "DYNAMO_CERTS_DIR", default_value = "dynamo-certs")]
    certs_dir: PathBuf,
    /// Name of the identity to use; needed only when the directory holds several.
    #[arg(long, env = "DYNAMO_IDENTITY")]
    identity: Option<String>,
    /// Request timeout in milliseconds (at least 1). A node that does not finish the QUIC
    /// handshake within a second is skipped sooner.
    #[arg(long, env = "DYNAMO_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Node settings: a TOML file, then flags and environment variables on top.
#[derive(Args, Clone, Default)]
struct NodeArgs {
    /// TOML configuration file (the node settings below, by their field names).
    #[arg(long, env = "DYNAMO_CONFIG")]
    config: Option<PathBuf>,
    /// Node name (also its certificate's name).
    #[arg(long, env = "DYNAMO_NAME")]
    name: Option<String>,
    /// UDP address to listen on; `0.0.0.0:PORT` or `[::]:PORT` listens on every interface
    /// (then give --advertise).
    #[arg(long, env = "DYNAMO_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address peers and clients are told to reach this node at (HOST:PORT, an IP address or a
    /// DNS name); the listen address without it.
    #[arg(long, env = "DYNAMO_ADVERTISE")]
    advertise: Option<NodeAddress>,
    /// TCP address of the HTTP API (HTTPS; clients present cluster certificates). Off
    /// without it.
    #[arg(long, env = "DYNAMO_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Data directory.
    #[arg(long, env = "DYNAMO_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Certificate directory.
    #[arg(long, env = "DYNAMO_CERTS_DIR")]
    certs_dir: Option<PathBuf>,
    /// Seed addresses (comma-separated HOST:PORT; IP addresses or DNS names, resolved when
    /// dialled); none founds a new cluster.
    #[arg(long = "seed", env = "DYNAMO_SEEDS", value_delimiter = ',')]
    seeds: Vec<NodeAddress>,
    /// Failure domain.
    #[arg(long, env = "DYNAMO_ZONE")]
    zone: Option<String>,
    /// Relative capacity.
    #[arg(long, env = "DYNAMO_CAPACITY")]
    capacity: Option<u32>,
    /// Durability of replica writes: sync or buffered.
    #[arg(long, env = "DYNAMO_DURABILITY", value_parser = ["sync", "buffered"])]
    durability: Option<String>,
    /// Partitions of a new ring (power of two).
    #[arg(long, env = "DYNAMO_PARTITIONS")]
    partitions: Option<u32>,
}

impl NodeArgs {
    fn to_config(&self) -> Result<NodeConfig> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => NodeConfig::default(),
        };
        if let Some(name) = &self.name {
            config.name.clone_from(name);
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(advertise) = &self.advertise {
            config.advertise = Some(advertise.clone());
        }
        if let Some(listen) = self.http_listen {
            config.http_listen = Some(listen);
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir.clone_from(dir);
        }
        if let Some(dir) = &self.certs_dir {
            config.certs_dir.clone_from(dir);
        }
        if !self.seeds.is_empty() {
            config.seeds.clone_from(&self.seeds);
        }
        if let Some(zone) = &self.zone {
            config.zone.clone_from(zone);
        }
        if let Some(capacity) = self.capacity {
            config.capacity = capacity;
        }
        if let Some(durability) = &self.durability {
            config.durability = match durability.as_str() {
                "buffered" => DurabilityMode::Buffered,
                _ => DurabilityMode::Sync,
            };
        }
        if let Some(partitions) = self.partitions {
            config.partitions = partitions;
        }
        Ok(config)
    }
}

impl Connection {
    /// A client of the cluster; its connections are closed when the command ends.
    fn client(&self) -> Result<Client> {
        let tls = load_tls(&self.certs_dir, self.identity.as_deref())?;
        let client = Client::new(
            &tls,
            self.nodes.clone(),
            Duration::from_millis(self.timeout_ms),
        )
        .context("creating the client")?;
        close_at_exit(&client);
        Ok(client)
    }
}

/// The endpoints of the clients this command made, closed by [`close_clients`] before the
/// process exits.
static CLIENT_ENDPOINTS: std::sync::Mutex<Vec<dynamo_node::transport::Endpoint>> =
    std::sync::Mutex::new(Vec::new());

/// Remembers `client`'s endpoint for [`close_clients`].
pub(crate) fn close_at_exit(client: &Client) {
    CLIENT_ENDPOINTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(client.endpoint().clone());
}

/// Closes the connections of every client this command made, waiting a bounded moment for the
/// nodes to be told (see [`dynamo_node::client::CLOSE_DRAIN`]). A process that just exited
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
    let ca_path = dir.join(dynamo_node::tls::CA_CERT_FILE);
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
            Command::Dev(dev::DevCommand::Bench(_)) => {
                Some(dev::core_share(bench::MATRIX_NODES + 1))
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
        Command::Cert(command) => cert(command),
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
                Some(bench::HttpTarget::new(&tls, &bench.http)?)
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
            let primary_percent = |m: &dynamo_node::protocol::MemberStatus| {
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
        Command::Dev(command) => dev::run(command, &cli.log_format).await,
    }
}

/// The most value bytes one request can carry (a frame, less room for the rest of the
/// request). A node's own `max_value_bytes` (1 MiB by default) may be lower; it says so.
const MAX_REQUEST_VALUE: usize = dynamo_node::transport::MAX_FRAME_BYTES - 64 * 1024;

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

/// A key as it appears in messages: at most 64 characters, with the length when cut.
fn shown(key: &str) -> String {
    const SHOWN: usize = 64;
    if key.chars().count() <= SHOWN {
        return key.to_owned();
    }
    let head: String = key.chars().take(SHOWN).collect();
    format!("{head}... ({} bytes)", key.len())
}

/// A value for a person: as is when it is text, otherwise visibly escaped and labelled.
fn printable(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) =>
        {
            text.to_owned()
        }
        _ => format!("<binary, {} bytes> {}", value.len(), value.escape_ascii()),
    }
}

/// `get --raw` / `--output FILE`: the exact bytes of the one value. Exit codes as for `get`.
fn write_exact(outcome: &GetOutcome, output: Option<&Path>) -> Result<ExitCode> {
    let reply = match outcome {
        GetOutcome::NotFound { .. } => {
            eprintln!("not found");
            return Ok(ExitCode::from(3));
        }
        GetOutcome::Found(reply) => reply,
    };
    let values = match &reply.resolution {
        None => reply.values.as_slice(),
        Some(resolution) if resolution.value.is_none() => {
            eprintln!("not found ({})", resolution.notes.join("; "));
            return Ok(ExitCode::from(3));
        }
        Some(resolution) => resolution.value.as_slice(),
    };
    let [value] = values else {
        eprintln!(
            "error: {} siblings; --raw and --output write one value: read them with --json (base64) and resolve them with a write that carries the context",
            reply.values.len()
        );
        return Ok(ExitCode::from(4));
    };
    if let Some(path) = output {
        std::fs::write(path, value).with_context(|| format!("writing {}", path.display()))?;
        outln!("wrote {} bytes to {}", value.len(), path.display());
        outln!("context: {}", reply.context);
    } else {
        let mut out = std::io::stdout().lock();
        if let Err(error) = out.write_all(value).and_then(|()| out.flush())
            && error.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(error).context("writing to stdout");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a get's outcome and returns its exit code: 0 one value, 3 not found, 4 siblings.
/// JSON carries values as base64 (`"encoding": "base64"`), so any bytes survive.
fn print_get(outcome: &GetOutcome, json: bool) -> ExitCode {
    use base64::Engine as _;
    match outcome {
        GetOutcome::Found(GetReply {
            resolution: Some(resolution),
            context,
            ..
        }) => {
            print_resolution(resolution, context, json);
            if resolution.value.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        GetOutcome::Found(reply) => {
            if json {
                let values: Vec<String> = reply
                    .values
                    .iter()
                    .map(|v| base64::engine::general_purpose::STANDARD.encode(v))
                    .collect();
                outln!(
                    "{}",
                    serde_json::json!({"found": true, "encoding": "base64", "values": values, "context": reply.context})
                );
            } else {
                if reply.values.len() > 1 {
                    outln!("{} siblings:", reply.values.len());
                }
                for value in &reply.values {
                    outln!("{}", printable(value));
                }
                outln!("context: {}", reply.context);
            }
            if reply.values.len() > 1 {
                ExitCode::from(4)
            } else {
                ExitCode::SUCCESS
            }
        }
        GetOutcome::NotFound { context } => {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"found": false, "context": context})
                );
            } else {
                outln!("not found");
            }
            ExitCode::from(3)
        }
    }
}

/// A resolved value as a person reads it: a set's items one per line, anything else as text.
fn resolved_lines(resolver: Resolver, value: &[u8]) -> Vec<String> {
    let items: Option<Vec<Vec<u8>>> = match resolver {
        Resolver::Cart => dynamo_resolve::Cart::decode(value)
            .ok()
            .map(|c| c.items().map(<[u8]>::to_vec).collect()),
        Resolver::Union => dynamo_resolve::ItemSet::decode(value)
            .ok()
            .map(|s| s.0.into_iter().collect()),
        _ => None,
    };
    match items {
        Some(items) if items.is_empty() => vec!["(empty)".to_string()],
        Some(items) => items.iter().map(|i| printable(i)).collect(),
        None => vec![printable(value)],
    }
}

/// Prints a get that the bucket's resolver resolved: the value, then what was merged.
fn print_resolution(resolution: &Resolution, context: &str, json: bool) {
    use base64::Engine as _;
    let engine = &base64::engine::general_purpose::STANDARD;
    if json {
        let discarded: Vec<String> = resolution
            .discarded
            .iter()
            .map(|v| engine.encode(v))
            .collect();
        outln!(
            "{}",
            serde_json::json!({
                "found": resolution.value.is_some(),
                "resolver": resolution.resolver.name(),
                "encoding": "base64",
                "value": resolution.value.as_ref().map(|v| engine.encode(v)),
                "merged": resolution.merged,
                "notes": resolution.notes,
                "discarded": discarded,
                "context": context,
            })
        );
        return;
    }
    match &resolution.value {
        Some(value) => {
            for line in resolved_lines(resolution.resolver, value) {
                outln!("{line}");
            }
        }
        None => outln!("not found"),
    }
    outln!(
        "resolved by {}: {}",
        resolution.resolver,
        match resolution.merged {
            1 => "one version, nothing to merge".to_string(),
            n => format!("{n} versions merged"),
        }
    );
    for note in &resolution.notes {
        outln!("  {note}");
    }
    for value in &resolution.discarded {
        outln!("  discarded: {}", printable(value));
    }
    outln!("context: {context}");
}

/// Prints a cart after an operation.
fn print_set(view: &SetView, op: Option<&SetOp>, json: bool) {
    if json {
        let items: Vec<String> = view.items.iter().map(|i| printable(i)).collect();
        outln!(
            "{}",
            serde_json::json!({"resolver": view.resolver.name(), "items": items, "merged": view.merged, "notes": view.notes, "changed": view.changed})
        );
        return;
    }
    match op {
        Some(SetOp::Add(item)) if view.changed => outln!("added {}", printable(item)),
        Some(SetOp::Add(item)) => outln!("{} was already in the cart", printable(item)),
        Some(SetOp::Remove(item)) if view.changed => outln!("removed {}", printable(item)),
        Some(SetOp::Remove(item)) => outln!("{} was not in the cart", printable(item)),
        None => {}
    }
    if view.merged > 1 {
        outln!("{} versions merged ({})", view.merged, view.resolver);
    }
    for note in &view.notes {
        outln!("  {note}");
    }
    if view.items.is_empty() {
        outln!("the cart is empty");
    } else {
        outln!("cart ({}):", view.items.len());
        for item in &view.items {
            outln!("  {}", printable(item));
        }
    }
}

/// UP, DOWN or LEFT. A member that left is shown as left by every node, itself included (its
/// own failure detector still calls it up).
fn member_state(member: &dynamo_node::protocol::MemberStatus) -> &'static str {
    match (member.status.as_str(), member.up) {
        ("left", _) => "LEFT",
        (_, true) => "UP",
        (_, false) => "DOWN",
    }
}

/// One line on the tombstones the answering node reaped.
fn reaper_line(reaper: &dynamo_node::protocol::ReaperStatus) -> String {
    if reaper.grace_ms == 0 {
        return "tombstones: kept forever (tombstone_grace_ms = 0)".into();
    }
    format!(
        "tombstones: {} reaped, {} kept for now (reaped once {} s old, every replica holds them and no node holds a hint of the key)",
        reaper.reaped,
        reaper.kept,
        reaper.grace_ms / 1000
    )
}

/// One line on the partitions the answering node is handing to other nodes.
fn handoff_line(handoff: &dynamo_node::protocol::HandoffStatus) -> String {
    let mut parts: Vec<String> = handoff
        .running
        .iter()
        .map(|(partition, to, keys)| {
            format!("p{partition} to {to} in progress ({keys} keys acknowledged)")
        })
        .collect();
    if handoff.queued > 0 {
        parts.push(format!("{} partitions queued", handoff.queued));
    }
    if handoff.failed > 0 {
        parts.push(format!(
            "{} given up (anti-entropy covers them)",
            handoff.failed
        ));
    }
    if parts.is_empty() {
        "handoff: none pending".into()
    } else {
        format!("handoff: {}", parts.join("; "))
    }
}

/// One line on anti-entropy (paper 4.7) as the answering node runs it.
fn anti_entropy_line(ae: &dynamo_node::protocol::AntiEntropyStatus) -> String {
    if !ae.enabled {
        return "anti-entropy: off".into();
    }
    let window = ae.interval_ms.saturating_mul(2);
    let recent = ae
        .pairs
        .iter()
        .filter(|p| p.agreed_ms_ago.is_some_and(|ago| ago <= window))
        .count();
    let oldest = if ae.pairs.iter().any(|p| p.agreed_ms_ago.is_none()) {
        "some not yet compared".to_owned()
    } else {
        let ago = ae
            .pairs
            .iter()
            .filter_map(|p| p.agreed_ms_ago)
            .max()
            .unwrap_or(0);
        format!("oldest agreement {:.1} s ago", ago as f64 / 1000.0)
    };
    let running: Vec<String> = ae
        .in_progress
        .iter()
        .map(|p| format!("p{} with {}", p.partition, p.peer))
        .collect();
    let running = if running.is_empty() {
        "none in progress".to_owned()
    } else {
        format!("in progress: {}", running.join(", "))
    };
    format!(
        "anti-entropy: every {:.0} s; {recent} of {} partition/peer pairs agreed within {:.0} s ({oldest}); {running}; {} keys repaired ({} bytes){}",
        ae.interval_ms as f64 / 1000.0,
        ae.pairs.len(),
        window as f64 / 1000.0,
        ae.repaired_keys,
        ae.bytes_moved,
        if ae.throttled {
            format!(
                "; held to {:.1} MiB/s to spare client requests",
                ae.allowed_bytes_per_sec as f64 / (1024.0 * 1024.0)
            )
        } else {
            String::new()
        }
    )
}

fn cert(command: CertCommand) -> Result<ExitCode> {
    match command {
        CertCommand::Init { ca_dir, cluster } => {
            let ca = ClusterCa::generate(&cluster).context("generating the cluster CA")?;
            ca.save(&ca_dir)
                .with_context(|| format!("writing the CA to {}", ca_dir.display()))?;
            outln!(
                "cluster CA written to {} (ca.pem, ca.key); keep that directory private and away from nodes and clients",
                ca_dir.display()
            );
            outln!(
                "next: dynamo cert issue --ca-dir {} --node NAME --dir DIR (and --admin / --client / --read-only)",
                ca_dir.display()
            );
        }
        CertCommand::Issue {
            ca_dir,
            dir,
            role,
            force,
        } => {
            let (role, name) = match role {
                IssueRole { node: Some(n), .. } => (Role::Node, n),
                IssueRole { admin: Some(n), .. } => (Role::Admin, n),
                IssueRole {
                    client: Some(n), ..
                } => (Role::Client, n),
                IssueRole {
                    read_only: Some(n), ..
                } => (Role::ReadOnly, n),
                _ => bail!("give one of --node, --admin, --client or --read-only with a NAME"),
            };
            dynamo_node::tls::validate_name(&name)?;
            let ca = ClusterCa::load(&ca_dir).with_context(|| {
                format!(
                    "loading the cluster CA from {} (made by `dynamo cert init --ca-dir {}`)",
                    ca_dir.display(),
                    ca_dir.display()
                )
            })?;
            let identity = issue_into(&ca, role, &name, &dir, force)?;
            let stem = identity.file_stem();
            outln!(
                "{role} certificate for {name} written to {} ({stem}.pem, {stem}.key, ca.pem)",
                dir.display()
            );
        }
        CertCommand::Bootstrap {
            ca_dir,
            out,
            nodes,
            admins,
            clients,
            cluster,
        } => bootstrap_certs(
            &ca_dir,
            &out,
            &cluster,
            &[
                (Role::Node, nodes),
                (Role::Admin, admins),
                (Role::Client, clients),
            ],
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Issues identity `name` with `role` into `dir`, beside the CA certificate (`force`: replace
/// one that exists).
fn issue_into(ca: &ClusterCa, role: Role, name: &str, dir: &Path, force: bool) -> Result<Identity> {
    let identity = ca
        .issue(role, name)
        .with_context(|| format!("issuing {name}"))?;
    identity
        .save(dir, force)
        .with_context(|| format!("writing {name}'s identity to {}", dir.display()))?;
    ca.install_cert(dir)
        .with_context(|| format!("writing the CA certificate to {}", dir.display()))?;
    Ok(identity)
}

/// `cert bootstrap`: the CA if missing, then each identity that has no directory yet.
fn bootstrap_certs(
    ca_dir: &Path,
    out: &Path,
    cluster: &str,
    identities: &[(Role, Vec<String>)],
) -> Result<()> {
    let ca = if ca_dir.join(dynamo_node::tls::CA_CERT_FILE).exists() {
        ClusterCa::load(ca_dir)
            .with_context(|| format!("loading the cluster CA from {}", ca_dir.display()))?
    } else {
        let ca = ClusterCa::generate(cluster).context("generating the cluster CA")?;
        ca.save(ca_dir)
            .with_context(|| format!("writing the CA to {}", ca_dir.display()))?;
        outln!("cluster CA written to {}", ca_dir.display());
        ca
    };
    for (role, names) in identities {
        for name in names {
            dynamo_node::tls::validate_name(name)?;
            let dir = out.join(name);
            if Identity::load(&dir, Some(*role), Some(name)).is_ok() {
                outln!("{role} {name}: {} already holds it", dir.display());
                continue;
            }
            issue_into(&ca, *role, name, &dir, false)?;
            outln!("{role} {name}: written to {}", dir.display());
        }
    }
    Ok(())
}

/// Runs a node until SIGINT or SIGTERM, then shuts it down gracefully.
async fn serve(config: NodeConfig) -> Result<ExitCode> {
    let node = Node::start(config).await.context("starting the node")?;
    outln!("node {} listening on {}", node.id(), node.address());
    if let Some(http) = node.http_address() {
        outln!(
            "node {} serves its HTTP API on {http} (https://{}:{}/)",
            node.id(),
            dynamo_node::tls::NODE_SERVER_NAME,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: a node that left showed itself UP while its peers showed it DOWN.
    #[test]
    fn member_states_table() {
        let cases = [
            ("alive", true, "UP"),
            ("alive", false, "DOWN"),
            ("leaving", true, "UP"),
            ("left", true, "LEFT"),
            ("left", false, "LEFT"),
        ];
        for (status, up, expected) in cases {
            let member = dynamo_node::protocol::MemberStatus {
                id: "n1".into(),
                address: String::new(),
                zone: String::new(),
                capacity: 1,
                status: status.into(),
                up,
                in_ring: true,
                partitions: 0,
                ownership_percent: 0.0,
                pending_hints: 0,
                phi: None,
            };
            assert_eq!(member_state(&member), expected, "{status} {up}");
        }
    }

    #[test]
    fn values_are_printed_as_text_or_escaped() {
        let cases: [(&[u8], &str); 4] = [
            (b"hello", "hello"),
            (b"two\nlines", "two\nlines"),
            (
                &[0x41, 0xff, 0x00, 0xfe],
                r"<binary, 4 bytes> A\xff\x00\xfe",
            ),
            (b"bell\x07", r"<binary, 5 bytes> bell\x07"),
        ];
        for (value, expected) in cases {
            assert_eq!(printable(value), expected);
        }
        assert_eq!(
            shown(&"k".repeat(100)).len(),
            64 + " ... (100 bytes)".len() - 1
        );
    }
}
