//! The node's async runtime: a thin loop around the sans-IO [`NodeCore`].
//!
//! It owns what the core must not know: the QUIC endpoint (mutual TLS), tokio tasks, the fjall
//! store (single-key writes on the write lane of `write_lane.rs`; other operations on the
//! blocking pool or, for cached point reads, on the driver) and the clock. One driver task owns
//! the core; it feeds it the requests the endpoint receives, the answers of calls to peers, the
//! results of store operations and its timers, and carries out the core's outputs (send a
//! request, run a store operation, answer a request, log an event). It makes no decision of
//! its own: which ring, which replicas, which hints and which partitions are the core's.
//!
//! This module must not know how placement, quorums, membership, hints or handoff are decided
//! ([`dynamo_core`]) or how bytes are framed and encrypted ([`dynamo_client::transport`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dynamo_quorum::Value;
use dynamo_ring::{NodeId, Ring, key_position};
use dynamo_storage::{Durability, FjallStore, Store, StoreOptions};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{DurabilityMode, NodeConfig};
use crate::gate::{Gate, Incoming};
use crate::metrics::Metrics;
use crate::write_lane::{self, OnSuccess, Write, WriteLane};
use dynamo_client::address::{NodeAddress, Resolver};
use dynamo_client::tls::{Identity, PeerIdentity, Role, TlsConfig};
use dynamo_client::transport::{Endpoint, TransportError, TransportOptions};
use dynamo_core::{
    CallError, CallErrorKind, CoreConfig, CoreError, CoreEvent, NodeCore, OpId, Output, RequestId,
    StoreError, StoreOp, StoreResult, Time,
};
use dynamo_protocol::{Request, Response};

/// The address a node tells peers and clients: `advertise` when given, else the address it
/// listens on, which must then be one they can dial (not `0.0.0.0` or `[::]`).
fn advertised_address(
    advertise: Option<&NodeAddress>,
    bound: SocketAddr,
) -> Result<NodeAddress, NodeError> {
    match advertise {
        Some(address) => Ok(address.clone()),
        None if bound.ip().is_unspecified() => Err(NodeError::Config(format!(
            "the node listens on {bound}, which peers and clients cannot dial: give --advertise HOST:PORT (DYNAMO_ADVERTISE, `advertise` in the TOML), the IP address or DNS name they reach this node at"
        ))),
        None => Ok(NodeAddress::from(bound)),
    }
}

/// Node state name under which the store records the fingerprint of its cluster's CA.
const CLUSTER_CA_STATE: &str = "cluster-ca";

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Certificates could not be loaded.
    #[error("certificates in {dir}: {source}")]
    Tls {
        /// The certificate directory.
        dir: String,
        /// The cause.
        source: dynamo_client::tls::TlsError,
    },
    /// The store could not be opened.
    #[error("store in {dir}: {source}")]
    Storage {
        /// The data directory.
        dir: String,
        /// The cause.
        source: dynamo_storage::StorageError,
    },
    /// The HTTP API's listen address could not be bound.
    #[error("HTTP API listening on {addr}: {source}")]
    HttpBind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: dynamo_client::transport::TransportError,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory belongs to the cluster of another CA.
    #[error(
        "the data directory {dir} belongs to another cluster: its store was created under the cluster CA with fingerprint {stored}, but this node's certificates are from the CA with fingerprint {ours}; start it with that cluster's certificates, or give it a data directory of its own"
    )]
    OtherCluster {
        /// The data directory.
        dir: String,
        /// The fingerprint the store recorded.
        stored: String,
        /// The fingerprint of the CA this node trusts.
        ours: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl From<CoreError> for NodeError {
    fn from(error: CoreError) -> Self {
        NodeError::Config(error.to_string())
    }
}

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    me: NodeId,
    address: SocketAddr,
    advertised: NodeAddress,
    endpoint: Endpoint,
    store: Arc<FjallStore<Value>>,
    ring: watch::Receiver<Option<Ring>>,
    /// Why the node stopped serving (its store can no longer promise durability), once it did.
    stopped: watch::Receiver<Option<String>>,
    control: mpsc::UnboundedSender<Completion>,
    driver: JoinHandle<()>,
    /// The task that saves node state; it ends once the driver is gone.
    saver: JoinHandle<()>,
    /// The task that measures the free disk space.
    disk_probe: JoinHandle<()>,
    /// The write lane's thread; it ends once the driver is gone.
    write_thread: Option<std::thread::JoinHandle<()>>,
    serve: JoinHandle<()>,
    /// The HTTP API, when configured.
    http: Option<crate::http::HttpServer>,
    /// Held while the node runs, so a second node cannot open the same data directory.
    _lock: std::fs::File,
}

