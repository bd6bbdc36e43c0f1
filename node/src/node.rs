//! The node: a thin async driver around the sans-IO machines (paper section 4: ring, gossip,
//! quorum coordinators) and the replica's storage.
//!
//! One tokio task drives gossip (membership, failure detection, the ring and the bucket table
//! travel in gossip state); every client request runs a quorum coordinator whose commands are
//! carried out here (local store calls on the blocking pool, replica requests over QUIC); a
//! maintenance task delivers hints to owners that came back (4.6) and hands partitions over
//! after ring changes. The ring is changed by one deterministic claimant, the live member with
//! the lowest id, and every node adopts the ring with the highest version.
//!
//! This module must not know how bytes are framed or encrypted ([`crate::transport`]), how the
//! claim works ([`dynamo_ring`]) or how quorums are counted ([`dynamo_quorum`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dynamo_gossip::{
    Config as GossipConfig, Event, Gossip, Identity as GossipIdentity, NodeId as GossipId, Status,
    Transmit,
};
use dynamo_quorum::{
    ClientContext, Command, GetCoordinator, GetRequest, PutCoordinator, PutRequest, Quorum,
    QuorumError, ReplicaReply, ReplicaRequest, Value,
};
use dynamo_ring::{Member, NodeId, Ring, Role as ReplicaRole, Target, TransferPlan, key_position};
use dynamo_storage::{Durability, FjallStore, LocalWrite, Store, StoreOptions};
use dynamo_vclock::Actor;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{DurabilityMode, NodeConfig};
use crate::protocol::{
    BucketEntry, BucketProps, ClusterStatus, ErrorKind, GetReply, MAX_KEY_BYTES, MemberStatus,
    PutReply, Request, RequestOptions, Response, storage_key, valid_bucket_name,
};
use crate::tls::{Identity, PeerIdentity, Role, TlsConfig};
use crate::transport::{Endpoint, TransportOptions};

/// Gossip key holding a member's ring (postcard).
const RING_KEY: &str = "ring";
/// Gossip key holding a member's bucket table (postcard).
const BUCKETS_KEY: &str = "buckets";
/// Timeout of one peer request (replica operations, gossip, hints).
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often hints are offered to their owners.
const HINT_INTERVAL: Duration = Duration::from_secs(1);
/// The most partitions a ring may have: the ring must fit one gossip value.
const MAX_PARTITIONS: u32 = 4096;
/// The longest timeout a client may ask for.
const MAX_CLIENT_TIMEOUT_MS: u64 = 60_000;
/// The largest N a bucket may have (preference lists are walked per request).
const MAX_BUCKET_N: usize = 16;
/// Keys per handoff or hint batch.
const BATCH: usize = 128;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Certificates could not be loaded.
    #[error("certificates in {dir}: {source}")]
    Tls {
        /// The certificate directory.
        dir: String,
        /// The cause.
        source: crate::tls::TlsError,
    },
    /// The store could not be opened.
    #[error("store in {dir}: {source}")]
    Storage {
        /// The data directory.
        dir: String,
        /// The cause.
        source: dynamo_storage::StorageError,
    },
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: crate::transport::TransportError,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    config: NodeConfig,
    me: NodeId,
    address: SocketAddr,
    endpoint: Endpoint,
    store: Arc<FjallStore<Value>>,
    actor: Actor,
    started: Instant,
    state: Mutex<State>,
    directory: Arc<Mutex<BTreeMap<NodeId, SocketAddr>>>,
    /// Handoffs still running; a leaving node waits for them before announcing `Left`.
    handoffs_pending: Arc<AtomicUsize>,
    shutdown: watch::Sender<bool>,
    /// Requests being served, so a shutdown can let them finish.
    in_flight: AtomicUsize,
}

