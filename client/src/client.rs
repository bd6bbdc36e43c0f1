//! The client library: partition-aware routing (paper section 6.4, client-driven coordination).
//!
//! A [`Client`] keeps the ring and the members' addresses, refreshed every 10 seconds and
//! whenever a node is unreachable or answers that replicas are unavailable or it has no ring
//! (signs that membership moved), and sends each request straight to a member of the key's
//! preference list, so most requests skip the forwarding hop. Any node still accepts any
//! request, so a stale ring costs a hop, never a wrong answer.
//!
//! It does not wait on the dead. A dial that does not finish within the transport's connect
//! timeout fails at once; members the cluster reports down, or that failed a request or kept
//! a write waiting a third of the timeout in the last 10 s, are tried last (a request another
//! node answered first still runs to its end, so a silent node is found out); and requests that
//! are safe to send twice (reads, status, ring, bucket listing and creation) go to the next
//! candidate when the previous one has not answered within a hedge delay (the p99 of recent
//! answers, as Cassandra's speculative retry), first answer wins. A write goes to the next
//! node when its node failed, or has not answered within a third of the timeout (every
//! attempt carries one write id, so it stays one write). When every node fails, the error lists each address
//! with its own cause.
//!
//! This module must not know how nodes coordinate; it only picks where to send.

mod copy_read;
mod versions;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use dynamo_quorum::Fallback;
use dynamo_ring::{NodeId, Ring};

use crate::address::{NodeAddress, Resolver};
use crate::tls::TlsConfig;
use crate::transport::{Endpoint, TransportError, TransportOptions};
pub use copy_read::ReadPaths;
use copy_read::{CopyRead, ReadPathCounters};
use dynamo_protocol::{
    BucketProps, ClusterStatus, ErrorKind, ErrorReply, GetReply, PutReply, Request, RequestOptions,
    Response, storage_key,
};

/// A random write id (see [`Request::Put`]); `None` if the system has no randomness to give.
fn new_write_id() -> Option<u128> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(u128::from_le_bytes(bytes))
}

/// One request to one node: where it went, when, and how it ended.
type Attempt = (NodeAddress, Instant, Result<Response, TransportError>);

/// How often the client refreshes its ring.
const RING_REFRESH: Duration = Duration::from_secs(10);

/// How long a node that failed a request is tried only after the others.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// How long closing a client waits for its peers to be told: long enough for the close to
/// reach a node a few round trips away, short enough for a script that runs the CLI in a loop.
pub const CLOSE_DRAIN: Duration = Duration::from_millis(250);

/// Answers whose latency decides the hedge delay.
const LATENCY_SAMPLES: usize = 128;
/// The hedge delay before any answer was timed, and its bounds.
const DEFAULT_HEDGE: Duration = Duration::from_millis(150);
const MIN_HEDGE: Duration = Duration::from_millis(10);
const MAX_HEDGE: Duration = Duration::from_secs(1);

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client's endpoint could not be set up.
    #[error("cannot set up the client: {0}")]
    Transport(#[from] TransportError),
    /// No node answered; each address tried, with its own cause.
    #[error("no node answered: {}", describe_failures(.0))]
    Unreachable(Vec<TransportError>),
    /// The node answered with an error.
    #[error("{}", .0.message)]
    Server(ErrorReply),
    /// The node answered something this client does not expect.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The client was given no node to talk to.
    #[error("no seed address given")]
    NoSeeds,
    /// A typed operation on a bucket whose resolver does not hold that type.
    #[error("{0}")]
    WrongBucket(String),
}

/// The outcome of a get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetOutcome {
    /// The key's siblings and the context to write with.
    Found(GetReply),
    /// The key does not exist (or was deleted); the context lets a write supersede a tombstone.
    NotFound {
        /// Context token.
        context: String,
    },
}

/// "{first}; {second}; ...": each failure names its address.
fn describe_failures(failures: &[TransportError]) -> String {
    let mut text = String::new();
    for (i, failure) in failures.iter().enumerate() {
        let _ = write!(text, "{}{failure}", if i == 0 { "" } else { "; " });
    }
    text
}