/// What the driver's own tasks report back.
enum Completion {
    Store(OpId, Result<StoreResult, StoreError>),
    /// The free space of the store's disk, measured.
    Disk(dynamo_core::DiskSpace),
    /// Stop taking client requests; end once open requests are answered or after `grace`.
    Shutdown {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
}

/// The node's clock: wall-clock milliseconds at start, then a monotonic clock, so time given to
/// the core never goes back.
#[derive(Clone, Copy)]
struct Clock {
    started: Instant,
    wall_at_start: u64,
}

impl Clock {
    fn new() -> Self {
        let wall_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            started: Instant::now(),
            wall_at_start,
        }
    }

    fn now(self) -> Time {
        Time::from_millis(self.wall_at_start + self.started.elapsed().as_millis() as u64)
    }

    /// The instant at which `now()` reaches `at` (an hour from now for times beyond what an
    /// `Instant` holds; the core is asked again well before).
    fn instant_of(self, at: Time) -> tokio::time::Instant {
        let offset = Duration::from_millis(at.as_millis().saturating_sub(self.wall_at_start));
        self.started.checked_add(offset).map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        )
    }
}

impl Node {
    /// Starts a node: loads its certificates, opens its store, reads back the state it saved,
    /// binds its QUIC endpoint, and hands everything else to its core (which founds a cluster,
    /// resumes one, or joins one through its seeds).
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        if config.name.is_empty() {
            return Err(NodeError::Config("the node name is empty".into()));
        }
        let clock = Clock::new();
        let (tls, ca_fingerprint) = load_tls(&config.certs_dir, &config.name)?;
        create_data_dir(&config.data_dir)?;
        let lock = lock_data_dir(&config.data_dir)?;
        let store_dir = config.data_dir.join("store");
        let mut options = StoreOptions::new(config.name.clone(), clock.now().as_millis());
        // The store's limit applies to the encoded sibling, a few bytes more than the value.
        options.max_value_bytes = config.max_value_bytes + 64;
        options.disk_reserve_bytes = config.disk_reserve_bytes;
        let (store, mut saved) = {
            let dir = store_dir.clone();
            let fingerprint = ca_fingerprint.clone();
            tokio::task::spawn_blocking(move || {
                let store = FjallStore::open(&dir, &options)?;
                let stored = claim_store(&store, &fingerprint)?;
                let saved = dynamo_core::load_saved_state(&store);
                Ok::<_, dynamo_storage::StorageError>((store, saved, stored))
            })
            .await
            .map_err(|e| NodeError::Config(e.to_string()))?
            .map_err(|source| NodeError::Storage {
                dir: store_dir.display().to_string(),
                source,
            })
            .and_then(|(store, saved, stored)| match stored {
                Some(stored) if stored != ca_fingerprint => Err(NodeError::OtherCluster {
                    dir: config.data_dir.display().to_string(),
                    stored,
                    ours: ca_fingerprint.clone(),
                }),
                _ => Ok((store, saved)),
            })?
        };
        let saved = saved
            .as_mut()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        if saved.ring.is_none() {
            // Nodes before the store kept node state saved the ring beside it.
            saved.ring = read_legacy_ring(&config.data_dir)?;
        }
        let transport = TransportOptions {
            limits: config.limits.clone(),
            ..TransportOptions::default()
        };
        let endpoint =
            Endpoint::bind(config.listen, &tls, transport).map_err(|source| NodeError::Bind {
                addr: config.listen,
                source,
            })?;
        let address = endpoint.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let advertised = advertised_address(config.advertise.as_ref(), address)?;
        let core_config = CoreConfig {
            secret: random_key()?,
            name: config.name.clone(),
            address: advertised.to_string(),
            zone: config.zone.clone(),
            capacity: config.capacity,
            seeds: config.seeds.iter().map(ToString::to_string).collect(),
            cluster: config.cluster.clone(),
            partitions: config.partitions,
            target_n: config.target_n,
            request_timeout_ms: config.request_timeout_ms,
            max_value_bytes: config.max_value_bytes,
            gossip_interval_ms: config.gossip_interval_ms,
            replica_durability: match config.durability {
                DurabilityMode::Sync => Durability::Sync,
                DurabilityMode::Buffered => Durability::Buffered,
            },
            anti_entropy_interval_ms: config.anti_entropy_interval_ms,
            anti_entropy_sessions: config.anti_entropy_sessions,
            anti_entropy_bytes_per_sec: config.anti_entropy_bytes_per_sec,
            handoff_concurrency: config.handoff_concurrency,
            tombstone_grace_ms: config.tombstone_grace_ms,
            replaces: config.replaces.clone(),
            rejoin: config.rejoin,
            stand_in_after_ms: config.stand_in_after_ms,
        };
        let now = clock.now();
        let seed = now.as_millis() ^ u64::from(key_position(config.name.as_bytes()) as u32);
        let actor = store.actor();
        let core = NodeCore::new(core_config, saved, actor.clone(), now, seed)?;
        let me = core.id().clone();
        let store = Arc::new(store);
        // Requests in flight, from arrival to answer: a full node answers "overloaded" at once.
        let metrics = Arc::new(Metrics::new());
        let (gate, requests_rx) = Gate::new(
            config.max_client_requests_in_flight,
            config.max_peer_requests_in_flight,
            metrics,
        );
        let (control, completions) = mpsc::unbounded_channel();
        let (ring_tx, ring) = watch::channel(core.ring().cloned());
        let (stopped_tx, stopped) = watch::channel(None);
        let (saves, saver) = spawn_saver(store.clone(), control.clone());
        let (writes, write_thread) = {
            let completions = control.clone();
            WriteLane::start(
                &config.name,
                store.clone(),
                Box::new(move |id, result| {
                    let _ = completions.send(Completion::Store(id, result));
                }),
            )
            .map_err(|source| NodeError::Io {
                path: "the write lane's thread".to_string(),
                source,
            })?
        };
        let driver = Driver {
            core,
            clock,
            store: store.clone(),
            endpoint: endpoint.clone(),
            answers: BTreeMap::new(),
            next_request: 0,
            completions_tx: control.clone(),
            saves,
            ring: ring_tx,
            stopped: stopped_tx,
            ring_generation: 0,
            gate: gate.clone(),
            inline_reads: InlineReads::new(config.inline_reads),
            writes,
            calls: FuturesUnordered::new(),
            resolver: Arc::new(Resolver::default()),
        };
        let driver = tokio::spawn(driver.run(requests_rx, completions));
        let disk_probe = tokio::spawn(measure_disk(store.clone(), control.clone()));
        let serve = {
            let gate = gate.clone();
            endpoint.serve(move |from: PeerIdentity, request: Request| {
                let gate = gate.clone();
                async move { gate.submit(from, request).await }
            })
        };
        let http = match config.http_listen {
            Some(listen) => {
                let context = crate::http::HttpContext {
                    node: me.to_string(),
                    gate: gate.clone(),
                    store: store.clone(),
                    endpoint: endpoint.clone(),
                    max_value_bytes: config.max_value_bytes,
                    limits: config.http_limits.clone(),
                };
                let server = crate::http::HttpServer::bind(listen, &tls, context)
                    .await
                    .map_err(|source| NodeError::HttpBind {
                        addr: listen,
                        source,
                    })?;
                tracing::info!(node = %me, address = %server.address(), "HTTP API listening");
                Some(server)
            }
            None => None,
        };
        tracing::info!(node = %me, listen = %address, %advertised, %actor, "node started");
        Ok(Node {
            me,
            address,
            advertised,
            endpoint,
            store,
            ring,
            stopped,
            control,
            driver,
            saver,
            disk_probe,
            write_thread: Some(write_thread),
            serve,
            http,
            _lock: lock,
        })
    }

    /// The address the node listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address peers and clients are told to reach this node at (its `advertise`, or the
    /// listen address).
    pub fn advertised(&self) -> &NodeAddress {
        &self.advertised
    }

    /// The address of the HTTP API, when it listens.
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(crate::http::HttpServer::address)
    }

    /// The node id.
    pub fn id(&self) -> &NodeId {
        &self.me
    }

    /// Waits until the node stops serving because its store can no longer promise durability
    /// (a failed fsync); returns why. The process should then exit so that it is restarted:
    /// the store recovers from its journal when it opens again.
    pub async fn stopped(&self) -> String {
        let mut stopped = self.stopped.clone();
        loop {
            if let Some(why) = stopped.borrow_and_update().clone() {
                return why;
            }
            if stopped.changed().await.is_err() {
                return "the node's driver ended".into();
            }
        }
    }

    /// The ring the node uses now.
    pub fn ring(&self) -> Option<Ring> {
        self.ring.borrow().clone()
    }

    /// Stops serving: new client requests are refused with a "try another node" error,
    /// in-flight requests get up to `grace` to finish, then the endpoint closes and the store is
    /// flushed.
    pub async fn shutdown(mut self, grace: Duration) {
        let (done, finished) = oneshot::channel();
        if self
            .control
            .send(Completion::Shutdown { grace, done })
            .is_ok()
        {
            let _ = finished.await;
        }
        self.driver.abort();
        self.disk_probe.abort();
        let _ = (&mut self.disk_probe).await;
        // The driver is gone, and with it the saver's and the write lane's queues: let queued
        // saves and writes reach the disk.
        let _ = self.saver.await;
        if let Some(writes) = self.write_thread.take() {
            let _ = tokio::task::spawn_blocking(move || writes.join()).await;
        }
        if let Some(http) = self.http {
            http.shutdown();
        }
        self.endpoint.close().await;
        self.serve.abort();
        let store = self.store.clone();
        // Durable, and marked as a clean close: the next start continues key incarnations.
        match tokio::task::spawn_blocking(move || store.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(node = %self.me, %error, "closing the store failed"),
            Err(error) => tracing::error!(node = %self.me, %error, "closing the store panicked"),
        }
        tracing::info!(node = %self.me, "node stopped");
    }
}

