//! In-process clusters of real nodes on 127.0.0.1 (ports chosen by the OS), each with its own
//! data directory and a certificate from one throwaway cluster CA.
//!
//! This module must not reach into node internals: it starts nodes and talks to them through
//! the public client library, like a user.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dynamo_client::Client;
use dynamo_client::ca::ClusterCa;
use dynamo_client::tls::{Identity, Role, TlsConfig};
use dynamo_node::{Node, NodeConfig};
use dynamo_protocol::{Request, RequestOptions, Response};

/// A cluster of in-process nodes sharing a temporary directory.
pub struct TestCluster {
    /// The running nodes, by index; `None` once stopped.
    pub nodes: Vec<Option<Node>>,
    configs: Vec<NodeConfig>,
    dir: tempfile::TempDir,
    ca: ClusterCa,
    partitions: u32,
    /// Applied to every node's configuration.
    tweak: fn(&mut NodeConfig),
}

/// How long tests wait for a cluster to settle.
pub const SETTLE: Duration = Duration::from_secs(30);

impl TestCluster {
    /// Starts `count` nodes: the first founds the cluster, the others join through it, and the
    /// call returns once every node reports all of them in the ring and up.
    pub async fn start(count: usize) -> TestCluster {
        Self::start_with(count, |_| {}).await
    }