/// Why the candidates asked so far did not answer.
#[derive(Default)]
struct Failures {
    /// Nodes that could not be reached, each with its cause.
    unreachable: Vec<TransportError>,
    /// The last "not ready" or "unavailable" refusal (see [`Client::settle`]).
    refused: Option<ErrorReply>,
}

struct Routing {
    ring: Ring,
    addresses: Vec<(NodeId, NodeAddress, bool)>,
    /// The buckets' quorums, for client-side reads (a bucket created since the last refresh
    /// is read through a coordinator until the next).
    buckets: HashMap<String, BucketProps>,
    fetched: Instant,
}

impl Routing {
    /// Whether the cluster reported `node` up at the last refresh.
    fn is_up(&self, node: &NodeId) -> bool {
        self.up_address(node).is_some()
    }

    /// The address of `node`, if the cluster reported it up.
    fn up_address(&self, node: &NodeId) -> Option<NodeAddress> {
        self.addresses
            .iter()
            .find(|(id, _, up)| id == node && *up)
            .map(|(_, address, _)| address.clone())
    }
}

/// Latencies of recent answers, for the hedge delay.
struct Latencies {
    samples: VecDeque<Duration>,
    /// The p99 of `samples` within bounds, recomputed every [`HEDGE_RECOMPUTE`] samples
    /// rather than sorted on every request.
    hedge: Duration,
    since_recompute: usize,
}

/// Samples recorded between two recomputations of the hedge delay.
const HEDGE_RECOMPUTE: usize = 16;

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            samples: VecDeque::with_capacity(LATENCY_SAMPLES),
            hedge: DEFAULT_HEDGE,
            since_recompute: HEDGE_RECOMPUTE - 1,
        }
    }
}

impl Latencies {
    fn record(&mut self, latency: Duration) {
        if self.samples.len() == LATENCY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(latency);
        self.since_recompute += 1;
        if self.since_recompute >= HEDGE_RECOMPUTE {
            self.since_recompute = 0;
            let mut samples: Vec<Duration> = self.samples.iter().copied().collect();
            let rank = (samples.len() - 1) * 99 / 100;
            let (_, &mut p99, _) = samples.select_nth_unstable(rank);
            self.hedge = p99.clamp(MIN_HEDGE, MAX_HEDGE);
        }
    }

    /// The p99 of recent answers, within bounds.
    fn hedge_delay(&self) -> Duration {
        self.hedge
    }
}

/// Nodes that failed a request lately, each until when it is tried last.
#[derive(Debug, Default)]
struct Suspects(Mutex<HashMap<NodeAddress, Instant>>);

impl Suspects {
    fn suspect(&self, address: NodeAddress) {
        if let Ok(mut suspects) = self.0.lock() {
            suspects.insert(address, Instant::now() + SUSPECT_FOR);
        }
    }

    fn clear(&self, address: &NodeAddress) {
        if let Ok(mut suspects) = self.0.lock() {
            suspects.remove(address);
        }
    }

    /// What an attempt's outcome says of its node: a node that failed, or refused because it
    /// cannot reach enough replicas, is suspected (and a name it has is resolved again next
    /// time); one that answered is not, even with a refusal for now (`NotReady`).
    fn observe(
        &self,
        resolver: &Resolver,
        address: NodeAddress,
        result: &Result<Response, TransportError>,
    ) {
        match result {
            Ok(Response::Error(error)) if error.kind == ErrorKind::Unavailable => {
                self.suspect(address);
            }
            Ok(_) => self.clear(&address),
            // A node of an earlier version that does not know the request: it is fine.
            Err(TransportError::NotUnderstood { .. } | TransportError::Unsupported { .. }) => {}
            Err(_) => {
                resolver.forget(&address);
                self.suspect(address);
            }
        }
    }

    /// The nodes suspected now (expired suspicions are dropped).
    fn current(&self) -> Vec<NodeAddress> {
        let now = Instant::now();
        self.0.lock().map_or_else(
            |_| Vec::new(),
            |mut suspects| {
                suspects.retain(|_, until| *until > now);
                suspects.keys().cloned().collect()
            },
        )
    }
}