/// 32 bytes from the operating system's random source, as a context key the core may use.
fn random_key() -> Result<dynamo_quorum::ContextKey, NodeError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| NodeError::Config("the operating system gave no random bytes".into()))?;
    Ok(dynamo_quorum::ContextKey::new(bytes))
}

/// How often the free space of the store's disk is measured.
const DISK_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Measures the free space of the store's disk every [`DISK_PROBE_INTERVAL`] for the core,
/// until the driver is gone.
async fn measure_disk(
    store: Arc<FjallStore<Value>>,
    completions: mpsc::UnboundedSender<Completion>,
) {
    loop {
        let measured = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.free_space()).await
        };
        match measured {
            Ok(Ok(space)) => {
                let space = dynamo_core::DiskSpace {
                    free: space.free,
                    reserve: space.reserve,
                };
                if completions.send(Completion::Disk(space)).is_err() {
                    return;
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "could not measure the free disk space"),
            Err(_) => return, // the runtime is shutting down
        }
        tokio::time::sleep(DISK_PROBE_INTERVAL).await;
    }
}

/// Runs node-state saves one after another, in the order the core emitted them.
fn spawn_saver(
    store: Arc<FjallStore<Value>>,
    completions: mpsc::UnboundedSender<Completion>,
) -> (mpsc::UnboundedSender<(OpId, StoreOp)>, JoinHandle<()>) {
    // Unbounded but small: the core keeps at most one save in flight per kind of state.
    let (tx, mut rx) = mpsc::unbounded_channel::<(OpId, StoreOp)>();
    let task = tokio::spawn(async move {
        while let Some((id, op)) = rx.recv().await {
            let store = store.clone();
            let result = tokio::task::spawn_blocking(move || dynamo_core::execute(&*store, op))
                .await
                .unwrap_or_else(|e| Err(crate::write_lane::failed(e.to_string())));
            let _ = completions.send(Completion::Store(id, result));
        }
    });
    (tx, task)
}

