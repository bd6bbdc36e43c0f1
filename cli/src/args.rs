//! The command line: every command, flag and environment variable of `dynamo`, as clap
//! definitions, and how connection and node flags become a `Client` or a `NodeConfig`.
//!
//! This module must not run commands or print results: `main.rs` runs them, `print.rs` prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use dynamo_client::Client;
use dynamo_client::address::NodeAddress;
use dynamo_node::{DurabilityMode, NodeConfig};
use dynamo_protocol::{Request, Response};
use dynamo_resolve::Resolver;

use crate::{bench, close_at_exit, confirm, dev, load_tls, matrix, member_address, scale};

/// A Dynamo-style key-value store (DeCandia et al., SOSP 2007).
#[derive(Parser)]
#[command(name = "dynamo", version, about)]
pub(crate) struct Cli {
    /// Log format of `node start` and `dev cluster`.
    #[arg(long, global = true, default_value = "human", value_parser = ["human", "json"])]
    pub(crate) log_format: String,
    /// Threads of the async runtime (every core without it). Nodes that share a machine do
    /// better with fewer each: `dev cluster` gives each node its share of the cores, and
    /// `dev bench` takes its own share beside its nodes.
    #[arg(long, global = true, env = "DYNAMO_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) worker_threads: Option<u16>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Certificates: a cluster CA and identities signed by it.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Start a node that joins the cluster of SEED (paper 4.8.1).
    Join(JoinArgs),
    /// Ask the member NAME to leave the cluster; its partitions move to the others. Needs an
    /// admin certificate.
    Leave(MemberChange),
    /// Write a value.
    Put(PutArgs),
    /// Read a key: every sibling and the context token.
    Get(GetArgs),
    /// Delete a key (a tombstone that supersedes what the context saw).
    Delete(DeleteArgs),
    /// Buckets: namespaces with their own N, R, W.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Back up every key of the cluster's buckets (or of --bucket) with all its versions into
    /// a file; --resume continues an interrupted backup.
    Backup(BackupArgs),
    /// Merge a backup into the cluster: a version-set merge, never an overwrite, so what the
    /// cluster overwrote or deleted since stays so. Needs an admin certificate.
    Restore(RestoreArgs),
    /// Compare two backups key by key (one of a cluster and one of the cluster it was restored
    /// into, say); exits 1 when they differ.
    CompareBackups(CompareArgs),
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
    Dev(DevCommand),
}

