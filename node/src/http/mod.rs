//! The node's HTTP API: HTTP/1.1 and HTTP/2 over TLS, on a listen address of its own.
//!
//! Clients authenticate exactly as on QUIC: the TLS handshake requires a certificate issued by
//! the cluster CA, and the role written in it decides what the client may do (the core checks
//! every request, see the `gate` module). `curl --cacert ca.pem --cert NAME.client.pem --key
//! NAME.client.key --resolve node.dynamo:PORT:127.0.0.1 https://node.dynamo:PORT/...` works;
//! the server's certificate carries the name `node.dynamo`, not an address.
//!
//! What a client can make the node hold is bounded ([`HttpLimits`]): connections, the time a
//! handshake or a request's headers may take, HTTP/2 streams per connection, body bytes, keys
//! per batch and the length of a watch.
//!
//! [`api`] maps the endpoints to requests; `page` renders the status page. This module must
//! not know what a request means: every decision is the core's, reached through the gate.

pub mod api;
mod batch;
mod cluster;
mod listing;
pub mod openapi;
mod page;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dynamo_quorum::Value;
use dynamo_storage::FjallStore;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::gate::Gate;
use dynamo_client::tls::{PeerIdentity, TlsConfig};
use dynamo_client::transport::Endpoint;

/// What HTTP clients may make a node hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Authenticated connections open at once; more are closed at once.
    pub max_connections: usize,
    /// TLS handshakes in progress at once (connections not authenticated yet).
    pub max_handshakes: usize,
    /// TLS handshakes in progress from one source address.
    pub max_handshakes_per_address: usize,
    /// Time a client has for its TLS handshake, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Time a client has to send a request's headers (HTTP/1.1), in milliseconds.
    pub header_timeout_ms: u64,
    /// HTTP/2 streams one connection may have open.
    pub max_streams_per_connection: u32,
    /// Largest request body, in bytes (a value, or a batch).
    pub max_body_bytes: usize,
    /// Bytes of request bodies all clients together may make the node hold at once (a body is
    /// reserved before it is read); at least `max_body_bytes`.
    pub max_body_bytes_in_flight: usize,
    /// Bytes of request bodies one certificate identity may make the node hold at once.
    pub max_body_bytes_per_identity: usize,
    /// Time a client has to send a request's whole body, in milliseconds.
    pub body_timeout_ms: u64,
    /// Connections one certificate identity may hold open.
    pub max_connections_per_identity: usize,
    /// Most keys in one batch get or put.
    pub max_batch_keys: usize,
    /// Longest a watch may wait, in milliseconds.
    pub max_watch_ms: u64,
    /// Watches waiting at once; more are answered "overloaded".
    pub max_watches: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_handshakes: 64,
            max_handshakes_per_address: 16,
            handshake_timeout_ms: 10_000,
            header_timeout_ms: 10_000,
            max_streams_per_connection: 64,
            max_body_bytes: 16 * 1024 * 1024,
            max_body_bytes_in_flight: 128 * 1024 * 1024,
            max_body_bytes_per_identity: 32 * 1024 * 1024,
            body_timeout_ms: 30_000,
            max_connections_per_identity: 32,
            max_batch_keys: 100,
            max_watch_ms: 60_000,
            max_watches: 1024,
        }
    }
}

/// What the HTTP API serves from.
pub(crate) struct HttpContext {
    /// The node's id.
    pub(crate) node: String,
    /// The way into the core.
    pub(crate) gate: Gate,
    /// The store, for its size.
    pub(crate) store: Arc<FjallStore<Value>>,
    /// The QUIC endpoint, for its connection count.
    pub(crate) endpoint: Endpoint,
    /// Largest value accepted.
    pub(crate) max_value_bytes: usize,
    /// The limits.
    pub(crate) limits: HttpLimits,
}

/// A running HTTP API server. It stops with [`HttpServer::shutdown`] or when dropped.
#[derive(Debug)]
pub struct HttpServer {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpServer {
    /// Binds `listen` and serves the API there.
    pub(crate) async fn bind(
        listen: SocketAddr,
        tls: &TlsConfig,
        context: HttpContext,
    ) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.https_server_config());
        let connections = Arc::new(AtomicUsize::new(0));
        let limits = context.limits.clone();
        let app = api::router(Arc::new(api::Api::new(context, connections.clone())));
        let task = tokio::spawn(accept_loop(listener, acceptor, app, limits, connections));
        Ok(HttpServer { address, task })
    }

    /// The address the API listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