/// The task that owns the core.
struct Driver {
    core: NodeCore,
    clock: Clock,
    store: Arc<FjallStore<Value>>,
    endpoint: Endpoint,
    /// Where each open request's answer goes, with its in-flight slot (freed by the answer).
    answers: BTreeMap<RequestId, (oneshot::Sender<Response>, OwnedSemaphorePermit)>,
    next_request: u64,
    completions_tx: mpsc::UnboundedSender<Completion>,
    saves: mpsc::UnboundedSender<(OpId, StoreOp)>,
    ring: watch::Sender<Option<Ring>>,
    /// The core's ring generation last published on `ring`.
    ring_generation: u64,
    /// Told once the core stops serving.
    stopped: watch::Sender<Option<String>>,
    /// Told of every key written here, for the HTTP API's watchers.
    gate: Gate,
    /// Whether point reads run on the driver now.
    inline_reads: InlineReads,
    /// Where single-key writes go: one thread, one fsync per run of them.
    writes: WriteLane,
    /// Calls to peers in flight, polled by the driver itself (see [`Driver::call`]).
    calls: FuturesUnordered<Call>,
    /// Peers' host names, resolved when called.
    resolver: Arc<Resolver>,
}

/// A call to a peer in flight: its operation (none for gossip), the peer and the outcome.
type Call = std::pin::Pin<
    Box<dyn Future<Output = (Option<OpId>, String, Result<Response, CallError>)> + Send>,