struct State {
    gossip: Gossip,
    ring: Option<Ring>,
    /// [`ring_rank`] of `ring`, kept so a gossiped ring is compared without re-encoding ours.
    ring_rank: Option<(u64, u128)>,
    buckets: BTreeMap<String, BucketEntry>,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn gossip_id(id: &NodeId) -> GossipId {
    GossipId::new(id.as_str())
}

impl Node {
    /// Starts a node: loads its certificates, opens its store, binds its QUIC endpoint, and
    /// founds a cluster (no seeds and no saved ring) or joins one through its seeds.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        if config.name.is_empty() {
            return Err(NodeError::Config("the node name is empty".into()));
        }
        if config.partitions > MAX_PARTITIONS {
            // The ring travels in one gossip value, which has a size budget.
            return Err(NodeError::Config(format!(
                "partitions = {} is more than {MAX_PARTITIONS}",
                config.partitions
            )));
        }
        let tls = load_tls(&config.certs_dir, &config.name)?;
        let store_dir = config.data_dir.join("store");
        let mut options = StoreOptions::new(config.name.clone(), wall_ms());
        // The store's limit applies to the encoded sibling, a few bytes more than the value.
        options.max_value_bytes = config.max_value_bytes + 64;
        let store = {
            let dir = store_dir.clone();
            tokio::task::spawn_blocking(move || FjallStore::open(&dir, &options))
                .await
                .map_err(|e| NodeError::Config(e.to_string()))?
                .map_err(|source| NodeError::Storage {
                    dir: store_dir.display().to_string(),
                    source,
                })?
        };
        let endpoint =
            Endpoint::bind(config.listen, &tls, TransportOptions::default()).map_err(|source| {
                NodeError::Bind {
                    addr: config.listen,
                    source,
                }
            })?;
        let address = endpoint.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let me = NodeId::from(config.name.as_str());
        let ring = match load_ring(&config.data_dir)? {
            Some(ring) => Some(ring),
            None if config.seeds.is_empty() => {
                let member = Member::new(me.clone(), config.zone.clone(), config.capacity);
                let ring = Ring::equal_partitions(config.partitions, config.target_n, vec![member])
                    .map_err(|e| NodeError::Config(e.to_string()))?;
                save_ring(&config.data_dir, &encode_ring(&ring)?)?;
                Some(ring)
            }
            None => None,
        };
        let status = if ring.as_ref().is_some_and(|r| r.member(&me).is_some()) {
            Status::Alive
        } else {
            Status::Joining
        };
        let gossip_config = GossipConfig {
            cluster: config.cluster.clone(),
            seeds: config.seeds.iter().map(ToString::to_string).collect(),
            gossip_interval: Duration::from_millis(config.gossip_interval_ms.max(10)),
            ..GossipConfig::default()
        };
        let generation = wall_ms();
        let identity = GossipIdentity::new(config.name.as_str(), generation, address.to_string())
            .with_zone(config.zone.clone())
            .with_capacity(config.capacity);
        let seed = generation ^ u64::from(key_position(config.name.as_bytes()) as u32);
        let mut gossip = Gossip::new(gossip_config, identity, status, Duration::ZERO, seed);
        let mut buckets = BTreeMap::new();
        let default = BucketProps::default_bucket();
        buckets.insert(
            default.name.clone(),
            BucketEntry {
                props: default,
                stamp_ms: 0,
                by: String::new(),
            },
        );
        let mut ring_rank = None;
        if let Some(ring) = &ring {
            let bytes = encode_ring(ring)?;
            ring_rank = Some(rank_of(ring, &bytes));
            set_in_gossip(&mut gossip, RING_KEY, bytes);
        }
        publish(
            &mut gossip,
            BUCKETS_KEY,
            &buckets.values().collect::<Vec<_>>(),
        );
        let actor = store.actor();
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            me,
            address,
            endpoint,
            store: Arc::new(store),
            actor,
            started: Instant::now(),
            state: Mutex::new(State {
                gossip,
                ring,
                ring_rank,
                buckets,
            }),
            directory: Arc::new(Mutex::new(BTreeMap::new())),
            handoffs_pending: Arc::new(AtomicUsize::new(0)),
            shutdown,
            in_flight: AtomicUsize::new(0),
            config,
        });
        let serve = {
            // The endpoint keeps the handler, and the node keeps the endpoint: a weak reference
            // breaks the cycle so a shut-down node releases its store.
            let handler_state = Arc::downgrade(&inner);
            inner
                .endpoint
                .serve(move |peer: PeerIdentity, request: Request| {
                    let inner = handler_state.upgrade();
                    async move {
                        match inner {
                            Some(inner) => inner.handle(peer, request).await,
                            None => Response::error(ErrorKind::NotReady, "the node has stopped"),
                        }
                    }
                })
        };
        let gossip_task = tokio::spawn(inner.clone().gossip_loop());
        let hint_task = tokio::spawn(inner.clone().hint_loop());
        tracing::info!(node = %inner.me, %address, actor = %inner.actor, "node started");
        Ok(Node {
            inner,
            tasks: vec![serve, gossip_task, hint_task],
        })
    }

    /// The address the node listens on.
    pub fn address(&self) -> SocketAddr {
        self.inner.address
    }

    /// The node id.
    pub fn id(&self) -> &NodeId {
        &self.inner.me
    }

    /// The ring the node uses now.
    pub fn ring(&self) -> Option<Ring> {
        self.inner.lock().ring.clone()
    }

    /// Stops serving: new client requests are refused with a "try another node" error,
    /// in-flight requests get up to `grace` to finish, then the endpoint closes and the store is
    /// flushed.
    pub async fn shutdown(self, grace: Duration) {
        // New client requests are refused from here on; those in flight get `grace` to finish.
        let _ = self.inner.shutdown.send(true);
        let deadline = Instant::now() + grace;
        while self.inner.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let unfinished = self.inner.in_flight.load(Ordering::Acquire);
        if unfinished > 0 {
            tracing::warn!(node = %self.inner.me, unfinished, "closing with requests in flight");
        }
        self.inner.endpoint.close().await;
        for task in &self.tasks {
            task.abort();
        }
        let store = self.inner.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.flush()).await;
        tracing::info!(node = %self.inner.me, "node stopped");
    }
}

fn load_tls(dir: &Path, name: &str) -> Result<TlsConfig, NodeError> {
    let tls_error = |source| NodeError::Tls {
        dir: dir.display().to_string(),
        source,
    };
    let ca_path = dir.join(crate::tls::CA_CERT_FILE);
    let ca = std::fs::read_to_string(&ca_path).map_err(|source| NodeError::Io {
        path: ca_path.display().to_string(),
        source,
    })?;
    let identity = Identity::load(dir, name).map_err(tls_error)?;
    if identity.role != Role::Node {
        return Err(NodeError::Config(format!(
            "{name}'s certificate in {} is not a node certificate",
            dir.display()
        )));
    }
    TlsConfig::new(&ca, &identity).map_err(tls_error)
}

fn ring_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("ring.postcard")
}

