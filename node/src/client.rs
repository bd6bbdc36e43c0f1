//! The client library: partition-aware routing (paper section 6.4, client-driven coordination).
//!
//! A [`Client`] keeps the ring and the members' addresses, refreshed every 10 seconds and
//! whenever a node is unreachable or answers that replicas are unavailable or it has no ring
//! (signs that membership moved), and sends each request straight to a member of the key's
//! preference list, so most requests skip the forwarding hop. Any node still accepts any
//! request, so a stale ring costs a hop, never a wrong answer.
//!
//! This module must not know how nodes coordinate; it only picks where to send.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dynamo_ring::{NodeId, Ring};

use crate::protocol::{
    BucketProps, ClusterStatus, ErrorKind, ErrorReply, GetReply, PutReply, Request, RequestOptions,
    Response, storage_key,
};
use crate::tls::TlsConfig;
use crate::transport::{Endpoint, TransportError, TransportOptions};

/// How often the client refreshes its ring.
const RING_REFRESH: Duration = Duration::from_secs(10);

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node could be reached.
    #[error("no node answered: {0}")]
    Transport(#[from] TransportError),
    /// The node answered with an error.
    #[error("{}", .0.message)]
    Server(ErrorReply),
    /// The node answered something this client does not expect.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The client was given no node to talk to.
    #[error("no seed address given")]
    NoSeeds,
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

struct Routing {
    ring: Ring,
    addresses: Vec<(NodeId, SocketAddr, bool)>,
    fetched: Instant,
}

/// A connection to a cluster.
pub struct Client {
    endpoint: Endpoint,
    seeds: Vec<SocketAddr>,
    timeout: Duration,
    routing: Mutex<Option<Routing>>,
}

impl Client {
    /// A client that reaches the cluster through `seeds`, authenticated with `tls` (a client or
    /// node identity of the cluster CA).
    pub fn new(
        tls: &TlsConfig,
        seeds: Vec<SocketAddr>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let first = seeds.first().ok_or(ClientError::NoSeeds)?;
        let bind: SocketAddr = if first.is_ipv6() {
            "[::1]:0".parse().map_err(|_| ClientError::NoSeeds)?
        } else {
            "127.0.0.1:0".parse().map_err(|_| ClientError::NoSeeds)?
        };
        let endpoint = Endpoint::bind(bind, tls, TransportOptions::default())?;
        Ok(Self {
            endpoint,
            seeds,
            timeout,
            routing: Mutex::new(None),
        })
    }

    /// Reads a key.
    pub async fn get(
        &self,
        bucket: &str,
        key: &[u8],
        options: RequestOptions,
    ) -> Result<GetOutcome, ClientError> {
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
        let request = Request::Put {
            bucket: bucket.into(),
            key: key.to_vec(),
            value,
            context,
            options,
            forwarded: false,
        };
        match self.routed(bucket, key, &request).await? {
            Response::Put(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Creates or changes a bucket.
    pub async fn create_bucket(&self, props: BucketProps) -> Result<(), ClientError> {
        match self.any(&Request::CreateBucket(props)).await? {
            Response::Ack => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Lists the buckets.
    pub async fn list_buckets(&self) -> Result<Vec<BucketProps>, ClientError> {
        match self.any(&Request::ListBuckets).await? {
            Response::Buckets(buckets) => Ok(buckets),
            other => Err(unexpected(other)),
        }
    }

    /// The cluster as the first reachable seed sees it.
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        match self.any(&Request::Status).await? {
            Response::Status(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// The ring of the first reachable seed.
    pub async fn ring(&self) -> Result<Option<Ring>, ClientError> {
        match self.any(&Request::Ring).await? {
            Response::Ring(ring) => Ok(ring.map(|r| *r)),
            other => Err(unexpected(other)),
        }
    }

    /// Sends any request to a given node.
    pub async fn request_to(
        &self,
        address: SocketAddr,
        request: &Request,
    ) -> Result<Response, ClientError> {
        let response = self
            .endpoint
            .request(address, request, self.timeout)
            .await?;
        match response {
            Response::Error(error) => Err(ClientError::Server(error)),
            other => Ok(other),
        }
    }

    /// Sends a request to the first seed that answers.
    async fn any(&self, request: &Request) -> Result<Response, ClientError> {
        let mut last = None;
        for &seed in &self.seeds {
            match self.request_to(seed, request).await {
                Err(ClientError::Transport(error)) => last = Some(error),
                outcome => return outcome,
            }
        }
        Err(last.map_or(ClientError::NoSeeds, ClientError::Transport))
    }

    /// Sends a key's request to the first up member of its preference list (from the cached
    /// ring), falling back to the seeds.
    async fn routed(
        &self,
        bucket: &str,
        key: &[u8],
        request: &Request,
    ) -> Result<Response, ClientError> {
        self.refresh_if_stale().await;
        let preferred = self.preferred_address(bucket, key);
        if let Some(address) = preferred {
            match self.request_to(address, request).await {
                Err(ClientError::Transport(_)) => self.invalidate(),
                Err(ClientError::Server(error)) => {
                    // Membership may have moved under the cached ring (a stale-ring answer):
                    // fetch it again before the next request.
                    if matches!(
                        error.kind,
                        ErrorKind::NotReady | ErrorKind::Unavailable | ErrorKind::Timeout
                    ) {
                        self.invalidate();
                    }
                    return Err(ClientError::Server(error));
                }
                outcome => return outcome,
            }
        }
        self.any(request).await
    }

    fn preferred_address(&self, bucket: &str, key: &[u8]) -> Option<SocketAddr> {
        let routing = self.routing.lock().ok()?;
        let routing = routing.as_ref()?;
        let skey = storage_key(bucket, key);
        routing
            .ring
            .preference_list(&skey, routing.ring.target_n())
            .into_iter()
            .find_map(|node| {
                routing
                    .addresses
                    .iter()
                    .find(|(id, _, up)| id == node && *up)
                    .map(|(_, address, _)| *address)
            })
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
        let (Ok(Some(ring)), Ok(status)) = (self.ring().await, self.status().await) else {
            return;
        };
        let addresses = status
            .members
            .iter()
            .filter_map(|m| Some((NodeId::from(m.id.as_str()), m.address.parse().ok()?, m.up)))
            .collect();
        if let Ok(mut routing) = self.routing.lock() {
            *routing = Some(Routing {
                ring,
                addresses,
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