>;

impl Driver {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Incoming>,
        mut completions: mpsc::UnboundedReceiver<Completion>,
    ) {
        let mut stopping: Option<(tokio::time::Instant, oneshot::Sender<()>)> = None;
        loop {
            self.carry_out();
            if let Some((deadline, _)) = &stopping
                && (self.core.open_requests() == 0 || tokio::time::Instant::now() >= *deadline)
            {
                let unfinished = self.core.open_requests();
                if unfinished > 0 {
                    tracing::warn!(node = %self.core.id(), unfinished, "closing with requests in flight");
                }
                if let Some((_, done)) = stopping.take() {
                    let _ = done.send(());
                }
                return;
            }
            let wake = self.core.poll_timeout().map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(1),
                |at| self.clock.instant_of(at),
            );
            let wake = match &stopping {
                Some((deadline, _)) => wake.min(*deadline),
                None => wake,
            };
            tokio::select! {
                Some(completion) = completions.recv() => {
                    let now = self.clock.now();
                    match completion {
                        Completion::Store(id, result) => self.core.handle_store_result(now, id, result),
                        Completion::Disk(space) => self.core.handle_disk_space(now, space),
                        Completion::Shutdown { grace, done } => {
                            self.core.begin_shutdown();
                            stopping = Some((tokio::time::Instant::now() + grace, done));
                        }
                    }
                }
                Some(incoming) = requests.recv() => {
                    let id = RequestId(self.next_request);
                    self.next_request += 1;
                    self.answers.insert(id, (incoming.answer, incoming.slot));
                    self.core.handle_request(self.clock.now(), id, &incoming.from, incoming.request);
                }
                Some((id, address, result)) = self.calls.next(), if !self.calls.is_empty() => {
                    match id {
                        Some(id) => self.core.handle_call_result(self.clock.now(), id, result),
                        None => {
                            if let Err(error) = result {
                                tracing::debug!(%error, %address, "gossip message not delivered");
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(wake) => self.core.handle_timeout(self.clock.now()),
            }
        }
    }

    /// Carries out every output the core has.
    fn carry_out(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Respond { id, response } => {
                    if let Some((answer, _slot)) = self.answers.remove(&id) {
                        let _ = answer.send(response);
                    }
                }
                Output::Call {
                    id,
                    address,
                    request,
                    timeout_ms,
                } => self.call(id, address, request, timeout_ms),
                Output::Store { id, op } => self.run_store_op(id, op),
                Output::Event(event) => {
                    if let CoreEvent::Stopped(why) = &event {
                        self.stopped.send_replace(Some(why.clone()));
                    }
                    log_event(self.core.id(), event);
                }
            }
        }
        if self.core.ring_generation() != self.ring_generation {
            self.ring_generation = self.core.ring_generation();
            self.ring.send_replace(self.core.ring().cloned());
        }
    }

    /// Starts a call to a peer. The driver polls it itself rather than spawning a task: every
    /// call a run of requests makes is written before the driver yields, so QUIC packs those
    /// to one peer into the same datagrams, and the answer comes back without a task's wake
    /// and a channel hop. Calls still out when the driver stops are dropped with it, which
    /// loses nothing: a client was answered only once its quorum had acknowledged, and hints,
    /// handoff and anti-entropy keep their data until the peer's answer says it is stored.
    ///
    /// A peer known by host name is resolved first, that too bounded by the call's timeout
    /// (see [`dynamo_client::address`]); a failed call makes the next one resolve it again.
    fn call(&mut self, id: Option<OpId>, address: String, request: Request, timeout_ms: u64) {
        let endpoint = self.endpoint.clone();
        let resolver = self.resolver.clone();
        let timeout = Duration::from_millis(timeout_ms);
        self.calls.push(Box::pin(async move {
            // A literal address (the common case) goes straight to the endpoint, whose request
            // has the timeout; only a name's resolution needs a bound of its own.
            let peer = match address.parse::<SocketAddr>() {
                Ok(socket) => Ok(socket),
                Err(_) => tokio::time::timeout(timeout, resolver.resolve_text(&address))
                    .await
                    .unwrap_or_else(|_| {
                        Err(dynamo_client::address::ResolveError::Lookup {
                            address: address.clone(),
                            reason: format!("no answer within {timeout:?}"),
                        })
                    })
                    .map_err(|error| CallError::new(CallErrorKind::Unreachable, error.to_string())),
            };
            let result = match peer {
                Ok(peer) => endpoint
                    .request_since::<Request, Response>(
                        peer,
                        &request,
                        timeout,
                        request.since_version(),
                    )
                    .await
                    .map_err(|error| call_error(&error)),
                Err(error) => Err(error),
            };
            if result.is_err()
                && let Ok(name) = address.parse::<NodeAddress>()
            {
                resolver.forget(&name);
            }
            (id, address, result)
        }));
    }

    fn run_store_op(&mut self, id: OpId, op: StoreOp) {
        if matches!(op, StoreOp::SaveState { .. }) {
            let _ = self.saves.send((id, op));
            return;
        }
        let started = Instant::now();
        if matches!(op, StoreOp::Get { .. } | StoreOp::GetWithHints { .. })
            && self.inline_reads.allowed(started)
        {
            // A point read of data the store has in memory takes microseconds: far less than
            // handing it to another thread and waking the driver for its result.
            let result = write_lane::execute_guarded(&*self.store, op);
            self.inline_reads.observe(started.elapsed(), Instant::now());
            self.core.handle_store_result(self.clock.now(), id, result);
            return;
        }
        if let StoreOp::Update { key, .. } | StoreOp::Apply { key, .. } = &op {
            // Watchers of a key written here are told once the write is done (only while some
            // watch is open; no receiver left means the watch ended).
            let on_success = self.gate.write_notices().map(|notices| {
                let fingerprint = dynamo_quorum::key_fingerprint(key);
                Box::new(move || drop(notices.send(fingerprint))) as OnSuccess
            });
            if let Err(id) = self.writes.submit(Write { id, op, on_success }) {
                let error = crate::write_lane::failed("the write lane has stopped");
                self.core
                    .handle_store_result(self.clock.now(), id, Err(error));
            }
            return;
        }
        let store = self.store.clone();
        let completions = self.completions_tx.clone();
        // Straight onto the blocking pool, which reports back itself: no async task in
        // between to spawn and wake for every store operation. A panic in the store is an
        // error for this operation, not a lost answer.
        tokio::task::spawn_blocking(move || {
            let result = write_lane::execute_guarded(&*store, op);
            let _ = completions.send(Completion::Store(id, result));
        });
    }
}