/// A connection to a cluster.
pub struct Client {
    endpoint: Endpoint,
    seeds: Vec<NodeAddress>,
    /// Host names of seeds and members, resolved when dialled.
    resolver: Arc<Resolver>,
    timeout: Duration,
    routing: Mutex<Option<Routing>>,
    latencies: Mutex<Latencies>,
    /// Nodes that failed a request lately, until when they are tried last: the cluster takes
    /// seconds to call a node down, and until then every request would wait on it again.
    suspects: Arc<Suspects>,
    /// Whether requests go to the key's replicas (client-driven coordination) or only to the
    /// seeds, which coordinate or forward them (server-driven; paper 6.4, Table 2).
    partition_aware: bool,
    /// Whether a partition-aware client reads R replicas' copies itself (see
    /// [`dynamo_quorum::CopyQuorum`]) rather than asking one replica to coordinate.
    copy_reads: bool,
    /// Latencies of copy reads (one hop), kept apart from those of coordinated requests (two
    /// hops), whose hedge delay they would shorten.
    copy_latencies: Mutex<Latencies>,
    /// Nodes that could not decode a copy read (an earlier version), until when they are not
    /// asked for copies.
    no_copies: Mutex<HashMap<NodeAddress, Instant>>,
    /// How reads ended, for [`Client::read_paths`].
    read_paths: ReadPathCounters,
}

impl Client {
    /// Sends every request to the seeds only, in order, and lets the node that answers
    /// coordinate or forward it: the paper's server-driven coordination (section 6.4), to
    /// compare with the default partition-aware routing.
    #[must_use]
    pub fn server_driven(mut self) -> Self {
        self.partition_aware = false;
        self
    }

    /// Sends every read to one replica of its key, which coordinates it, instead of reading
    /// R replicas' copies here (see [`dynamo_quorum::CopyQuorum`]); `dynamo bench --reads coordinated`
    /// compares the two.
    #[must_use]
    pub fn coordinated_reads(mut self) -> Self {
        self.copy_reads = false;
        self
    }

    /// A client that reaches the cluster through `seeds` (IP addresses or host names, each with
    /// its port), authenticated with `tls` (a client or node identity of the cluster CA).
    ///
    /// It binds the unspecified address on a port the system picks (a dual-stack IPv6 socket,
    /// or IPv4 where the system has no IPv6), so it reaches nodes on any host the routing table
    /// does. Call [`Client::close`] when done, so nodes free the connection at once instead of
    /// keeping it until their idle timeout.
    pub fn new<A: Into<NodeAddress>>(
        tls: &TlsConfig,
        seeds: impl IntoIterator<Item = A>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let seeds: Vec<NodeAddress> = seeds.into_iter().map(Into::into).collect();
        if seeds.is_empty() {
            return Err(ClientError::NoSeeds);
        }
        let options = TransportOptions {
            shutdown_timeout: CLOSE_DRAIN,
            ..TransportOptions::default()
        };
        let any_v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
        let any_v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
        let endpoint = Endpoint::bind(any_v6, tls, options.clone())
            .or_else(|_| Endpoint::bind(any_v4, tls, options))?;
        Ok(Self {
            endpoint,
            seeds,
            resolver: Arc::new(Resolver::default()),
            timeout,
            routing: Mutex::new(None),
            latencies: Mutex::new(Latencies::default()),
            suspects: Arc::default(),
            partition_aware: true,
            copy_reads: true,
            copy_latencies: Mutex::new(Latencies::default()),
            no_copies: Mutex::default(),
            read_paths: ReadPathCounters::default(),
        })
    }