/// Accepts connections until aborted; aborting it drops (and so closes) every connection task.
async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    limits: HttpLimits,
    open: Arc<AtomicUsize>,
) {
    let limits = Arc::new(limits);
    let guards = Arc::new(Guards {
        handshakes: Arc::new(Semaphore::new(limits.max_handshakes.max(1))),
        handshakes_by_address: Counts::default(),
        connections: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        connections_by_identity: Counts::default(),
    });
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(%error, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Responses go out as several small writes (TLS records, headers, body): with Nagle's
        // algorithm a later one waits for the client's delayed acknowledgement of an earlier
        // one, 40 ms (issue 28: HTTP p99.9 of 42-47 ms at one request in flight).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
        }
        let Ok(handshake) = guards.handshakes.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "HTTP connection refused: as many handshakes as allowed");
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let limits = limits.clone();
        let open = open.clone();
        let guards = guards.clone();
        connections.spawn(async move {
            let Some(by_address) =
                guards
                    .handshakes_by_address
                    .enter(&peer.ip(), 1, limits.max_handshakes_per_address)
            else {
                tracing::debug!(%peer, "HTTP connection refused: its address has as many handshakes as allowed");
                return;
            };
            let Some(tls) = handshake_of(tcp, peer, &acceptor, &limits).await else {
                return;
            };
            drop((by_address, handshake));
            serve_connection(tls, peer, app, &limits, &guards, &open).await;
        });
    }
}

/// What bounds connections: handshakes in progress (in all and per source address), then
/// authenticated connections (in all and per identity).
struct Guards {
    handshakes: Arc<Semaphore>,
    handshakes_by_address: Counts<std::net::IpAddr>,
    connections: Arc<Semaphore>,
    connections_by_identity: IdentityCounts,
}

/// The TLS handshake, within `handshake_timeout_ms`.
async fn handshake_of(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    limits: &HttpLimits,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let handshake = Duration::from_millis(limits.handshake_timeout_ms);
    match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "HTTP TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP TLS handshake timed out");
            None
        }
    }
}

/// What each holder (a certificate identity, a source address) holds of something counted:
/// connections, handshakes, body bytes.
#[derive(Debug)]
pub(crate) struct Counts<K: std::hash::Hash + Eq + Clone>(
    std::sync::Mutex<std::collections::HashMap<K, usize>>,
);

/// Counts by certificate identity.
pub(crate) type IdentityCounts = Counts<PeerIdentity>;

impl<K: std::hash::Hash + Eq + Clone> Default for Counts<K> {
    fn default() -> Self {
        Self(std::sync::Mutex::new(std::collections::HashMap::new()))
    }
}

/// `amount` counted for one holder; it leaves the count when dropped.
pub(crate) struct Counted<'a, K: std::hash::Hash + Eq + Clone> {
    counts: &'a Counts<K>,
    holder: K,
    amount: usize,
}

impl<K: std::hash::Hash + Eq + Clone> Counts<K> {
    /// Counts `amount` for `holder`, unless that would take it past `max`.
    pub(crate) fn enter(&self, holder: &K, amount: usize, max: usize) -> Option<Counted<'_, K>> {
        let mut counts = self.0.lock().ok()?;
        let count = counts.entry(holder.clone()).or_default();
        if *count + amount > max.max(amount).max(1) {
            return None;
        }
        *count += amount;
        Some(Counted {
            counts: self,
            holder: holder.clone(),
            amount,
        })
    }
}

impl<K: std::hash::Hash + Eq + Clone> Drop for Counted<'_, K> {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.0.lock()
            && let Some(count) = counts.get_mut(&self.holder)
        {
            *count = count.saturating_sub(self.amount);
            if *count == 0 {
                counts.remove(&self.holder);
            }
        }
    }
}

/// One authenticated connection: the caller's identity, its connection slots, then HTTP/1.1 or
/// HTTP/2 until it closes.
async fn serve_connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
    app: axum::Router,
    limits: &HttpLimits,
    guards: &Guards,
    open: &AtomicUsize,
) {
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .map(dynamo_client::tls::peer_identity);
    let identity = match identity {
        Some(Ok(identity)) => identity,
        Some(Err(error)) => {
            tracing::debug!(%peer, %error, "HTTP client certificate names no identity");
            return;
        }
        None => return, // the verifier requires a certificate; never reached
    };
    let Ok(_slot) = guards.connections.clone().try_acquire_owned() else {
        tracing::debug!(%peer, "HTTP connection refused: at the connection limit");
        return;
    };
    let Some(_counted) =
        guards
            .connections_by_identity
            .enter(&identity, 1, limits.max_connections_per_identity)
    else {
        tracing::debug!(%peer, %identity, "HTTP connection refused: the identity holds as many as it may");
        return;
    };
    open.fetch_add(1, Ordering::Relaxed);
    let app = app.layer(axum::Extension(identity));
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        // Find peers that went away without closing.
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    if let Err(error) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, %error, "HTTP connection ended with an error");
    }
    open.fetch_sub(1, Ordering::Relaxed);
}