/// Whether the driver runs point reads itself instead of on the blocking pool.
///
/// A read served from the store's caches takes microseconds, a hand-off to a pool thread and
/// back tens of them (and two context switches), so reads run on the driver. Reads that wait
/// for the disk would hold up every other request of the node, so the driver keeps a moving
/// average of its reads' time; while it is above [`InlineReads::SLOW`], reads go to the blocking
/// pool (where they wait in parallel), and the driver tries again after
/// [`InlineReads::BACK_OFF`]. One read that is slow because the thread was preempted moves the
/// average little; a run of reads that miss the cache moves it past the threshold.
#[derive(Debug)]
struct InlineReads {
    enabled: bool,
    /// Moving average of inline reads, in microseconds.
    average_us: f64,
    /// Reads go to the blocking pool until then.
    pooled_until: Option<Instant>,
}

impl InlineReads {
    /// Above this average, reads go to the pool.
    const SLOW: Duration = Duration::from_micros(250);
    /// How long reads stay on the pool.
    const BACK_OFF: Duration = Duration::from_secs(1);
    /// Weight of the newest read in the average.
    const WEIGHT: f64 = 1.0 / 32.0;

    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            average_us: 0.0,
            pooled_until: None,
        }
    }

    fn allowed(&mut self, now: Instant) -> bool {
        match self.pooled_until {
            _ if !self.enabled => false,
            Some(until) if now < until => false,
            Some(_) => {
                // Try the driver again, from a clean average.
                self.pooled_until = None;
                self.average_us = 0.0;
                true
            }
            None => true,
        }
    }

    /// Records an inline read that took `took`, finished at `now`.
    fn observe(&mut self, took: Duration, now: Instant) {
        self.average_us += (took.as_secs_f64() * 1e6 - self.average_us) * Self::WEIGHT;
        if self.average_us > Self::SLOW.as_secs_f64() * 1e6 {
            self.pooled_until = Some(now + Self::BACK_OFF);
            tracing::debug!(
                average_us = self.average_us as u64,
                "reads on the driver are slow (waiting for the disk?); they use the blocking pool for a second"
            );
        }
    }
}