    /// Reads a key: from R of its replicas' own copies when the client knows the key's
    /// replicas and its bucket's quorum (see [`dynamo_quorum::CopyQuorum`]), else, or when
    /// the copies differ or too few replicas answer in time, through a coordinator (which
    /// repairs stale replicas).
    pub async fn get(
        &self,
        bucket: &str,
        key: &[u8],
        options: RequestOptions,
    ) -> Result<GetOutcome, ClientError> {
        let counter = match self.read_copies(bucket, key, options).await {
            CopyRead::Answered(outcome) => {
                self.read_paths.from_copies.fetch_add(1, Ordering::Relaxed);
                return Ok(outcome);
            }
            CopyRead::Fallback(Fallback::Diverged) => &self.read_paths.copies_differed,
            CopyRead::Fallback(Fallback::TooFewCopies) => &self.read_paths.too_few_copies,
            CopyRead::NotTried => &self.read_paths.coordinated,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let request = Request::Get {
            bucket: bucket.into(),
            key: key.to_vec(),
            options,
        };
        match self.routed(bucket, key, &request).await? {
            Response::Get(reply) => Ok(GetOutcome::Found(reply)),
            Response::NotFound { context } => Ok(GetOutcome::NotFound { context }),
            other => Err(unexpected(other)),
        }
    }

    /// Writes a key; `context` is the token of the read this write follows (none for a blind
    /// write, which becomes a sibling of what is there).
    pub async fn put(
        &self,
        bucket: &str,
        key: &[u8],
        value: Vec<u8>,
        context: Option<String>,
        options: RequestOptions,
    ) -> Result<PutReply, ClientError> {
        self.write(bucket, key, Some(value), context, options).await
    }

    /// Deletes a key: a tombstone that supersedes what `context` saw. Without a context the key
    /// is read first and what that read saw is deleted (as Riak's clients do), so a delete that
    /// reports success never leaves the value readable beside its tombstone; a key that is not
    /// found is still deleted (with the read's context, which may name a tombstone).
    pub async fn delete(
        &self,
        bucket: &str,
        key: &[u8],
        context: Option<String>,
        options: RequestOptions,
    ) -> Result<PutReply, ClientError> {
        let context = match context {
            Some(context) => context,
            None => match self.get(bucket, key, options).await? {
                GetOutcome::Found(reply) => reply.context,
                GetOutcome::NotFound { context } => context,
            },
        };
        let context = (!context.is_empty()).then_some(context);
        self.write(bucket, key, None, context, options).await
    }

    async fn write(
        &self,
        bucket: &str,
        key: &[u8],
        value: Option<Vec<u8>>,
        context: Option<String>,
        options: RequestOptions,
    ) -> Result<PutReply, ClientError> {
        // One id for every attempt of this write: when a node times out and the next one is
        // asked, replicas recognise the retry as the same write.
        let request = Request::Put {
            bucket: bucket.into(),
            key: key.to_vec(),
            value,
            context,
            options,
            forwarded: false,
            write_id: new_write_id(),
        };
        match self.routed(bucket, key, &request).await? {
            Response::Put(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Creates or changes a bucket.
    pub async fn create_bucket(&self, props: BucketProps) -> Result<(), ClientError> {
        match self.request_any(&Request::CreateBucket(props)).await? {
            Response::Ack => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Lists the buckets.
    pub async fn list_buckets(&self) -> Result<Vec<BucketProps>, ClientError> {
        match self.request_any(&Request::ListBuckets).await? {
            Response::Buckets(buckets) => Ok(buckets),
            other => Err(unexpected(other)),
        }
    }

    /// The cluster as the first reachable seed sees it.
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        match self.request_any(&Request::Status).await? {
            Response::Status(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// The ring of the first reachable seed.
    pub async fn ring(&self) -> Result<Option<Ring>, ClientError> {
        match self.request_any(&Request::Ring).await? {
            Response::Ring(ring) => Ok(ring.map(|r| *r)),
            other => Err(unexpected(other)),
        }
    }

    /// Closes every connection of this client and waits (at most [`CLOSE_DRAIN`]) for the
    /// nodes to be told. Requests still out fail. A process that ends without it leaves each
    /// node holding its connection until the node's idle timeout.
    pub async fn close(&self) {
        self.endpoint.close().await;
    }

    /// The client's QUIC endpoint (cloning it keeps it open after the client is dropped, for
    /// example to close it later).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends any request to a given node.
    pub async fn request_to(
        &self,
        address: impl Into<NodeAddress>,
        request: &Request,
    ) -> Result<Response, ClientError> {
        let (_, _, response) = self.attempt(address.into(), request).await;
        match response.map_err(|error| ClientError::Unreachable(vec![error]))? {
            Response::Error(error) => Err(ClientError::Server(error)),
            other => Ok(other),
        }
    }

    /// Sends a request to the seeds (members known to be down last) until one answers; a
    /// request that is not safe to repeat goes to the next only when one failed.
    pub async fn request_any(&self, request: &Request) -> Result<Response, ClientError> {
        let candidates = self.ordered(self.seeds.clone());
        self.first_answer(candidates, request).await
    }

    /// Sends a key's request to the up members of its preference list (from the cached ring),
    /// then to the seeds.
    async fn routed(
        &self,
        bucket: &str,
        key: &[u8],
        request: &Request,
    ) -> Result<Response, ClientError> {
        self.refresh_if_stale().await;
        let mut candidates = self.preferred_addresses(bucket, key);
        for seed in &self.seeds {
            // A handful of addresses: a scan beats hashing them.
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let candidates = self.ordered(candidates);
        let outcome = self.first_answer(candidates, request).await;
        match &outcome {
            Err(ClientError::Unreachable(_)) => self.invalidate(),
            // Membership may have moved under the cached ring (a stale-ring answer): fetch it
            // again before the next request.
            Err(ClientError::Server(error))
                if matches!(
                    error.kind,
                    ErrorKind::NotReady | ErrorKind::Unavailable | ErrorKind::Timeout
                ) =>
            {
                self.invalidate();
            }
            _ => {}
        }
        outcome
    }

    /// Tries `candidates` in order until one answers (a node's error reply is an answer). A
    /// request that is safe to send twice also goes to the next candidate whenever the ones
    /// asked have not answered within the hedge delay. A write with a write id goes to the
    /// next candidate too when the ones asked have not answered within a third of the timeout
    /// (a coordinator cut off from the replicas answers only at its deadline; the next one
    /// can reach them): every attempt carries the same id, so replicas and readers see one
    /// write. A merge of versions (a join, the same whatever the repeats) does the same.
    /// Other requests move on only when their node failed.
    async fn first_answer(
        &self,
        candidates: Vec<NodeAddress>,
        request: &Request,
    ) -> Result<Response, ClientError> {
        let hedged = matches!(request.access(), dynamo_protocol::Access::Read)
            || matches!(request, Request::CreateBucket(_));
        let hedge = if hedged {
            Some(
                self.latencies
                    .lock()
                    .map_or(DEFAULT_HEDGE, |l| l.hedge_delay()),
            )
        } else if matches!(
            request,
            Request::Put {
                write_id: Some(_),
                ..
            } | Request::MergeVersions { .. }
        ) {
            Some(self.timeout / 3)
        } else {
            None
        };
        let mut pending = candidates.into_iter();
        let mut asked: JoinSet<Attempt> = JoinSet::new();
        let mut failures = Failures::default();
        // Most requests are answered by the first candidate within the hedge delay: ask it
        // here, and spawn tasks only once a second candidate must run beside it.
        if let Some(address) = pending.next() {
            let mut first = Box::pin(self.attempt(address.clone(), request));
            let answered = match hedge {
                Some(hedge) => tokio::time::timeout(hedge, &mut first).await.ok(),
                None => Some((&mut first).await),
            };
            if let Some(attempt) = answered {
                if let Some(outcome) = self.settle(attempt, hedged, &mut failures) {
                    return outcome;
                }
            } else {
                // The hedge delay passed: the first request goes on beside the next one. A
                // write's node that has not answered within a third of the timeout is asked
                // last from now on, until it answers (a read's hedge delay is a p99 that any
                // node passes now and then: that says nothing about the node).
                if !hedged {
                    self.suspect(address);
                }
                asked.spawn(first);
            }
            self.ask_next(&mut pending, &mut asked, request);
        }
        loop {
            if asked.is_empty() && !self.ask_next(&mut pending, &mut asked, request) {
                break;
            }
            tokio::select! {
                joined = asked.join_next() => match joined {
                    Some(Ok(attempt)) => {
                        if let Some(outcome) = self.settle(attempt, hedged, &mut failures) {
                            self.finish_in_background(asked);
                            return outcome;
                        }
                        self.ask_next(&mut pending, &mut asked, request);
                    }
                    Some(Err(join_error)) => {
                        return Err(ClientError::Unexpected(join_error.to_string()));
                    }
                    None => {}
                },
                () = tokio::time::sleep(hedge.unwrap_or_default()), if hedge.is_some() => {
                    self.ask_next(&mut pending, &mut asked, request);
                }
            }
        }
        match failures {
            // Every node that answered refused for now: that answer says most.
            Failures {
                refused: Some(refusal),
                ..
            } => Err(ClientError::Server(refusal)),
            Failures { unreachable, .. } if unreachable.is_empty() => Err(ClientError::NoSeeds),
            Failures { unreachable, .. } => Err(ClientError::Unreachable(unreachable)),
        }
    }

    /// Lets the attempts still out when another node answered run to their end, so that one
    /// that fails (a node that never answers: paused, or without power) still makes its node
    /// suspect. Otherwise a silent node would never be suspected: every request would be
    /// answered by the next node after the hedge delay, and the next request would wait on the
    /// silent one again. Bounded by twice the client's timeout in all.
    fn finish_in_background(&self, mut asked: JoinSet<Attempt>) {
        if asked.is_empty() {
            return;
        }
        let suspects = self.suspects.clone();
        let resolver = self.resolver.clone();
        // A name's resolution has no bound of its own: the whole drain has one.
        let bound = self.timeout * 2;
        tokio::spawn(async move {
            let drain = async {
                while let Some(joined) = asked.join_next().await {
                    if let Ok((address, _, result)) = joined {
                        suspects.observe(&resolver, address, &result);
                    }
                }
            };
            // Dropping `asked` at the bound cancels what is still out.
            let _ = tokio::time::timeout(bound, drain).await;
        });
    }

    /// Sends `request` to the next candidate in a task of its own; `false` when none is left.
    fn ask_next(
        &self,
        pending: &mut std::vec::IntoIter<NodeAddress>,
        asked: &mut JoinSet<Attempt>,
        request: &Request,
    ) -> bool {
        let Some(address) = pending.next() else {
            return false;
        };
        asked.spawn(self.attempt(address, request));
        true
    }

    /// One request to one node, as a task of its own can run it: its name resolved (again, if
    /// the last request to it failed), then the request within the client's timeout.
    fn attempt(
        &self,
        address: NodeAddress,
        request: &Request,
    ) -> impl Future<Output = Attempt> + Send + 'static {
        let endpoint = self.endpoint.clone();
        let request = request.clone();
        let timeout = self.timeout;
        let resolver = self.resolver.clone();
        async move {
            let started = Instant::now();
            let result = match resolver.resolve(&address).await {
                Ok(socket) => {
                    let since = request.since_version();
                    endpoint
                        .request_since::<Request, Response>(socket, &request, timeout, since)
                        .await
                }
                Err(error) => Err(TransportError::from(error)),
            };
            (address, started, result)
        }
    }

    /// The request's outcome once a node answered; `None` when the node failed (it is
    /// suspected, and the failure kept for the error) or refused the request for now, and
    /// another should be asked. A refusal is "not ready" (no ring yet, or its ring says another
    /// node must take it; nothing was done) or "unavailable" (it cannot reach enough replicas:
    /// a node cut off from the others, whose failure detector has marked them down; it is
    /// suspected too, so it is asked last, and its view of the cluster is not the one the
    /// client routes by). A write asked again elsewhere carries the same write id.
    fn settle(
        &self,
        (address, started, result): Attempt,
        hedged: bool,
        failures: &mut Failures,
    ) -> Option<Result<Response, ClientError>> {
        self.suspects
            .observe(&self.resolver, address.clone(), &result);
        match result {
            Ok(Response::Error(error)) if error.kind == ErrorKind::NotReady => {
                failures.refused = Some(error);
                None
            }
            Ok(Response::Error(error)) if error.kind == ErrorKind::Unavailable => {
                // Its ring and members may be what routed us here: fetch them again, from a
                // node not suspected.
                self.invalidate();
                failures.refused = Some(error);
                None
            }
            Ok(response) => {
                // Only hedged requests set the hedge delay: a write's latency includes its
                // quorum and says nothing about a slow read.
                if hedged && let Ok(mut latencies) = self.latencies.lock() {
                    latencies.record(started.elapsed());
                }
                Some(match response {
                    Response::Error(error) => Err(ClientError::Server(error)),
                    other => Ok(other),
                })
            }
            Err(error) => {
                failures.unreachable.push(error);
                None
            }
        }
    }

    /// `addresses` reordered: members that answer first, then those that failed a request in
    /// the last [`SUSPECT_FOR`], then those the cluster reports down (the given order is kept
    /// within each group).
    fn ordered(&self, mut addresses: Vec<NodeAddress>) -> Vec<NodeAddress> {
        let suspects = self.suspects.current();
        let Ok(routing) = self.routing.lock() else {
            return addresses;
        };
        let down = |address: &NodeAddress| {
            routing.as_ref().is_some_and(|routing| {
                routing
                    .addresses
                    .iter()
                    .any(|(_, a, up)| a == address && !*up)
            })
        };
        addresses.sort_by_cached_key(|address| (down(address), suspects.contains(address)));
        addresses
    }

    fn suspect(&self, address: NodeAddress) {
        self.suspects.suspect(address);
    }

    /// The addresses of the up members of the key's preference list, in order.
    fn preferred_addresses(&self, bucket: &str, key: &[u8]) -> Vec<NodeAddress> {
        if !self.partition_aware {
            return Vec::new();
        }
        let Ok(routing) = self.routing.lock() else {
            return Vec::new();
        };
        let Some(routing) = routing.as_ref() else {
            return Vec::new();
        };
        let skey = storage_key(bucket, key);
        routing
            .ring
            .preference_list(&skey, routing.ring.target_n())
            .into_iter()
            .filter_map(|node| routing.up_address(node))
            .collect()
    }

    /// Drops the cached ring and buckets if they were fetched `min_age` ago or more: a
    /// node that answers from an older ring would otherwise make every read of its keys
    /// fetch them again.
    fn invalidate_after(&self, min_age: Duration) {
        if let Ok(mut routing) = self.routing.lock()
            && routing
                .as_ref()
                .is_some_and(|r| r.fetched.elapsed() >= min_age)
        {
            *routing = None;
        }
    }

    fn invalidate(&self) {
        if let Ok(mut routing) = self.routing.lock() {
            *routing = None;
        }
    }

    async fn refresh_if_stale(&self) {
        let fresh = self
            .routing
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.fetched.elapsed() < RING_REFRESH))
            .unwrap_or(false);
        if fresh {
            return;
        }
        let (ring, status, buckets) = tokio::join!(self.ring(), self.status(), self.list_buckets());
        let (Ok(Some(ring)), Ok(status)) = (ring, status) else {
            return;
        };
        // Without the buckets, reads go through coordinators until the next refresh.
        let buckets = buckets
            .unwrap_or_default()
            .into_iter()
            .map(|props| (props.name.clone(), props))
            .collect();
        let addresses = status
            .members
            .iter()
            .filter_map(|m| Some((NodeId::from(m.id.as_str()), m.address.parse().ok()?, m.up)))
            .collect();
        if let Ok(mut routing) = self.routing.lock() {
            *routing = Some(Routing {
                ring,
                addresses,
                buckets,
                fetched: Instant::now(),
            });
        }
    }
}

fn unexpected(response: Response) -> ClientError {
    match response {
        Response::Error(error) => ClientError::Server(error),
        other => ClientError::Unexpected(format!("{other:?}")),
    }
}
