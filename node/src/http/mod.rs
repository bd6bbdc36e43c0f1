//! The node's HTTP API: HTTP/1.1 and HTTP/2 over TLS, on a listen address of its own.
//!
//! Clients authenticate exactly as on QUIC: the TLS handshake requires a certificate issued by
//! the cluster CA, and the role written in it decides what the client may do (the core checks
//! every request, see [`crate::gate`]). `curl --cacert ca.pem --cert NAME.client.pem --key
//! NAME.client.key --resolve node.dynamo:PORT:127.0.0.1 https://node.dynamo:PORT/...` works;
//! the server's certificate carries the name `node.dynamo`, not an address.
//!
//! What a client can make the node hold is bounded ([`HttpLimits`]): connections, the time a
//! handshake or a request's headers may take, HTTP/2 streams per connection, body bytes, keys
//! per batch and the length of a watch.
//!
//! [`api`] maps the endpoints to requests; [`page`] renders the status page. This module must
//! not know what a request means: every decision is the core's, reached through the gate.

pub mod api;
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
use crate::tls::{PeerIdentity, TlsConfig};
use crate::transport::Endpoint;

/// What HTTP clients may make a node hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Connections open at once; more are closed at once.
    pub max_connections: usize,
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
            handshake_timeout_ms: 10_000,
            header_timeout_ms: 10_000,
            max_streams_per_connection: 64,
            max_body_bytes: 16 * 1024 * 1024,
            max_body_bytes_in_flight: 128 * 1024 * 1024,
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
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_identity = Arc::new(IdentityCounts::default());
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "HTTP connection refused: at the connection limit");
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let limits = limits.clone();
        let open = open.clone();
        let per_identity = per_identity.clone();
        connections.spawn(async move {
            let _slot = slot;
            open.fetch_add(1, Ordering::Relaxed);
            serve_connection(tcp, peer, acceptor, app, &limits, &per_identity).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Connections open per certificate identity.
#[derive(Debug, Default)]
struct IdentityCounts(std::sync::Mutex<std::collections::HashMap<PeerIdentity, usize>>);

/// One counted connection; it leaves the count when dropped.
struct Counted<'a> {
    counts: &'a IdentityCounts,
    identity: PeerIdentity,
}

impl IdentityCounts {
    /// Counts a connection of `identity`, unless it holds `max` already.
    fn enter(&self, identity: &PeerIdentity, max: usize) -> Option<Counted<'_>> {
        let mut counts = self.0.lock().ok()?;
        let count = counts.entry(identity.clone()).or_default();
        if *count >= max.max(1) {
            return None;
        }
        *count += 1;
        Some(Counted {
            counts: self,
            identity: identity.clone(),
        })
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.0.lock()
            && let Some(count) = counts.get_mut(&self.identity)
        {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.identity);
            }
        }
    }
}

/// One connection: the TLS handshake, the caller's identity, then HTTP/1.1 or HTTP/2.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    limits: &HttpLimits,
    per_identity: &Arc<IdentityCounts>,
) {
    let handshake = Duration::from_millis(limits.handshake_timeout_ms);
    let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "HTTP TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP TLS handshake timed out");
            return;
        }
    };
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .map(PeerIdentity::from_certificate);
    let identity = match identity {
        Some(Ok(identity)) => identity,
        Some(Err(error)) => {
            tracing::debug!(%peer, %error, "HTTP client certificate names no identity");
            return;
        }
        None => return, // the verifier requires a certificate; never reached
    };
    let Some(_counted) = per_identity.enter(&identity, limits.max_connections_per_identity) else {
        tracing::debug!(%peer, %identity, "HTTP connection refused: the identity holds as many as it may");
        return;
    };
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
        .max_concurrent_streams(limits.max_streams_per_connection);
    if let Err(error) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, %error, "HTTP connection ended with an error");
    }
}