fn log_event(node: &NodeId, event: CoreEvent) {
    match event {
        CoreEvent::RingAdopted { version, members } => {
            tracing::info!(%node, version, members, "ring adopted");
        }
        CoreEvent::StatusChanged(status) => tracing::info!(%node, %status, "status changed"),
        CoreEvent::HandoffStarted { transfers } => {
            tracing::info!(%node, transfers, "handoff started");
        }
        CoreEvent::HandoffFinished { failed: 0, dropped } => {
            tracing::info!(%node, dropped, "handoff finished");
        }
        CoreEvent::HandoffFinished { failed, dropped } => {
            tracing::warn!(%node, failed, dropped, "handoff gave up on some partitions; anti-entropy and read repair must cover them");
        }
        CoreEvent::HintRefused { owner, reason } => {
            tracing::warn!(%node, %owner, %reason, "hint refused by its owner");
        }
        CoreEvent::Problem(message) => tracing::warn!(%node, "{message}"),
        CoreEvent::Bug(message) => tracing::error!(%node, "bug: {message} (please report it)"),
        CoreEvent::Detail(message) => tracing::debug!(%node, "{message}"),
        CoreEvent::Stopped(message) => tracing::error!(%node, "{message}"),
        CoreEvent::DiskFull {
            full: true,
            message,
        } => tracing::error!(%node, "{message}"),
        CoreEvent::DiskFull {
            full: false,
            message,
        } => tracing::info!(%node, "{message}"),
    }
}

/// The node's TLS configuration and the fingerprint of its cluster CA.
fn load_tls(dir: &Path, name: &str) -> Result<(TlsConfig, String), NodeError> {
    let tls_error = |source| NodeError::Tls {
        dir: dir.display().to_string(),
        source,
    };
    let ca_path = dir.join(dynamo_client::tls::CA_CERT_FILE);
    let ca = std::fs::read_to_string(&ca_path).map_err(|source| NodeError::Io {
        path: ca_path.display().to_string(),
        source,
    })?;
    if dir.join(dynamo_client::tls::CA_KEY_FILE).exists() {
        tracing::warn!(
            dir = %dir.display(),
            "the certificate directory holds the cluster CA's private key: anyone who can read it can mint certificates; keep the CA directory apart from what nodes use"
        );
    }
    let identity = Identity::load(dir, Some(Role::Node), Some(name)).map_err(tls_error)?;
    let fingerprint = dynamo_client::tls::ca_fingerprint(&ca).map_err(tls_error)?;
    Ok((
        TlsConfig::new(&ca, &identity).map_err(tls_error)?,
        fingerprint,
    ))
}