fn load_ring(data_dir: &Path) -> Result<Option<Ring>, NodeError> {
    let path = ring_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| NodeError::Config(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(NodeError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn encode_ring(ring: &Ring) -> Result<Vec<u8>, NodeError> {
    postcard::to_allocvec(ring).map_err(|e| NodeError::Config(e.to_string()))
}

/// Writes an encoded ring atomically (temporary file, then rename).
fn save_ring(data_dir: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let path = ring_path(data_dir);
    let io = |source| NodeError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes).map_err(io)?;
    std::fs::rename(&temporary, &path).map_err(io)
}

fn publish<T: Serialize + ?Sized>(gossip: &mut Gossip, key: &str, value: &T) {
    match postcard::to_allocvec(value) {
        Ok(bytes) => set_in_gossip(gossip, key, bytes),
        Err(error) => tracing::warn!(%error, key, "could not encode for gossip"),
    }
}

fn set_in_gossip(gossip: &mut Gossip, key: &str, bytes: Vec<u8>) {
    if let Err(error) = gossip.set(key, bytes) {
        tracing::warn!(%error, key, "could not publish in gossip");
    }
}

/// Checks a bucket definition: a valid name, 1 <= N <= `max_n`, and a valid quorum.
fn check_bucket(props: &BucketProps, max_n: usize) -> Result<(), String> {
    if !valid_bucket_name(&props.name) {
        return Err(format!(
            "invalid bucket name {:?}: use 1 to 64 characters of a-z 0-9 _ -",
            props.name
        ));
    }
    if props.n > max_n.min(MAX_BUCKET_N) {
        return Err(format!(
            "n = {} is more than the ring spreads replicas for ({}); use n <= {}",
            props.n,
            max_n,
            max_n.min(MAX_BUCKET_N)
        ));
    }
    let quorum = Quorum {
        pr: props.pr,
        pw: props.pw,
        ..Quorum::new(props.n, props.r, props.w)
    };
    quorum.validate().map_err(|e| e.to_string())
}

/// Merges bucket entries into `buckets`, the later stamp winning; returns whether anything
/// changed.
fn merge_bucket_entries(
    buckets: &mut BTreeMap<String, BucketEntry>,
    entries: Vec<BucketEntry>,
) -> bool {
    let mut changed = false;
    for entry in entries {
        let newer = buckets
            .get(&entry.props.name)
            .is_none_or(|current| (entry.stamp_ms, &entry.by) > (current.stamp_ms, &current.by));
        if newer && check_bucket(&entry.props, MAX_BUCKET_N).is_ok() {
            buckets.insert(entry.props.name.clone(), entry);
            changed = true;
        }
    }
    changed
}

/// Orders rings: higher version first, then a digest of the encoded ring so two claimants that
/// raced during a partition still agree once it heals. `bytes` is `ring` encoded, as gossiped.
fn rank_of(ring: &Ring, bytes: &[u8]) -> (u64, u128) {
    (ring.version(), key_position(bytes))
}

/// Largest encoded size of one handoff batch: well under the transport's frame limit.
const HANDOFF_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Attempts per handoff batch before giving up on the partition.
const HANDOFF_ATTEMPTS: u32 = 6;

/// Copies one partition to `to` in batches; returns whether every batch was acknowledged.
async fn hand_off_partition(
    store: &Arc<FjallStore<Value>>,
    endpoint: &Endpoint,
    directory: &Mutex<BTreeMap<NodeId, SocketAddr>>,
    partition: u32,
    to: &NodeId,
) -> bool {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let scan_store = store.clone();
        let cursor = after.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            scan_store.scan_partition(partition, cursor.as_deref(), BATCH)
        })
        .await;
        let Ok(Ok(entries)) = scanned else {
            tracing::warn!(partition, "handoff could not scan the partition");
            return false;
        };
        let done = entries.len() < BATCH;
        after = entries.last().map(|(k, _)| k.clone());
        // Split by encoded size so a batch of large values still fits a frame.
        let mut batches: Vec<Vec<(Vec<u8>, dynamo_quorum::Object)>> = vec![Vec::new()];
        let mut bytes = 0;
        for (key, object) in entries {
            let size = key.len() + postcard::to_allocvec(&object).map_or(0, |b| b.len());
            if bytes + size > HANDOFF_BATCH_BYTES && batches.last().is_some_and(|b| !b.is_empty()) {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(batch) = batches.last_mut() {
                batch.push((key, object));
            }
        }
        for batch in batches.into_iter().filter(|b| !b.is_empty()) {
            let request = Request::Handoff {
                partition,
                entries: batch,
            };
            if !send_with_retry(endpoint, directory, to, &request).await {
                tracing::warn!(%to, partition, "handoff batch failed after retries");
                return false;
            }
        }
        if done {
            return true;
        }
    }
}

