//! A node's configuration: where it listens, where its data and certificates are, whom it
//! knows, and how it places and stores data. The CLI fills it from a TOML file, flags and
//! environment variables; every field has a default that suits a local cluster.
//!
//! This module must not know how the configuration is obtained.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::HttpLimits;
use dynamo_client::address::NodeAddress;
use dynamo_client::transport::TransportLimits;

/// How replica writes reach the disk (paper 6.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// fsync before acknowledging every write.
    #[default]
    Sync,
    /// Acknowledge from the write buffer; the coordinator's own write stays durable.
    Buffered,
}

/// Everything a node needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Node id: 1 to 63 characters of `[a-z0-9-]`, also the name in its certificate.
    pub name: String,
    /// UDP address to listen on (QUIC); may be unspecified (`0.0.0.0:7000`, `[::]:7000`) when
    /// `advertise` says where peers reach the node.
    pub listen: SocketAddr,
    /// The address peers and clients are told to reach this node at: an IP address or a DNS
    /// name, with its port (behind NAT, in a container or a pod, where the listen address is
    /// not the one others dial). `None`: the listen address, which must then be specific. A
    /// node that restarts on a new address keeps its partitions; gossip carries the new one.
    pub advertise: Option<NodeAddress>,
    /// Data directory (the fjall store and the last ring).
    pub data_dir: PathBuf,
    /// Directory with `ca.pem` and this node's `{name}.node.pem` / `{name}.node.key` (and not
    /// the CA's private key).
    pub certs_dir: PathBuf,
    /// Addresses of seed nodes (IP addresses or host names, resolved when dialled). A node
    /// without seeds founds a new cluster.
    pub seeds: Vec<NodeAddress>,
    /// Failure domain.
    pub zone: String,
    /// Relative capacity.
    pub capacity: u32,
    /// Durability of replica writes.
    pub durability: DurabilityMode,
    /// Partitions of a new ring (a power of two); only the founding node's value matters.
    pub partitions: u32,
    /// Replication target of a new ring's claim.
    pub target_n: usize,
    /// Gossip cluster name; nodes of another cluster are ignored.
    pub cluster: String,
    /// Default client request timeout, in milliseconds.
    pub request_timeout_ms: u64,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// Time between gossip rounds, in milliseconds (the paper uses one second).
    pub gossip_interval_ms: u64,
    /// Time between anti-entropy sweeps, in milliseconds: every partition this node replicates
    /// is compared with each other replica once per sweep (paper 4.7); 0 turns it off.
    pub anti_entropy_interval_ms: u64,
    /// Anti-entropy exchanges a node runs at once.
    pub anti_entropy_sessions: usize,
    /// Bytes of versions anti-entropy may move per second; 0: no limit.
    pub anti_entropy_bytes_per_sec: u64,
    /// Partition transfers handoff (after joins, leaves and restarts) runs at once.
    pub handoff_concurrency: usize,
    /// A tombstone older than this (milliseconds) is removed for good once every replica holds
    /// it and no node holds a hint or an unsent copy of its key; 0 keeps tombstones forever.
    pub tombstone_grace_ms: u64,
    /// An explicit join (`dynamo join`): a node that had left the cluster joins it again. A
    /// plain restart of a node that left keeps it out.
    pub rejoin: bool,
    /// A member that is down for good which this node replaces when it joins (`dynamo join
    /// --replace NAME`): it takes the member's place in one ring change.
    pub replaces: Option<String>,
    /// Free bytes kept on the data directory's disk: below this the node takes no writes (they
    /// go to other replicas and to hints), serves reads, and takes writes again once space
    /// returns; the store's engine would be poisoned by a write that runs out of space.
    pub disk_reserve_bytes: u64,
    /// Milliseconds a replica may stay silent on a client's read or write before the next node
    /// of the ring that is up stands in for it (paper 4.6; at most a third of the request's
    /// timeout): a node cut off by the network costs no failed request in the seconds before
    /// failure detection marks it down. 0 waits for it until the request's deadline.
    pub stand_in_after_ms: u64,
    /// Client requests (every role but node) this node works on at once; more are answered
    /// "overloaded" at once.
    pub max_client_requests_in_flight: usize,
    /// Requests from other nodes this node works on at once.
    pub max_peer_requests_in_flight: usize,
    /// Connections, streams and buffered bytes peers may make this node hold (TOML `[limits]`).
    pub limits: TransportLimits,
    /// Serve point reads on the node's driver thread while they are quick (they move to the
    /// blocking pool for a second after one that waited for the disk); `false`: always on
    /// the blocking pool.
    pub inline_reads: bool,
    /// TCP address of the HTTP API (HTTPS with the cluster CA's client certificates); `None`
    /// turns it off.
    pub http_listen: Option<SocketAddr>,
    /// What HTTP clients may make this node hold (TOML `[http_limits]`).
    pub http_limits: HttpLimits,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "node-1".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            advertise: None,
            data_dir: PathBuf::from("dynamo-data"),
            certs_dir: PathBuf::from("dynamo-certs"),
            seeds: Vec::new(),
            zone: "local".into(),
            capacity: 1,
            durability: DurabilityMode::Sync,
            partitions: 256,
            target_n: 3,
            cluster: "dynamo".into(),
            request_timeout_ms: 5_000,
            max_value_bytes: 1024 * 1024,
            gossip_interval_ms: 1_000,
            anti_entropy_interval_ms: 30_000,
            anti_entropy_sessions: 2,
            anti_entropy_bytes_per_sec: 16 * 1024 * 1024,
            handoff_concurrency: 2,
            tombstone_grace_ms: 3_600_000,
            rejoin: false,
            replaces: None,
            stand_in_after_ms: 500,
            disk_reserve_bytes: dynamo_storage::DEFAULT_DISK_RESERVE_BYTES,
            max_client_requests_in_flight: 1024,
            max_peer_requests_in_flight: 4096,
            limits: TransportLimits::default(),
            inline_reads: true,
            http_listen: None,
            http_limits: HttpLimits::default(),
        }
    }
}

impl NodeConfig {
    /// The default request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