/// Creates the data directory readable only by the node's user (0700 on unix); an existing one
/// that others can read gets a warning.
fn create_data_dir(dir: &Path) -> Result<(), NodeError> {
    dynamo_client::files::create_private_dir(dir).map_err(|source| NodeError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(dir)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the data directory is readable by other users; `chmod 700` it"
            );
        }
    }
    Ok(())
}

/// Takes the data directory's lock file, or says which directory is in use and what to do.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, NodeError> {
    let path = dir.join("node.lock");
    match dynamo_client::files::lock_file(&path) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(NodeError::Config(format!(
            "the data directory {} is in use by another node; give this node its own --data-dir",
            dir.display()
        ))),
        Err(source) => Err(NodeError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Records `fingerprint` as the cluster CA of a store that has none yet; returns the one it
/// had, if any.
fn claim_store(
    store: &FjallStore<Value>,
    fingerprint: &str,
) -> Result<Option<String>, dynamo_storage::StorageError> {
    if let Some(bytes) = store.node_state(CLUSTER_CA_STATE)? {
        return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
    }
    store.save_node_state(CLUSTER_CA_STATE, fingerprint.as_bytes())?;
    Ok(None)
}

/// The ring saved beside the store by nodes that predate node state in the store.
fn read_legacy_ring(data_dir: &Path) -> Result<Option<Vec<u8>>, NodeError> {
    let path = data_dir.join("ring.postcard");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(NodeError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// What kind of failure a transport error is, for the core.
fn call_error(error: &TransportError) -> CallError {
    let kind = match error {
        TransportError::Timeout { .. } => CallErrorKind::Timeout,
        TransportError::Bind { .. }
        | TransportError::Connect { .. }
        | TransportError::Tls(_)
        | TransportError::Resolve(_) => CallErrorKind::Unreachable,
        _ => CallErrorKind::Broken,
    };
    CallError::new(kind, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads stay on the driver through the odd slow one (a preempted thread), move to the pool
    /// when they are slow in a run (cache misses), and come back after the back-off.
    #[test]
    fn inline_reads_back_off_only_from_a_run_of_slow_reads() {
        let start = Instant::now();
        let us = Duration::from_micros;
        // (reads before, each taking, then allowed at +0 s, and at +1.5 s)
        let cases = [
            (vec![us(10); 100], true, true),
            (
                [vec![us(10); 50], vec![us(4_000)], vec![us(10); 50]].concat(),
                true,
                true,
            ),
            (vec![us(2_000); 10], false, true),
            (vec![us(300); 200], false, true),
        ];
        for (reads, now, later) in cases {
            let mut policy = InlineReads::new(true);
            for took in &reads {
                if policy.allowed(start) {
                    policy.observe(*took, start);
                }
            }
            assert_eq!(policy.allowed(start), now, "{reads:?}");
            assert_eq!(
                policy.allowed(start + Duration::from_millis(1_500)),
                later,
                "{reads:?}"
            );
        }
        assert!(!InlineReads::new(false).allowed(start), "turned off");
    }

    /// Issue 25: what a node advertises, by its listen address and `--advertise`.
    #[test]
    fn the_advertised_address() {
        let cases: [(&str, Option<&str>, Option<&str>); 5] = [
            ("10.0.0.1:7000", None, Some("10.0.0.1:7000")),
            (
                "0.0.0.0:7000",
                Some("db1.example:7000"),
                Some("db1.example:7000"),
            ),
            ("[::]:7000", Some("10.0.0.1:7000"), Some("10.0.0.1:7000")),
            ("0.0.0.0:7000", None, None),
            ("[::]:7000", None, None),
        ];
        for (bound, advertise, expected) in cases {
            let advertise: Option<NodeAddress> = advertise.map(|a| a.parse().expect("address"));
            let bound: SocketAddr = bound.parse().expect("socket");
            let got = advertised_address(advertise.as_ref(), bound);
            if let Some(expected) = expected {
                assert_eq!(got.expect("advertised").to_string(), expected, "{bound}");
            } else {
                let error = got.expect_err("refused").to_string();
                assert!(error.contains("--advertise"), "{error}");
            }
        }
    }
}