/// Sends a peer request until it is acknowledged, looking the peer's address up before each
/// attempt and backing off between attempts.
async fn send_with_retry(
    endpoint: &Endpoint,
    directory: &Mutex<BTreeMap<NodeId, SocketAddr>>,
    to: &NodeId,
    request: &Request,
) -> bool {
    let mut backoff = Duration::from_millis(250);
    for _ in 0..HANDOFF_ATTEMPTS {
        let address = directory.lock().ok().and_then(|d| d.get(to).copied());
        if let Some(address) = address {
            match endpoint
                .request::<Request, Response>(address, request, PEER_TIMEOUT * 5)
                .await
            {
                Ok(Response::Ack) => return true,
                Ok(other) => tracing::debug!(%to, ?other, "handoff batch refused"),
                Err(error) => tracing::debug!(%to, %error, "handoff batch not delivered"),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(8));
    }
    false
}

/// Counts a request as in flight until dropped (also when its future is cancelled).
struct InFlight(Arc<Inner>);

impl InFlight {
    fn enter(inner: &Arc<Inner>) -> Self {
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(inner.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A quorum machine the driver runs.
enum Machine {
    Put(PutCoordinator),
    Get(GetCoordinator),
}

impl Machine {
    fn poll_command(&mut self) -> Option<Command> {
        match self {
            Machine::Put(m) => m.poll_command(),
            Machine::Get(m) => m.poll_command(),
        }
    }
    fn handle_reply(&mut self, now: u64, from: &NodeId, reply: ReplicaReply) {
        match self {
            Machine::Put(m) => m.handle_reply(now, from, reply),
            Machine::Get(m) => m.handle_reply(now, from, reply),
        }
    }
    fn handle_timeout(&mut self, now: u64) {
        match self {
            Machine::Put(m) => m.handle_timeout(now),
            Machine::Get(m) => m.handle_timeout(now),
        }
    }
    fn poll_timeout(&self) -> Option<u64> {
        match self {
            Machine::Put(m) => m.poll_timeout(),
            Machine::Get(m) => m.poll_timeout(),
        }
    }
    fn is_finished(&self) -> bool {
        match self {
            Machine::Put(m) => m.is_finished(),
            Machine::Get(m) => m.is_finished(),
        }
    }
}

/// The error reply for a failed request; availability errors name the primaries that are down.
fn quorum_error(error: &QuorumError, down: &[NodeId]) -> Response {
    let kind = match error {
        QuorumError::NotEnoughReplicas { .. } | QuorumError::Unavailable { .. } => {
            ErrorKind::Unavailable
        }
        QuorumError::Timeout { .. } => ErrorKind::Timeout,
        QuorumError::Config(_)
        | QuorumError::ContextForAnotherKey
        | QuorumError::TooManySiblings { .. } => ErrorKind::BadRequest,
        QuorumError::NotACoordinator { .. } | QuorumError::Local(_) => ErrorKind::Internal,
    };
    let mut message = error.to_string();
    if matches!(kind, ErrorKind::Unavailable | ErrorKind::Timeout) && !down.is_empty() {
        let names: Vec<&str> = down.iter().map(NodeId::as_str).collect();
        message.push_str("; down: ");
        message.push_str(&names.join(", "));
    }
    Response::error(kind, message)
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving with the state as is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn gossip_now(&self) -> Duration {
        self.started.elapsed()
    }

    fn replica_durability(&self) -> Durability {
        match self.config.durability {
            DurabilityMode::Sync => Durability::Sync,
            DurabilityMode::Buffered => Durability::Buffered,
        }
    }

    fn is_up(&self, state: &State, node: &NodeId) -> bool {
        *node == self.me || state.gossip.is_live(&gossip_id(node))
    }

    fn address_of(&self, state: &State, node: &NodeId) -> Option<SocketAddr> {
        if *node == self.me {
            return Some(self.address);
        }
        state
            .gossip
            .member(&gossip_id(node))
            .and_then(|m| m.identity().address.parse().ok())
    }

    async fn handle(self: Arc<Self>, peer: PeerIdentity, request: Request) -> Response {
        let client_request = matches!(
            request,
            Request::Get { .. } | Request::Put { .. } | Request::CreateBucket(_) | Request::Leave
        );
        if client_request && *self.shutdown.borrow() {
            return Response::error(
                ErrorKind::NotReady,
                format!("{} is shutting down; try another node", self.me),
            );
        }
        let _guard = InFlight::enter(&self);
        self.clone().dispatch(peer, request).await
    }

    async fn dispatch(self: Arc<Self>, peer: PeerIdentity, request: Request) -> Response {
        let peer_only = matches!(
            request,
            Request::Replica { .. }
                | Request::Gossip { .. }
                | Request::DeliverHint { .. }
                | Request::Handoff { .. }
                | Request::Buckets(_)
        );
        if peer_only && peer.role != Role::Node {
            return Response::error(
                ErrorKind::BadRequest,
                format!(
                    "{} is a client; only nodes may send peer requests",
                    peer.name
                ),
            );
        }
        match request {
            Request::Get {
                bucket,
                key,
                options,
            } => self.client_get(&bucket, key, options).await,
            Request::Put {
                bucket,
                key,
                value,
                context,
                options,
                forwarded,
            } => {
                self.client_put(&bucket, key, value, context, options, forwarded)
                    .await
            }
            Request::CreateBucket(props) => self.create_bucket(props).await,
            Request::Buckets(entries) => {
                let transmits = {
                    let mut state = self.lock();
                    if merge_bucket_entries(&mut state.buckets, entries) {
                        let table: Vec<BucketEntry> = state.buckets.values().cloned().collect();
                        publish(&mut state.gossip, BUCKETS_KEY, &table);
                    }
                    self.after_gossip(&mut state)
                };
                self.send_transmits(transmits);
                Response::Ack
            }
            Request::ListBuckets => Response::Buckets(
                self.lock()
                    .buckets
                    .values()
                    .map(|e| e.props.clone())
                    .collect(),
            ),
            Request::Status => self.status().await,
            Request::Ring => Response::Ring(self.lock().ring.clone().map(Box::new)),
            Request::Leave => self.leave(),
            Request::Replica { partition, request } => {
                Response::Replica(self.clone().serve_replica(partition, request).await)
            }
            Request::Gossip { reply_to, message } => {
                let transmits = {
                    let mut state = self.lock();
                    let now = self.gossip_now();
                    if let Err(error) = state.gossip.handle_datagram(now, &reply_to, &message) {
                        tracing::debug!(%error, from = %peer.name, "gossip message refused");
                    }
                    self.after_gossip(&mut state)
                };
                self.send_transmits(transmits);
                Response::Ack
            }
            Request::DeliverHint {
                partition,
                key,
                object,
            } => {
                let store = self.store.clone();
                // The sender deletes its copy on our answer: it must be on disk.
                let durability = Durability::Sync;
                let stored = tokio::task::spawn_blocking(move || {
                    store.apply(partition, &key, &object, durability)
                })
                .await;
                match stored {
                    Ok(Ok(object)) => Response::Stored(object),
                    Ok(Err(e)) => Response::error(ErrorKind::Internal, e.to_string()),
                    Err(e) => Response::error(ErrorKind::Internal, e.to_string()),
                }
            }
            Request::Handoff { partition, entries } => {
                let store = self.store.clone();
                let durability = Durability::Sync;
                let applied = tokio::task::spawn_blocking(move || {
                    for (key, object) in &entries {
                        store.apply(partition, key, object, durability)?;
                    }
                    Ok::<_, dynamo_storage::StorageError>(())
                })
                .await;
                match applied {
                    Ok(Ok(())) => Response::Ack,
                    Ok(Err(e)) => Response::error(ErrorKind::Internal, e.to_string()),
                    Err(e) => Response::error(ErrorKind::Internal, e.to_string()),
                }
            }
        }
    }

    /// The replica side of a quorum operation.
    async fn serve_replica(
        self: Arc<Self>,
        partition: u32,
        request: ReplicaRequest,
    ) -> ReplicaReply {
        let store = self.store.clone();
        let durability = self.replica_durability();
        let outcome = tokio::task::spawn_blocking(move || match request {
            ReplicaRequest::Read { key } => store.get(partition, &key).map(|found| match found {
                Some(object) => ReplicaReply::Found(object),
                None => ReplicaReply::NotFound,
            }),
            ReplicaRequest::Write {
                key,
                object,
                hint: None,
            } => store
                .apply(partition, &key, &object, durability)
                .map(|_| ReplicaReply::Written),
            ReplicaRequest::Write {
                key,
                object,
                hint: Some(owner),
            } => store
                .put_hint(owner.as_str(), partition, &key, &object, durability)
                .map(|()| ReplicaReply::Written),
            ReplicaRequest::Reap { key, expected } => store
                .remove_if_equal(partition, &key, &expected, durability)
                .map(ReplicaReply::Reaped),
        })
        .await;
        match outcome {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => ReplicaReply::Failed(error.to_string()),
            Err(error) => ReplicaReply::Failed(error.to_string()),
        }
    }

    /// The bucket's quorum with the request's overrides, checked.
    fn quorum_for(&self, bucket: &str, options: RequestOptions) -> Result<Quorum, Response> {
        if !valid_bucket_name(bucket) {
            return Err(Response::error(
                ErrorKind::BadRequest,
                format!("invalid bucket name {bucket:?}: use 1 to 64 characters of a-z 0-9 _ -"),
            ));
        }
        let props = self
            .lock()
            .buckets
            .get(bucket)
            .map(|e| e.props.clone())
            .ok_or_else(|| {
                Response::error(
                    ErrorKind::BadRequest,
                    format!("bucket {bucket} does not exist; create it with `dynamo bucket create {bucket}`"),
                )
            })?;
        let quorum = Quorum {
            n: props.n,
            r: options.r.unwrap_or(props.r),
            w: options.w.unwrap_or(props.w),
            pr: options.pr.unwrap_or(props.pr),
            pw: options.pw.unwrap_or(props.pw),
            ..Quorum::default()
        };
        quorum
            .validate()
            .map_err(|e| Response::error(ErrorKind::BadRequest, e.to_string()))?;
        Ok(quorum)
    }

    /// The ring's view of a key: its partition and its extended preference list.
    /// The request's timeout: the client's choice, capped at a minute, or the node's default.
    fn client_timeout_ms(&self, options: RequestOptions) -> u64 {
        options
            .timeout_ms
            .unwrap_or(self.config.request_timeout_ms)
            .clamp(1, MAX_CLIENT_TIMEOUT_MS)
    }

    /// The key's partition, its extended preference list, and the primaries that are down.
    fn placement(&self, key: &[u8], n: usize) -> Result<(u32, Vec<Target>, Vec<NodeId>), Response> {
        let state = self.lock();
        let Some(ring) = &state.ring else {
            return Err(Response::error(
                ErrorKind::NotReady,
                format!(
                    "{} has not received the ring yet; try another node",
                    self.me
                ),
            ));
        };
        let partition = ring.partition_of_key(key);
        let targets = ring.extended_preference_list(key, n, |node| self.is_up(&state, node));
        let down = ring
            .preference_list(key, n)
            .into_iter()
            .filter(|node| !self.is_up(&state, node))
            .cloned()
            .collect();
        Ok((partition, targets, down))
    }

    /// The bucket's quorum for a request on `key`, once the key's size is checked.
    fn checked_request(
        &self,
        bucket: &str,
        key: &[u8],
        options: RequestOptions,
    ) -> Result<Quorum, Response> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Response::error(
                ErrorKind::BadRequest,
                format!("keys must be 1 to {MAX_KEY_BYTES} bytes, got {}", key.len()),
            ));
        }
        self.quorum_for(bucket, options)
    }

    async fn client_get(
        self: Arc<Self>,
        bucket: &str,
        key: Vec<u8>,
        options: RequestOptions,
    ) -> Response {
        let quorum = match self.checked_request(bucket, &key, options) {
            Ok(q) => q,
            Err(response) => return response,
        };
        let key = storage_key(bucket, &key);
        let (partition, targets, down) = match self.placement(&key, quorum.n) {
            Ok(p) => p,
            Err(response) => return response,
        };
        let timeout_ms = self.client_timeout_ms(options);
        let request = GetRequest {
            key: key.clone(),
            targets,
            quorum,
            timeout_ms,
        };
        let machine = match GetCoordinator::new(wall_ms(), request) {
            Ok(m) => m,
            Err(error) => return quorum_error(&error, &down),
        };
        match self.drive(Machine::Get(machine), partition).await {
            Some(dynamo_quorum::Response::Get(Ok(ok))) => {
                let context = ClientContext::new(&key, ok.context()).to_text();
                if ok.found() {
                    Response::Get(GetReply {
                        values: ok.values().into_iter().map(<[u8]>::to_vec).collect(),
                        context,
                        deleted: false,
                    })
                } else {
                    Response::NotFound { context }
                }
            }
            Some(dynamo_quorum::Response::Get(Err(error))) => quorum_error(&error, &down),
            _ => Response::error(
                ErrorKind::Internal,
                "the coordinator stopped without an answer",
            ),
        }
    }

    async fn client_put(
        self: Arc<Self>,
        bucket: &str,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: Option<String>,
        options: RequestOptions,
        forwarded: bool,
    ) -> Response {
        let quorum = match self.checked_request(bucket, &key, options) {
            Ok(q) => q,
            Err(response) => return response,
        };
        if let Some(value) = &value
            && value.len() > self.config.max_value_bytes
        {
            return Response::error(
                ErrorKind::BadRequest,
                format!(
                    "the value is {} bytes; the limit is {} bytes",
                    value.len(),
                    self.config.max_value_bytes
                ),
            );
        }
        let skey = storage_key(bucket, &key);
        let (partition, targets, down) = match self.placement(&skey, quorum.n) {
            Ok(p) => p,
            Err(response) => return response,
        };
        let primary_here = targets
            .iter()
            .any(|t| t.node == self.me && t.role == ReplicaRole::Primary);
        let target_here = targets.iter().any(|t| t.node == self.me);
        // Paper 4.5: a put is coordinated by one of the key's replicas, preferably a primary
        // (a fallback coordinator would keep its copy outside the hint space). A forwarded put
        // is coordinated here if this node is any target, so forwarding never loops.
        let coordinate_here = primary_here || (forwarded && target_here);
        if !coordinate_here {
            if forwarded {
                return Response::error(
                    ErrorKind::NotReady,
                    format!(
                        "{} does not replicate this key under its ring; the ring is changing, retry",
                        self.me
                    ),
                );
            }
            let first = targets
                .iter()
                .find(|t| t.role == ReplicaRole::Primary)
                .or_else(|| targets.first());
            let Some(first) = first else {
                return Response::error(ErrorKind::Unavailable, "no replica of this key is up");
            };
            let address = self.address_of(&self.lock(), &first.node);
            let Some(address) = address else {
                return Response::error(
                    ErrorKind::Unavailable,
                    format!("the address of {} is unknown", first.node),
                );
            };
            let request = Request::Put {
                bucket: bucket.to_owned(),
                key,
                value,
                context,
                options,
                forwarded: true,
            };
            let timeout =
                Duration::from_millis(self.client_timeout_ms(options).saturating_add(500));
            return match self.endpoint.request(address, &request, timeout).await {
                Ok(response) => response,
                Err(error) => Response::error(
                    ErrorKind::Unavailable,
                    format!("forwarding to {}: {error}", first.node),
                ),
            };
        }
        let context = match context.as_deref().map(ClientContext::from_text) {
            None => None,
            Some(Ok(context)) => Some(context),
            Some(Err(error)) => return Response::error(ErrorKind::BadRequest, error.to_string()),
        };
        let request = PutRequest {
            key: skey.clone(),
            context,
            value: value.map_or(Value::Tombstone, Value::Data),
            coordinator: self.me.clone(),
            actor: self.actor.clone(),
            targets,
            quorum,
            timeout_ms: self.client_timeout_ms(options),
        };
        let machine = match PutCoordinator::new(wall_ms(), request) {
            Ok(m) => m,
            Err(error) => return quorum_error(&error, &down),
        };
        match self.drive(Machine::Put(machine), partition).await {
            Some(dynamo_quorum::Response::Put(Ok(ok))) => Response::Put(PutReply {
                context: ClientContext::new(&skey, ok.context).to_text(),
                acknowledged: ok.acknowledged,
                warnings: ok
                    .warnings
                    .iter()
                    .map(|w| match w {
                        dynamo_quorum::Warning::ManySiblings(n) => {
                            format!("the key has {n} siblings; read it and resolve them")
                        }
                    })
                    .collect(),
            }),
            Some(dynamo_quorum::Response::Put(Err(error))) => quorum_error(&error, &down),
            _ => Response::error(
                ErrorKind::Internal,
                "the coordinator stopped without an answer",
            ),
        }
    }

    /// Runs a coordinator to completion in its own task and returns the client's answer as
    /// soon as it is known (read repair continues in the background).
    async fn drive(
        self: &Arc<Self>,
        machine: Machine,
        partition: u32,
    ) -> Option<dynamo_quorum::Response> {
        let (answer_tx, answer_rx) = oneshot::channel();
        tokio::spawn(self.clone().run_machine(machine, partition, answer_tx));
        answer_rx.await.ok()
    }

    async fn run_machine(
        self: Arc<Self>,
        mut machine: Machine,
        partition: u32,
        answer: oneshot::Sender<dynamo_quorum::Response>,
    ) {
        let (reply_tx, mut reply_rx) = mpsc::unbounded_channel::<(NodeId, ReplicaReply)>();
        let mut answer = Some(answer);
        loop {
            while let Some(command) = machine.poll_command() {
                match command {
                    Command::ReadLocal { key } => {
                        let store = self.store.clone();
                        let read = tokio::task::spawn_blocking(move || store.get(partition, &key))
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()));
                        if let Machine::Put(put) = &mut machine {
                            put.handle_local_read(wall_ms(), read);
                        }
                    }
                    Command::WriteLocal {
                        key,
                        context,
                        value,
                    } => {
                        let store = self.store.clone();
                        let actor = self.actor.clone();
                        let written = tokio::task::spawn_blocking(move || {
                            let write = LocalWrite {
                                context: &context,
                                actor: &actor,
                                value,
                                now: wall_ms(),
                            };
                            // The coordinator's copy is the durable one (paper 6.1).
                            store.update(partition, &key, write, Durability::Sync)
                        })
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                        if let Machine::Put(put) = &mut machine {
                            put.handle_local_write(wall_ms(), written);
                        }
                    }
                    Command::Send { to, request } => {
                        self.send_replica(to, partition, request, reply_tx.clone());
                    }
                    Command::Respond(response) => {
                        if let Some(answer) = answer.take() {
                            let _ = answer.send(response);
                        }
                    }
                }
            }
            if machine.is_finished() {
                return;
            }
            let deadline = machine.poll_timeout().unwrap_or_else(|| wall_ms() + 1_000);
            let wait = Duration::from_millis(deadline.saturating_sub(wall_ms()));
            tokio::select! {
                Some((from, reply)) = reply_rx.recv() => machine.handle_reply(wall_ms(), &from, reply),
                () = tokio::time::sleep(wait) => machine.handle_timeout(wall_ms()),
            }
        }
    }

    /// Sends a replica request (or serves it here when `to` is this node) and reports the
    /// reply on `replies`; an unreachable replica is a `Failed` reply.
    fn send_replica(
        self: &Arc<Self>,
        to: NodeId,
        partition: u32,
        request: ReplicaRequest,
        replies: mpsc::UnboundedSender<(NodeId, ReplicaReply)>,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let reply = if to == this.me {
                this.clone().serve_replica(partition, request).await
            } else {
                let address = this.address_of(&this.lock(), &to);
                match address {
                    None => ReplicaReply::Failed("address unknown".into()),
                    Some(address) => {
                        let request = Request::Replica { partition, request };
                        match this.endpoint.request(address, &request, PEER_TIMEOUT).await {
                            Ok(Response::Replica(reply)) => reply,
                            Ok(other) => {
                                ReplicaReply::Failed(format!("unexpected answer {other:?}"))
                            }
                            Err(error) => ReplicaReply::Failed(error.to_string()),
                        }
                    }
                }
            };
            let _ = replies.send((to, reply));
        });
    }

    /// Records a bucket and pushes the table to every member before answering, so the bucket
    /// is usable through any node at once; gossip carries it to members that missed the push.
    async fn create_bucket(self: &Arc<Self>, props: BucketProps) -> Response {
        let (transmits, table, peers) = {
            let mut state = self.lock();
            let max_n = state.ring.as_ref().map_or(MAX_BUCKET_N, Ring::target_n);
            if let Err(message) = check_bucket(&props, max_n) {
                return Response::error(ErrorKind::BadRequest, message);
            }
            // Later than what is there even if this node's clock is behind.
            let stamp_ms = state
                .buckets
                .get(&props.name)
                .map_or(0, |e| e.stamp_ms.saturating_add(1))
                .max(wall_ms());
            let entry = BucketEntry {
                props,
                stamp_ms,
                by: self.me.to_string(),
            };
            state.buckets.insert(entry.props.name.clone(), entry);
            let table: Vec<BucketEntry> = state.buckets.values().cloned().collect();
            publish(&mut state.gossip, BUCKETS_KEY, &table);
            let peers: Vec<SocketAddr> = state
                .gossip
                .members()
                .filter(|m| m.is_live() && m.id().as_str() != self.me.as_str())
                .filter_map(|m| m.identity().address.parse().ok())
                .collect();
            (self.after_gossip(&mut state), table, peers)
        };
        self.send_transmits(transmits);
        let request = Request::Buckets(table);
        let mut pushes = tokio::task::JoinSet::new();
        for address in peers {
            let request = request.clone();
            let endpoint = self.endpoint.clone();
            pushes.spawn(async move {
                endpoint
                    .request::<Request, Response>(address, &request, PEER_TIMEOUT)
                    .await
            });
        }
        while let Some(outcome) = pushes.join_next().await {
            if let Ok(Err(error)) = outcome {
                tracing::debug!(%error, "bucket table push failed; gossip will carry it");
            }
        }
        Response::Ack
    }

    fn leave(self: &Arc<Self>) -> Response {
        let transmits = {
            let mut state = self.lock();
            if state.ring.as_ref().is_some_and(|r| r.members().len() <= 1) {
                return Response::error(
                    ErrorKind::BadRequest,
                    "the last member of a cluster cannot leave it",
                );
            }
            if let Err(error) = state.gossip.set_status(Status::Leaving) {
                return Response::error(ErrorKind::Internal, error.to_string());
            }
            self.after_gossip(&mut state)
        };
        self.send_transmits(transmits);
        Response::Ack
    }

    async fn status(self: &Arc<Self>) -> Response {
        let (ring, mut members) = {
            let state = self.lock();
            let ring = state.ring.clone();
            let members: Vec<MemberStatus> = state
                .gossip
                .members()
                .map(|m| {
                    let id = NodeId::from(m.id().as_str());
                    MemberStatus {
                        id: id.to_string(),
                        address: m.identity().address.clone(),
                        zone: m.identity().zone.clone(),
                        capacity: m.identity().capacity,
                        status: format!("{:?}", m.status()).to_lowercase(),
                        up: self.is_up(&state, &id),
                        in_ring: false,
                        partitions: 0,
                        ownership_percent: 0.0,
                        pending_hints: 0,
                    }
                })
                .collect();
            (ring, members)
        };
        if let Some(ring) = &ring {
            let counts = ring.partition_counts();
            let shares = ring.replica_shares(ring.target_n());
            for (i, member) in ring.members().iter().enumerate() {
                if !members.iter().any(|m| m.id == member.id.as_str()) {
                    // A ring member gossip has not heard of (yet).
                    members.push(MemberStatus {
                        id: member.id.to_string(),
                        address: String::new(),
                        zone: member.zone.clone(),
                        capacity: member.capacity,
                        status: "unknown".into(),
                        up: false,
                        in_ring: true,
                        partitions: 0,
                        ownership_percent: 0.0,
                        pending_hints: 0,
                    });
                }
                let Some(entry) = members.iter_mut().find(|m| m.id == member.id.as_str()) else {
                    continue;
                };
                entry.in_ring = true;
                entry.partitions = counts[i].1;
                entry.ownership_percent = shares[i].1 * 100.0;
            }
        }
        let store = self.store.clone();
        let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        let hints = tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| store.pending_hints(id).unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (member, pending) in members.iter_mut().zip(hints) {
            member.pending_hints = pending;
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Response::Status(ClusterStatus {
            node: self.me.to_string(),
            ring_version: ring.as_ref().map_or(0, Ring::version),
            members,
        })
    }

    /// After any gossip input: react to what changed (rings, buckets, claims, statuses) and
    /// collect the messages to send.
    fn after_gossip(self: &Inner, state: &mut State) -> Vec<Transmit> {
        // Only members whose ring or bucket table changed are decoded: this runs on every
        // gossip message.
        let mut rings_from = Vec::new();
        let mut buckets_from = Vec::new();
        while let Some(event) = state.gossip.poll_event() {
            if let Event::StateChanged { node, key } = event {
                match key.as_str() {
                    RING_KEY => rings_from.push(node),
                    BUCKETS_KEY => buckets_from.push(node),
                    _ => {}
                }
            }
        }
        Self::merge_buckets(state, &buckets_from);
        let mut plans = Vec::new();
        if let Some(plan) = self.adopt_best_ring(state, &rings_from) {
            plans.push(plan);
        }
        if let Some(plan) = self.claim(state) {
            plans.push(plan);
        }
        // Handoffs first: a leaving node must not announce `Left` before they are done.
        for plan in &plans {
            self.start_handoff(plan);
        }
        self.update_own_status(state);
        std::iter::from_fn(|| state.gossip.poll_transmit()).collect()
    }

    /// Merges the bucket tables of `changed` members into ours.
    fn merge_buckets(state: &mut State, changed: &[GossipId]) {
        let tables: Vec<Vec<BucketEntry>> = changed
            .iter()
            .filter_map(|id| state.gossip.member(id)?.get(BUCKETS_KEY))
            .filter_map(|bytes| postcard::from_bytes(bytes).ok())
            .collect();
        if merge_bucket_entries(&mut state.buckets, tables.into_iter().flatten().collect()) {
            let table: Vec<BucketEntry> = state.buckets.values().cloned().collect();
            publish(&mut state.gossip, BUCKETS_KEY, &table);
        }
    }

    /// Adopts the best ring that one of the `changed` members publishes, if it beats ours;
    /// returns the transfers this node must send.
    fn adopt_best_ring(&self, state: &mut State, changed: &[GossipId]) -> Option<TransferPlan> {
        let mut best: Option<(Ring, (u64, u128))> = None;
        for id in changed {
            let Some(bytes) = state.gossip.member(id).and_then(|m| m.get(RING_KEY)) else {
                continue;
            };
            let Ok(ring) = postcard::from_bytes::<Ring>(bytes) else {
                continue;
            };
            let rank = rank_of(&ring, bytes);
            if best.as_ref().is_none_or(|(_, b)| rank > *b) {
                best = Some((ring, rank));
            }
        }
        let (best, rank) = best?;
        if state.ring_rank.is_some_and(|current| current >= rank) {
            return None;
        }
        Some(self.adopt(state, best))
    }

    fn adopt(&self, state: &mut State, ring: Ring) -> TransferPlan {
        match encode_ring(&ring) {
            Ok(bytes) => {
                if let Err(error) = save_ring(&self.config.data_dir, &bytes) {
                    tracing::warn!(%error, "could not save the ring");
                }
                state.ring_rank = Some(rank_of(&ring, &bytes));
                set_in_gossip(&mut state.gossip, RING_KEY, bytes);
            }
            Err(error) => tracing::warn!(%error, "could not encode the ring"),
        }
        tracing::info!(node = %self.me, version = ring.version(), members = ring.members().len(), "ring adopted");
        let plan = match &state.ring {
            Some(old) => TransferPlan::between(old, &ring),
            None => TransferPlan::default(),
        };
        state.ring = Some(ring);
        plan
    }

    /// Paper 4.8.1: membership changes are explicit. The claimant (the live, alive ring member
    /// with the lowest id) adds members that announce `Joining` and removes those that announce
    /// `Leaving`, once, and gossip spreads the new ring.
    fn claim(&self, state: &mut State) -> Option<TransferPlan> {
        let ring = state.ring.as_ref()?;
        let alive_in_ring = |id: &NodeId| {
            ring.member(id).is_some()
                && self.is_up(state, id)
                && state
                    .gossip
                    .member(&gossip_id(id))
                    .is_some_and(|m| m.status() == Status::Alive)
        };
        let claimant = ring
            .members()
            .iter()
            .map(|m| &m.id)
            .find(|id| alive_in_ring(id))?;
        if *claimant != self.me {
            return None;
        }
        let mut desired: Vec<Member> = Vec::new();
        for member in ring.members() {
            let status = state
                .gossip
                .member(&gossip_id(&member.id))
                .map(|m| m.status());
            if !matches!(status, Some(Status::Leaving | Status::Left)) {
                desired.push(member.clone());
            }
        }
        for view in state.gossip.members() {
            let id = NodeId::from(view.id().as_str());
            // Joining members, and alive ones a racing claim left out (a status never goes
            // back to joining), are added.
            let wants_in = matches!(view.status(), Status::Joining | Status::Alive);
            if wants_in && view.is_live() && ring.member(&id).is_none() {
                let identity = view.identity();
                desired.push(Member::new(
                    id,
                    identity.zone.clone(),
                    identity.capacity.max(1),
                ));
            }
        }
        let same = desired.len() == ring.members().len()
            && desired.iter().all(|m| ring.member(&m.id) == Some(m));
        if same || desired.is_empty() {
            return None;
        }
        match ring.with_members(desired) {
            Ok((next, _)) => Some(self.adopt(state, next)),
            Err(error) => {
                tracing::warn!(%error, "the claimant could not change the ring");
                None
            }
        }
    }

    /// A joining node becomes alive once the ring includes it; a leaving node is done once
    /// the ring no longer includes it and its handoffs have finished.
    fn update_own_status(&self, state: &mut State) {
        let Some(me) = state.gossip.member(&gossip_id(&self.me)) else {
            return;
        };
        let status = me.status();
        let in_ring = state
            .ring
            .as_ref()
            .is_some_and(|r| r.member(&self.me).is_some());
        let next = match status {
            Status::Joining if in_ring => Some(Status::Alive),
            Status::Leaving
                if !in_ring
                    && state.ring.is_some()
                    && self.handoffs_pending.load(Ordering::Acquire) == 0 =>
            {
                Some(Status::Left)
            }
            _ => None,
        };
        if let Some(next) = next
            && let Err(error) = state.gossip.set_status(next)
        {
            tracing::warn!(%error, "could not announce a status change");
        }
    }

    /// Sends, in the background, every partition this node must hand to a new replica. Batches
    /// stay well under the frame limit, anything but an acknowledgement is a failure that is
    /// retried with backoff (the target's address is looked up again each time), and a leaving
    /// node announces `Left` only once every transfer is done.
    fn start_handoff(&self, plan: &TransferPlan) {
        let outgoing: Vec<(u32, NodeId)> = plan
            .outgoing(&self.me)
            .map(|t| (t.partition, t.to.clone()))
            .collect();
        if outgoing.is_empty() {
            return;
        }
        tracing::info!(node = %self.me, transfers = outgoing.len(), to_version = plan.to_version, "handoff started");
        self.handoffs_pending.fetch_add(1, Ordering::AcqRel);
        let store = self.store.clone();
        let endpoint = self.endpoint.clone();
        let me = self.me.clone();
        let directory = self.directory.clone();
        let pending = self.handoffs_pending.clone();
        tokio::spawn(async move {
            let mut failed = 0;
            for (partition, to) in outgoing {
                if !hand_off_partition(&store, &endpoint, &directory, partition, &to).await {
                    failed += 1;
                }
            }
            pending.fetch_sub(1, Ordering::AcqRel);
            if failed == 0 {
                tracing::info!(node = %me, "handoff finished");
            } else {
                tracing::warn!(node = %me, failed, "handoff gave up on some partitions; read repair and hints must cover them");
            }
        });
    }

    fn send_transmits(self: &Arc<Self>, transmits: Vec<Transmit>) {
        for transmit in transmits {
            let Ok(address) = transmit.address.parse::<SocketAddr>() else {
                tracing::debug!(address = %transmit.address, "gossip target address is not a socket address");
                continue;
            };
            let message = match transmit
                .message
                .encode(dynamo_gossip::DEFAULT_MAX_MESSAGE_BYTES)
            {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(%error, "could not encode a gossip message");
                    continue;
                }
            };
            let request = Request::Gossip {
                reply_to: self.address.to_string(),
                message,
            };
            let endpoint = self.endpoint.clone();
            tokio::spawn(async move {
                if let Err(error) = endpoint
                    .request::<Request, Response>(address, &request, PEER_TIMEOUT)
                    .await
                {
                    tracing::debug!(%error, %address, "gossip message not delivered");
                }
            });
        }
    }

    async fn gossip_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let (transmits, next) = {
                let mut state = self.lock();
                let now = self.gossip_now();
                state.gossip.handle_timeout(now);
                let transmits = self.after_gossip(&mut state);
                self.refresh_directory(&state);
                let next = state
                    .gossip
                    .poll_timeout()
                    .map_or(Duration::from_millis(200), |at| at.saturating_sub(now));
                (transmits, next)
            };
            self.send_transmits(transmits);
            let pause = next.clamp(Duration::from_millis(10), Duration::from_secs(1));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    fn refresh_directory(&self, state: &State) {
        let directory: BTreeMap<NodeId, SocketAddr> = state
            .gossip
            .members()
            .filter_map(|m| {
                let address = m.identity().address.parse().ok()?;
                Some((NodeId::from(m.id().as_str()), address))
            })
            .collect();
        if let Ok(mut current) = self.directory.lock() {
            *current = directory;
        }
    }

    /// Paper 4.6: hints go back to their owner once it is up again, and are dropped only after
    /// the owner acknowledged every version they hold.
    async fn hint_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                () = tokio::time::sleep(HINT_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
            let store = self.store.clone();
            let Ok(Ok(owners)) = tokio::task::spawn_blocking(move || store.hint_owners()).await
            else {
                continue;
            };
            for owner in owners {
                let owner_id = NodeId::from(owner.as_str());
                let address = {
                    let state = self.lock();
                    if !self.is_up(&state, &owner_id) {
                        continue;
                    }
                    self.address_of(&state, &owner_id)
                };
                let Some(address) = address else { continue };
                let store = self.store.clone();
                let name = owner.clone();
                let Ok(Ok(hints)) =
                    tokio::task::spawn_blocking(move || store.hints_for(&name, BATCH)).await
                else {
                    continue;
                };
                for hint in hints {
                    let request = Request::DeliverHint {
                        partition: hint.partition,
                        key: hint.key.clone(),
                        object: hint.versions.clone(),
                    };
                    let stored = match self.endpoint.request(address, &request, PEER_TIMEOUT).await
                    {
                        Ok(Response::Stored(stored)) => stored,
                        // The owner refused this one hint: skip it so it does not block the rest.
                        Ok(other) => {
                            tracing::warn!(%owner, ?other, "hint refused by its owner");
                            continue;
                        }
                        // The owner is unreachable: try again next round.
                        Err(_) => break,
                    };
                    let store = self.store.clone();
                    let owner = owner.clone();
                    let durability = self.replica_durability();
                    let _ = tokio::task::spawn_blocking(move || {
                        store.remove_hint_if_covered(
                            &owner,
                            hint.partition,
                            &hint.key,
                            &stored,
                            durability,
                        )
                    })
                    .await;
                }
            }
        }
    }
}