#[derive(Subcommand)]
pub(crate) enum CertCommand {
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
pub(crate) struct IssueRole {
    /// A storage node with this name.
    #[arg(long)]
    pub(crate) node: Option<String>,
    /// An administrator: membership, node removal and buckets, plus what a client may do.
    #[arg(long)]
    pub(crate) admin: Option<String>,
    /// An application client: get, put, delete and read-only cluster information.
    #[arg(long)]
    pub(crate) client: Option<String>,
    /// A read-only client: get and read-only cluster information.
    #[arg(long)]
    pub(crate) read_only: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum NodeCommand {
    /// Start a node and serve until SIGINT or SIGTERM.
    Start(Box<NodeArgs>),
    /// Take a member that is down for good out of the ring; its partitions get new owners,
    /// which anti-entropy fills from the surviving replicas. The cluster remembers it: it no
    /// longer holds up tombstone reaping, and if it comes back on its old disk it serves
    /// nothing (wipe it and `dynamo join` instead). Also for a member that died while leaving
    /// or joining. Needs an admin certificate.
    Remove(MemberChange),
}

#[derive(Subcommand)]
pub(crate) enum HandoffCommand {
    /// Drop the partition transfers member NAME has queued or running; anti-entropy copies
    /// what they would have. A leaving node refuses. Needs an admin certificate.
    Cancel(MemberChange),
}

#[derive(Subcommand)]
pub(crate) enum BucketCommand {
    /// Create a bucket (`--update` changes an existing one). Needs an admin certificate.
    Create(CreateBucketArgs),
    /// List buckets.
    List {
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Subcommand)]
pub(crate) enum CartCommand {
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
pub(crate) struct CartItem {
    /// Bucket (created with --resolver cart or union).
    pub(crate) bucket: String,
    /// Key: the cart.
    pub(crate) key: String,
    /// The item.
    pub(crate) item: String,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// A change an admin makes to one member, confirmed first.
#[derive(Args)]
pub(crate) struct MemberChange {
    /// The member's node id (as `dynamo status` shows it).
    pub(crate) name: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub(crate) yes: bool,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

impl MemberChange {
    /// Confirms `consequence` (of the member at its address) and sends `request` to the member.
    pub(crate) async fn ask_member(
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
pub(crate) struct Connection {
    /// Node addresses to contact (comma-separated HOST:PORT; IP addresses or DNS names).
    #[arg(
        long = "nodes",
        env = "DYNAMO_NODES",
        value_delimiter = ',',
        default_value = "127.0.0.1:7000"
    )]
    pub(crate) nodes: Vec<NodeAddress>,
    /// Directory with ca.pem and the identity's certificate (made by `dynamo cert issue`).
    #[arg(long, env = "DYNAMO_CERTS_DIR", default_value = "dynamo-certs")]
    pub(crate) certs_dir: PathBuf,
    /// Name of the identity to use; needed only when the directory holds several.
    #[arg(long, env = "DYNAMO_IDENTITY")]
    pub(crate) identity: Option<String>,
    /// Request timeout in milliseconds (at least 1). A node that does not finish the QUIC
    /// handshake within a second is skipped sooner.
    #[arg(long, env = "DYNAMO_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) timeout_ms: u64,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Node settings: a TOML file, then flags and environment variables on top.
#[derive(Args, Clone, Default)]
pub(crate) struct NodeArgs {
    /// TOML configuration file (the node settings below, by their field names).
    #[arg(long, env = "DYNAMO_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Node name (also its certificate's name).
    #[arg(long, env = "DYNAMO_NAME")]
    pub(crate) name: Option<String>,
    /// UDP address to listen on; `0.0.0.0:PORT` or `[::]:PORT` listens on every interface
    /// (then give --advertise).
    #[arg(long, env = "DYNAMO_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Address peers and clients are told to reach this node at (HOST:PORT, an IP address or a
    /// DNS name); the listen address without it.
    #[arg(long, env = "DYNAMO_ADVERTISE")]
    pub(crate) advertise: Option<NodeAddress>,
    /// TCP address of the HTTP API (HTTPS; clients present cluster certificates). Off
    /// without it.
    #[arg(long, env = "DYNAMO_HTTP_LISTEN")]
    pub(crate) http_listen: Option<SocketAddr>,
    /// Data directory.
    #[arg(long, env = "DYNAMO_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Certificate directory.
    #[arg(long, env = "DYNAMO_CERTS_DIR")]
    pub(crate) certs_dir: Option<PathBuf>,
    /// Seed addresses (comma-separated HOST:PORT; IP addresses or DNS names, resolved when
    /// dialled); none founds a new cluster.
    #[arg(long = "seed", env = "DYNAMO_SEEDS", value_delimiter = ',')]
    pub(crate) seeds: Vec<NodeAddress>,
    /// Failure domain.
    #[arg(long, env = "DYNAMO_ZONE")]
    pub(crate) zone: Option<String>,
    /// Relative capacity.
    #[arg(long, env = "DYNAMO_CAPACITY")]
    pub(crate) capacity: Option<u32>,
    /// Durability of replica writes: sync or buffered.
    #[arg(long, env = "DYNAMO_DURABILITY", value_parser = ["sync", "buffered"])]
    pub(crate) durability: Option<String>,
    /// Partitions of a new ring (power of two).
    #[arg(long, env = "DYNAMO_PARTITIONS")]
    pub(crate) partitions: Option<u32>,
    /// MiB kept free on the data directory's disk: below it the node takes no writes (other
    /// replicas and hints do), serves reads, and takes writes again once space returns
    /// (default 256; 0 turns the guard off).
    #[arg(long, env = "DYNAMO_DISK_RESERVE_MB")]
    pub(crate) disk_reserve_mb: Option<u64>,
}

impl NodeArgs {
    pub(crate) fn to_config(&self) -> Result<NodeConfig> {
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
        if let Some(mib) = self.disk_reserve_mb {
            config.disk_reserve_bytes = mib.saturating_mul(1024 * 1024);
        }
        Ok(config)
    }
}

impl Connection {
    /// A client of the cluster; its connections are closed when the command ends.
    pub(crate) fn client(&self) -> Result<Client> {
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

/// Local development commands.
#[derive(Subcommand)]
pub(crate) enum DevCommand {
    /// Start a local cluster of node processes and keep it running until Ctrl-C.
    Cluster(dev::ClusterArgs),
    /// Start a local cluster, run the shopping-cart story against it, and stop it.
    Demo(dev::ClusterArgs),
    /// The benchmark matrix (`cargo xtask bench`): local 3-node clusters, one per durability
    /// mode, workloads A, B, C, F and W at several concurrencies, the transport ceiling and
    /// server- against client-driven coordination; writes a Markdown report.
    Bench(matrix::MatrixArgs),
    /// The scale sweep (`cargo xtask bench --scale`): a local 3-node cluster per key count
    /// (10k, 100k, 1M; 10M with --long), with load rate, reads and writes, memory, disk per
    /// key, restart and anti-entropy refill times; writes a Markdown report.
    Scale(scale::ScaleArgs),
}

/// `dynamo put`.
#[derive(Args)]
pub(crate) struct PutArgs {
    /// Bucket.
    pub(crate) bucket: String,
    /// Key.
    pub(crate) key: String,
    /// Value (or use --file).
    pub(crate) value: Option<String>,
    /// Read the value from a file.
    #[arg(long, conflicts_with = "value")]
    pub(crate) file: Option<PathBuf>,
    /// Context token from the read this write follows.
    #[arg(long)]
    pub(crate) context: Option<String>,
    /// Write quorum for this request.
    #[arg(long)]
    pub(crate) w: Option<usize>,
    /// Primary write quorum for this request.
    #[arg(long)]
    pub(crate) pw: Option<usize>,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// `dynamo get`.
#[derive(Args)]
pub(crate) struct GetArgs {
    /// Bucket.
    pub(crate) bucket: String,
    /// Key.
    pub(crate) key: String,
    /// Read quorum for this request.
    #[arg(long)]
    pub(crate) r: Option<usize>,
    /// Primary read quorum for this request.
    #[arg(long)]
    pub(crate) pr: Option<usize>,
    /// Write the value's exact bytes to stdout, nothing else (one value only).
    #[arg(long, conflicts_with_all = ["output", "json"])]
    pub(crate) raw: bool,
    /// Write the value's exact bytes to FILE (one value only).
    #[arg(long, conflicts_with = "json")]
    pub(crate) output: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// `dynamo delete`.
#[derive(Args)]
pub(crate) struct DeleteArgs {
    /// Bucket.
    pub(crate) bucket: String,
    /// Key.
    pub(crate) key: String,
    /// Context token from the read this delete follows; without one, the key is read first
    /// and every version that read saw is deleted.
    #[arg(long)]
    pub(crate) context: Option<String>,
    /// Read quorum of the read a delete without --context starts with.
    #[arg(long)]
    pub(crate) r: Option<usize>,
    /// Write quorum for the tombstone.
    #[arg(long)]
    pub(crate) w: Option<usize>,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// `dynamo join`.
#[derive(Args)]
pub(crate) struct JoinArgs {
    /// Address of a member of the cluster (HOST:PORT; an IP address or a DNS name).
    pub(crate) seed: NodeAddress,
    /// Take the place of member NAME, which is down for good: it leaves the ring and this
    /// node joins in the same ring change, taking over its partitions (anti-entropy fills
    /// them from the surviving replicas).
    #[arg(long, value_name = "NAME")]
    pub(crate) replace: Option<String>,
    #[command(flatten)]
    pub(crate) node: NodeArgs,
}

/// `dynamo bucket create`.
#[derive(Args)]
pub(crate) struct CreateBucketArgs {
    /// Bucket name: 1 to 64 characters of a-z 0-9 _ -.
    pub(crate) name: String,
    /// Replicas per key.
    #[arg(long, default_value_t = 3)]
    pub(crate) n: usize,
    /// Read quorum.
    #[arg(long, default_value_t = 2)]
    pub(crate) r: usize,
    /// Write quorum.
    #[arg(long, default_value_t = 2)]
    pub(crate) w: usize,
    /// Primary read quorum.
    #[arg(long, default_value_t = 0)]
    pub(crate) pr: usize,
    /// Primary write quorum.
    #[arg(long, default_value_t = 0)]
    pub(crate) pw: usize,
    /// How concurrent versions resolve on read: siblings (every version, with the context),
    /// lww (newest write wins), max (largest integer), union (set union: the paper's cart,
    /// removed items can come back) or cart (observed-remove set: removes stay removed).
    /// Chosen at creation; it cannot change.
    #[arg(long, default_value = "siblings")]
    pub(crate) resolver: Resolver,
    /// Change the bucket if it exists (without it, an existing bucket is left as it is and
    /// the command fails).
    #[arg(long)]
    pub(crate) update: bool,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// `dynamo backup`.
#[derive(Args)]
pub(crate) struct BackupArgs {
    /// The file to write (refused if it exists, unless --resume continues it).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// A bucket to back up (repeat for several); every bucket when none is given.
    #[arg(long = "bucket")]
    pub(crate) buckets: Vec<String>,
    /// Continue an interrupted backup in --out after its last whole page.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Keys per page (1 to 1000): each page is one request and one checkpoint.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) page_keys: u32,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// `dynamo restore`.
#[derive(Args)]
pub(crate) struct RestoreArgs {
    /// The backup file (made by `dynamo backup`).
    pub(crate) file: PathBuf,
    /// A bucket to restore (repeat for several); every bucket in the file when none is given.
    #[arg(long = "bucket")]
    pub(crate) buckets: Vec<String>,
    /// Merges in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: u16,
    /// Write quorum of each merge (the bucket's W when not given).
    #[arg(long)]
    pub(crate) w: Option<usize>,
    /// Restore a backup older than the cluster's tombstone grace period: keys deleted since
    /// the backup whose tombstones were reaped come back.
    #[arg(long)]
    pub(crate) allow_resurrection: bool,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// `dynamo compare-backups`.
#[derive(Args)]
pub(crate) struct CompareArgs {
    /// The first backup.
    pub(crate) first: PathBuf,
    /// The second backup.
    pub(crate) second: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}