    /// [`TestCluster::start`] with `tweak` applied to every node's configuration (now and on
    /// later adds and restarts).
    pub async fn start_with(count: usize, tweak: fn(&mut NodeConfig)) -> TestCluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca = ClusterCa::generate("test").expect("CA");
        ca.install_cert(&dir.path().join("certs"))
            .expect("save CA certificate");
        // The tests create buckets and remove nodes, so their client is an admin.
        ca.issue(Role::Admin, "tester")
            .expect("client certificate")
            .save(&dir.path().join("certs"), false)
            .expect("save client certificate");
        let mut cluster = TestCluster {
            nodes: Vec::new(),
            configs: Vec::new(),
            dir,
            ca,
            partitions: 64,
            tweak,
        };
        for _ in 0..count {
            cluster.add_node().await;
        }
        cluster.wait_for_members(count).await;
        cluster
    }

    /// The certificate directory.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Starts one more node that joins through the first running node.
    pub async fn add_node(&mut self) -> usize {
        self.add_node_replacing(None).await
    }

    /// Starts one more node that joins through the first running node and, with `dead`, takes
    /// the place of that member (`dynamo join --replace`).
    pub async fn add_node_replacing(&mut self, dead: Option<&str>) -> usize {
        let index = self.nodes.len();
        let name = format!("node-{}", index + 1);
        self.ca
            .issue(Role::Node, &name)
            .expect("node certificate")
            .save(&self.certs_dir(), false)
            .expect("save node certificate");
        let seeds = self
            .addresses()
            .into_iter()
            .take(1)
            .map(Into::into)
            .collect();
        let mut config = NodeConfig {
            name: name.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: self.dir.path().join(&name),
            certs_dir: self.certs_dir(),
            seeds,
            partitions: self.partitions,
            gossip_interval_ms: 200,
            request_timeout_ms: 3_000,
            anti_entropy_interval_ms: 1_000,
            // A test machine's disk may have less free than the 256 MiB a node keeps by default.
            disk_reserve_bytes: 16 << 20,
            ..NodeConfig::default()
        };
        (self.tweak)(&mut config);
        config.replaces = dead.map(str::to_owned);
        let node = Node::start(config.clone()).await.expect("node starts");
        self.nodes.push(Some(node));
        self.configs.push(config);
        index
    }

    /// Starts stopped node `index` again on its data directory (a restart after a crash or
    /// maintenance), joining through the first running node.
    pub async fn restart(&mut self, index: usize) {
        assert!(self.nodes[index].is_none(), "node {index} is running");
        let mut config = self.configs[index].clone();
        config.seeds = self
            .addresses()
            .into_iter()
            .take(1)
            .map(Into::into)
            .collect();
        let node = Node::start(config).await.expect("node restarts");
        self.nodes[index] = Some(node);
    }

    /// The data directory of node `index`.
    pub fn data_dir(&self, index: usize) -> PathBuf {
        self.configs[index].data_dir.clone()
    }

    /// Keys of the default bucket starting with `prefix` in the store of stopped node `index`,
    /// read directly (a read through the cluster would repair what it looks at).
    pub fn keys_on_disk(&self, index: usize, prefix: &str) -> usize {
        use dynamo_storage::{FjallStore, Store, StoreOptions};
        assert!(self.nodes[index].is_none(), "node {index} is running");
        let options = StoreOptions::new(format!("node-{}", index + 1), 1);
        let store: FjallStore<dynamo_quorum::Value> =
            FjallStore::open(self.data_dir(index).join("store"), &options).expect("open store");
        let wanted = dynamo_protocol::storage_key("default", prefix.as_bytes());
        let count = (0..self.partitions)
            .map(|partition| {
                store
                    .scan_partition(partition, None, usize::MAX)
                    .expect("scan")
                    .iter()
                    .filter(|(key, _)| key.starts_with(&wanted))
                    .count()
            })
            .sum();
        store.close().expect("close the store");
        count
    }

    /// Addresses of the running nodes.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.nodes.iter().flatten().map(Node::address).collect()
    }

    /// A client with the cluster's client certificate.
    pub fn client(&self) -> Client {
        let tls = tls_for(&self.certs_dir(), "tester");
        Client::new(&tls, self.addresses(), Duration::from_secs(5)).expect("client")
    }

    /// The TLS configuration of a new identity of the cluster's CA.
    pub fn tls_as(&self, role: Role, name: &str) -> TlsConfig {
        let identity = self.ca.issue(role, name).expect("certificate");
        TlsConfig::new(self.ca.cert_pem(), &identity).expect("TLS configuration")
    }

    /// A client that talks to one node only (no routing), to check what that node answers.
    pub fn client_of(&self, address: SocketAddr) -> Client {
        let tls = tls_for(&self.certs_dir(), "tester");
        Client::new(&tls, vec![address], Duration::from_secs(5)).expect("client")
    }

    /// `field` of every running node's status, summed (a node that does not answer counts 0).
    pub async fn status_sum(&self, field: impl Fn(&dynamo_protocol::ClusterStatus) -> u64) -> u64 {
        let mut sum = 0;
        for address in self.addresses() {
            if let Ok(status) = self.client_of(address).status().await {
                sum += field(&status);
            }
        }
        sum
    }

    /// Writes `count` keys `{prefix}{i}` with values `v{i}` to the default bucket.
    pub async fn write_keys(&self, prefix: &str, count: usize) {
        let client = self.client();
        for i in 0..count {
            client
                .put(
                    "default",
                    format!("{prefix}{i}").as_bytes(),
                    format!("v{i}").into_bytes(),
                    None,
                    RequestOptions::default(),
                )
                .await
                .expect("put");
        }
    }

    /// Stops node `index` (graceful shutdown).
    pub async fn stop(&mut self, index: usize) {
        if let Some(node) = self.nodes[index].take() {
            node.shutdown(Duration::from_secs(1)).await;
        }
    }

    /// Waits until every running node sees `count` ring members, all up, on the same ring
    /// version; panics after [`SETTLE`].
    pub async fn wait_for_members(&self, count: usize) {
        let what = format!("the cluster settling on {count} members");
        eventually(&what, || self.settled_on(count)).await;
    }

    /// Whether every running node sees `count` ring members, all up, on the same ring version.
    async fn settled_on(&self, count: usize) -> bool {
        let client = self.client();
        let mut versions = Vec::new();
        for address in self.addresses() {
            if let Ok(Response::Status(status)) = client.request_to(address, &Request::Status).await
            {
                let ready = status.members.iter().filter(|m| m.in_ring && m.up).count();
                if ready == count {
                    versions.push(status.ring_version);
                }
            }
        }
        versions.len() == self.addresses().len() && versions.windows(2).all(|w| w[0] == w[1])
    }

    /// Hints held for node `id` on all running nodes together.
    pub async fn hints_held_for(&self, id: &str) -> usize {
        let mut held = 0;
        for address in self.addresses() {
            let status = self.client_of(address).status().await.expect("status");
            held += status
                .members
                .iter()
                .filter(|m| m.id == id)
                .map(|m| m.pending_hints)
                .sum::<usize>();
        }
        held
    }

    /// Shuts every node down.
    pub async fn shutdown(mut self) {
        for index in 0..self.nodes.len() {
            self.stop(index).await;
        }
    }
}

/// The values a read found, as text, sorted (none when the key was not found).
pub fn sorted_values(outcome: &dynamo_client::GetOutcome) -> Vec<String> {
    let mut values: Vec<String> = match outcome {
        dynamo_client::GetOutcome::Found(reply) => reply
            .values
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect(),
        dynamo_client::GetOutcome::NotFound { .. } => Vec::new(),
    };
    values.sort();
    values
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after [`SETTLE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + SETTLE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The TLS configuration of identity `name` in `dir`.
pub fn tls_for(dir: &Path, name: &str) -> TlsConfig {
    let ca = std::fs::read_to_string(dir.join(dynamo_client::tls::CA_CERT_FILE))
        .expect("CA certificate");
    let identity = Identity::load(dir, None, Some(name)).expect("identity");
    TlsConfig::new(&ca, &identity).expect("TLS configuration")
}
