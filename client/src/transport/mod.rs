//! Typed request/response exchange between mutually authenticated peers over QUIC.
//!
//! One [`Endpoint`] per process owns one UDP socket and acts as server and client at once. A
//! request is one bidirectional QUIC stream carrying exactly one request frame and one response
//! frame. A frame is a big-endian `u32` length followed by that many bytes of a postcard-encoded
//! value; lengths above [`TransportOptions::max_frame_bytes`] are refused before anything is
//! allocated. The dialing side keeps one cached connection per peer address and reconnects
//! transparently when it has closed; every request is bounded by the caller's timeout. Because a
//! node dials from the same socket it listens on, a node also adopts a connection another node
//! dialed to it as its own connection to that node, and serves requests on connections it dialed:
//! two nodes that talk both ways share one connection.
//!
//! The serving side only sees peers the TLS handshake has already authenticated against the
//! cluster CA (see [`crate::tls`]). A malformed, oversized or too-slow request resets *that
//! stream* with one of the `STREAM_*` error codes; it never closes the connection, the accept
//! loop or the node.
//!
//! What a peer can make the endpoint hold is bounded ([`TransportLimits`]): connections in total
//! and per identity, request streams per connection, bytes QUIC buffers per connection (its flow
//! control window), and bytes of partly received request frames per identity and, for every
//! identity but nodes, in total. A frame's payload is read only once its length fits the
//! budget; until then its bytes stay with the sender, held back by QUIC flow control. Warnings
//! about misbehaving peers are rate-limited.
//!
//! This module must NOT know what the requests mean: no gets, puts, gossip, hinted handoff or
//! anti-entropy. It moves typed frames between authenticated peers and says who the peer is.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::tls::{NODE_SERVER_NAME, PeerIdentity, Role, TlsConfig, TlsError};

mod frame;
mod serving;

use dynamo_protocol::{OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION, encode_frame, version_of_alpn};
use frame::{encode_error, read_frame, write_error};
use serving::{
    Admission, Cached, Inner, Slot, StreamServer, WarningWindow, accept_connection, serve_streams,
};

/// Default largest frame payload accepted or sent, in bytes (8 MiB).
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// Stream reset code: the request frame did not decode.
pub const STREAM_MALFORMED: u32 = 1;
/// Stream reset code: the frame length is over the limit.
pub const STREAM_TOO_LARGE: u32 = 2;
/// Stream reset code: the request did not arrive within the server's read timeout.
pub const STREAM_READ_TIMEOUT: u32 = 3;
/// Stream reset code: the stream ended before a whole frame arrived.
pub const STREAM_TRUNCATED: u32 = 4;
/// Stream reset code: the server could not encode its response within the frame limit.
pub const STREAM_RESPONSE_FAILED: u32 = 5;

/// Connection close code: orderly shutdown.
pub const CLOSE_SHUTDOWN: u32 = 0;
/// Connection close code: the peer certificate carries no dynamo identity.
pub const CLOSE_NO_IDENTITY: u32 = 1;
/// Connection close code: the peer's identity already has as many connections as allowed, and
/// each of them has a request in progress.
pub const CLOSE_TOO_MANY_CONNECTIONS: u32 = 2;
/// Connection close code: the peer's identity was at its connection limit and opened another;
/// this one, its least recently used idle connection, made room for it.
pub const CLOSE_REPLACED: u32 = 3;

/// Connection close code: a request on this connection timed out and nothing at all came back
/// from the peer meanwhile (see [`close_if_silent`]).
pub const CLOSE_SILENT: u32 = 4;

/// QUIC idle timeout: a connection with no traffic (not even keep-alives) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// QUIC keep-alive interval, well below [`IDLE_TIMEOUT`], so idle peer connections stay open.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// At most this many warnings about misbehaving peers are logged per [`WARNING_WINDOW`]; the
/// rest are counted and reported as one line.
const WARNINGS_PER_WINDOW: u32 = 10;
const WARNING_WINDOW: Duration = Duration::from_secs(10);

/// Tunables of an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// Largest frame payload accepted or sent, in bytes (at most `u32::MAX`).
    pub max_frame_bytes: usize,
    /// How long the server waits for a whole request frame on a new stream, including the wait
    /// for frame budget.
    pub read_timeout: Duration,
    /// How long [`Endpoint::close`] waits for connections to drain.
    pub shutdown_timeout: Duration,
    /// How long a dial may take (within a request's own timeout): a node that does not finish
    /// the handshake by then is unreachable, and the caller can try another at once.
    pub connect_timeout: Duration,
    /// What peers may make this endpoint hold.
    pub limits: TransportLimits,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            max_frame_bytes: MAX_FRAME_BYTES,
            read_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            limits: TransportLimits::default(),
        }
    }
}

/// Bounds on the connections, streams and buffered bytes peers can make a serving endpoint
/// hold. "Node" limits apply to peers with a node certificate, "client" limits to every other
/// role. With the defaults, one client identity can make a node hold at most about
/// `max_connections_per_identity * client_receive_window + client_frame_bytes_per_identity`
/// (64 MiB + 16 MiB) of request bytes, and all clients together at most
/// `max_connections * client_receive_window + client_frame_bytes` of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportLimits {
    /// Connections accepted at once, from everyone; further handshakes are refused.
    pub max_connections: usize,
    /// Connections accepted at once from one identity (one certificate name and role). A new
    /// connection past it replaces the identity's least recently used idle connection (one
    /// with no request in progress), which is closed with [`CLOSE_REPLACED`]; only when every
    /// one of them is busy is the new one refused. A client that exits or dies without closing
    /// its connection so never locks its identity out, and the bound still holds.
    pub max_connections_per_identity: usize,
    /// Request streams a node peer may have open on one connection.
    pub node_streams_per_connection: u32,
    /// Request streams a client may have open on one connection; more wait for one to end.
    pub client_streams_per_connection: u32,
    /// Bytes a node peer may have in flight to us on one connection (QUIC flow control).
    pub node_receive_window: u32,
    /// Bytes a client may have in flight to us on one connection (QUIC flow control).
    pub client_receive_window: u32,
    /// Bytes of partly received request frames held for one node peer.
    pub node_frame_bytes_per_identity: usize,
    /// Bytes of partly received request frames held for one client identity.
    pub client_frame_bytes_per_identity: usize,
    /// Bytes of partly received request frames held for all clients together.
    pub client_frame_bytes: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        const MIB: u32 = 1024 * 1024;
        TransportLimits {
            max_connections: 1024,
            max_connections_per_identity: 64,
            node_streams_per_connection: 1024,
            client_streams_per_connection: 64,
            node_receive_window: 16 * MIB,
            client_receive_window: MIB,
            node_frame_bytes_per_identity: 64 * MIB as usize,
            client_frame_bytes_per_identity: 16 * MIB as usize,
            client_frame_bytes: 128 * MIB as usize,
        }
    }
}

impl TransportLimits {
    /// The transport settings for connections where the peer is (or will be treated as) a
    /// client until its certificate says otherwise, and for connections we dial to nodes.
    fn transport_config(&self, peer_is_node: bool) -> quinn::TransportConfig {
        let (streams, window) = if peer_is_node {
            (self.node_streams_per_connection, self.node_receive_window)
        } else {
            (
                self.client_streams_per_connection,
                self.client_receive_window,
            )
        };
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
                IDLE_TIMEOUT.as_millis() as u32,
            ))))
            .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(streams))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
            .receive_window(quinn::VarInt::from_u32(window))
            .stream_receive_window(quinn::VarInt::from_u32(window.min(2 * 1024 * 1024)));
        transport
    }
}

/// The protocol version `connection` agreed on by ALPN (see `dynamo_protocol`'s versions): the
/// oldest for a peer that named none this build knows.
pub(crate) fn protocol_version(connection: &quinn::Connection) -> u32 {
    connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol.as_deref().and_then(version_of_alpn))
        .unwrap_or(OLDEST_PROTOCOL_VERSION)
}

/// Refuses a request that protocol version `since` added on a `connection` that agreed on an
/// earlier one: nothing is sent.
fn check_version(
    peer: SocketAddr,
    connection: &quinn::Connection,
    since: u32,
) -> Result<(), TransportError> {
    let speaks = protocol_version(connection);
    if speaks < since {
        return Err(TransportError::Unsupported {
            peer,
            speaks,
            needs: since,
        });
    }
    Ok(())
}

/// What a failed handshake says, with what to do when the two sides share no protocol version.
fn describe_connect_error(error: &quinn::ConnectionError) -> String {
    // TLS alert 120 (no_application_protocol): no ALPN name in common.
    let no_common_version =
        |code: quinn::TransportErrorCode| code == quinn::TransportErrorCode::crypto(120);
    let versionless = match error {
        quinn::ConnectionError::ConnectionClosed(close) => no_common_version(close.error_code),
        quinn::ConnectionError::TransportError(error) => no_common_version(error.code),
        _ => false,
    };
    if versionless {
        format!(
            "{error}: the two sides have no protocol version in common (this build speaks versions {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}); upgrade the older side, one release at a time"
        )
    } else {
        error.to_string()
    }
}

/// Errors seen by the requesting side (the serving side only logs).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The UDP socket could not be opened.
    #[error("cannot bind QUIC endpoint on {addr}: {source}")]
    Bind {
        /// The requested local address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No connection to the peer could be established (unreachable, or the TLS handshake failed:
    /// check that both sides use certificates from the same cluster CA).
    #[error("cannot connect to {peer}: {reason}")]
    Connect {
        /// The peer address.
        peer: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The request did not complete within its timeout.
    #[error("request to {peer} timed out after {timeout:?}")]
    Timeout {
        /// The peer address.
        peer: SocketAddr,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// A frame was larger than the limit (raise `max_frame_bytes` on both sides, or send less).
    #[error("frame of {len} bytes to/from {peer} exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The peer address.
        peer: SocketAddr,
        /// The frame length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The peer's response did not decode as the expected type (version mismatch?).
    #[error("cannot decode response from {peer}: {reason}")]
    Decode {
        /// The peer address.
        peer: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The request could not be encoded.
    #[error("cannot encode request for {peer}: {source}")]
    Encode {
        /// The peer address.
        peer: SocketAddr,
        /// The underlying error.
        source: postcard::Error,
    },
    /// The peer could not decode our request (it reset the stream with [`STREAM_MALFORMED`]):
    /// most likely it runs an earlier version that does not know this kind of request. The
    /// connection is fine, and so is the peer for the requests it knows.
    #[error("{peer} could not decode our request; it may run an earlier version of dynamo")]
    NotUnderstood {
        /// The peer address.
        peer: SocketAddr,
    },
    /// The peer speaks an earlier protocol version than the request needs (see
    /// [`Endpoint::request_since`]); nothing was sent.
    #[error("{peer} speaks protocol version {speaks}; this request needs version {needs}")]
    Unsupported {
        /// The peer address.
        peer: SocketAddr,
        /// The version the connection agreed on.
        speaks: u32,
        /// The version that added the request.
        needs: u32,
    },
    /// The connection or stream closed before the response arrived. This includes a peer that
    /// refused our certificate: with TLS 1.3 the dialer's side of the handshake completes before
    /// the acceptor has checked the dialer's certificate, so the refusal arrives as a close
    /// ("the cryptographic handshake failed ... `UnknownIssuer`" / "... 116" for a missing one).
    #[error("connection or stream to {peer} closed: {reason}")]
    Closed {
        /// The peer address.
        peer: SocketAddr,
        /// What closed it.
        reason: String,
    },
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The peer's host name did not resolve.
    #[error(transparent)]
    Resolve(#[from] crate::address::ResolveError),
}

/// A QUIC endpoint: serves requests from authenticated peers and sends requests to them.
/// Cloning is cheap and shares the socket and the connection cache.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("identity", &self.inner.identity)
            .field("local_addr", &self.inner.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Bytes of datagrams the kernel may queue for an endpoint's socket, each way. The default
/// (about 208 KiB on Linux) overflows when a busy node falls a few milliseconds behind a burst
/// of 1 KiB writes, and every dropped datagram costs a QUIC loss recovery: the slowest
/// requests of a write load were those. The kernel caps it at `net.core.rmem_max` and
/// `net.core.wmem_max`.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// A UDP socket bound to `addr`, with [`SOCKET_BUFFER_BYTES`] of buffer where the kernel allows.
fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // An IPv6 socket also reaches IPv4 peers where the system allows it, as quinn's own
    // client sockets do.
    if addr.is_ipv6()
        && let Err(error) = socket.set_only_v6(false)
    {
        debug!(%error, "could not make the socket dual-stack");
    }
    // Best effort: a smaller buffer only means more losses under bursts.
    if let Err(error) = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        debug!(%error, "could not enlarge the socket's receive buffer");
    }
    if let Err(error) = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        debug!(%error, "could not enlarge the socket's send buffer");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl Endpoint {
    /// Opens the UDP socket at `addr` (port 0 picks a free port). A node identity also accepts
    /// connections; a client identity only dials. Must be called inside a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        tls: &TlsConfig,
        options: TransportOptions,
    ) -> Result<Endpoint, TransportError> {
        let limits = &options.limits;
        let server = match tls.identity().role {
            Role::Node => {
                let mut server = tls.server_config();
                // Every peer is held to client limits until its certificate says it is a node.
                server
                    .transport_config(Arc::new(limits.transport_config(false)))
                    .max_incoming(limits.max_connections)
                    .incoming_buffer_size_total(16 * 1024 * 1024);
                Some(server)
            }
            Role::Admin | Role::Client | Role::ReadOnly => None,
        };
        let bound = bind_socket(addr).and_then(|socket| {
            quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                server,
                socket,
                Arc::new(quinn::TokioRuntime),
            )
        });
        let mut endpoint = bound.map_err(|source| TransportError::Bind { addr, source })?;
        let mut client = tls.client_config();
        // We dial only nodes: responses (and, for a node, requests on that connection) may be
        // as large as node traffic.
        client.transport_config(Arc::new(limits.transport_config(true)));
        endpoint.set_default_client_config(client);
        let client_frames = limits.client_frame_bytes.max(options.max_frame_bytes);
        Ok(Endpoint {
            inner: Arc::new(Inner {
                endpoint,
                bound_at: Instant::now(),
                identity: tls.identity().clone(),
                options,
                connections: Mutex::new(HashMap::new()),
                server: OnceLock::new(),
                admission: Admission {
                    per_identity: Mutex::new(HashMap::new()),
                    client_frames: Arc::new(Semaphore::new(client_frames)),
                },
                warnings: Mutex::new(WarningWindow {
                    started: Instant::now(),
                    logged: 0,
                    suppressed: 0,
                }),
            }),
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })
    }

    /// The identity this endpoint presents.
    pub fn identity(&self) -> &PeerIdentity {
        &self.inner.identity
    }

    /// How many QUIC connections (incoming and outgoing) are open right now.
    pub fn open_connections(&self) -> usize {
        self.inner.endpoint.open_connections()
    }

    /// Sends `request` to the node at `peer` and waits for its response, all within `timeout`.
    ///
    /// Reuses the cached connection to `peer` (dialing or redialing it if needed) and opens one
    /// bidirectional stream for this request. Safe to call from many tasks at once.
    pub async fn request<Req, Resp>(
        &self,
        peer: SocketAddr,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, TransportError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.request_since(peer, request, timeout, OLDEST_PROTOCOL_VERSION)
            .await
    }

    /// [`Endpoint::request`] of a request that protocol version `since` added: refused with
    /// [`TransportError::Unsupported`], without sending it, when the connection to `peer`
    /// agreed on an earlier version.
    pub async fn request_since<Req, Resp>(
        &self,
        peer: SocketAddr,
        request: &Req,
        timeout: Duration,
        since: u32,
    ) -> Result<Resp, TransportError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let frame = encode_frame(request, self.inner.options.max_frame_bytes)
            .map_err(|e| encode_error(e, peer))?;
        let mut used = None;
        let exchange = self.exchange(peer, &frame, &mut used, since);
        let outcome = tokio::time::timeout(timeout, exchange).await;
        if let Ok(result) = outcome {
            return result;
        }
        if let Some(used) = used {
            close_if_silent(peer, &used);
        }
        Err(TransportError::Timeout { peer, timeout })
    }

    async fn exchange<Resp: DeserializeOwned>(
        &self,
        peer: SocketAddr,
        frame: &[u8],
        used: &mut Option<UsedConnection>,
        since: u32,
    ) -> Result<Resp, TransportError> {
        let connection = self.connection(peer).await?;
        check_version(peer, &connection, since)?;
        *used = Some(UsedConnection::new(&connection));
        let (mut send, mut recv) = match connection.open_bi().await {
            Ok(streams) => streams,
            Err(error) => {
                // The cached connection died since we checked it; nothing was sent, so dial
                // again once.
                debug!(%peer, %error, "cached connection unusable, redialing");
                let connection = self.connection(peer).await?;
                check_version(peer, &connection, since)?;
                *used = Some(UsedConnection::new(&connection));
                connection
                    .open_bi()
                    .await
                    .map_err(|e| TransportError::Closed {
                        peer,
                        reason: e.to_string(),
                    })?
            }
        };
        let closed = |reason: String| TransportError::Closed { peer, reason };
        send.write_all(frame)
            .await
            .map_err(|e| closed(write_error(e)))?;
        send.finish().map_err(|e| closed(e.to_string()))?;
        read_frame(&mut recv, self.inner.options.max_frame_bytes, None)
            .await
            .map(|(response, _)| response)
            .map_err(|e| e.into_transport(peer))
    }

    /// The live cached connection to `peer`, dialing if there is none (or if the one cached
    /// was closed, see [`close_if_silent`]).
    async fn connection(&self, peer: SocketAddr) -> Result<quinn::Connection, TransportError> {
        let slot = self.inner.slot(peer);
        let mut cached = slot.lock().await;
        if let Some(entry) = cached.as_mut() {
            if entry.connection.close_reason().is_none() {
                self.inner.serve_dialed(peer, entry);
                return Ok(entry.connection.clone());
            }
            debug!(%peer, "cached connection closed, redialing");
        }
        let connect_error = |reason: String| TransportError::Connect { peer, reason };
        let connecting = self
            .inner
            .endpoint
            .connect(peer, NODE_SERVER_NAME)
            .map_err(|e| connect_error(e.to_string()))?;
        let connect_timeout = self.inner.options.connect_timeout;
        let connection = tokio::time::timeout(connect_timeout, connecting)
            .await
            .map_err(|_| {
                connect_error(format!(
                    "no handshake within {connect_timeout:?} (is a node running there?)"
                ))
            })?
            .map_err(|e| connect_error(describe_connect_error(&e)))?;
        // The peer may send us requests over this connection too.
        let mut entry = Cached {
            connection: connection.clone(),
            served: false,
        };
        self.inner.serve_dialed(peer, &mut entry);
        *cached = Some(entry);
        Ok(connection)
    }

    /// Serves requests with `handler` until the endpoint is closed. Call it once per endpoint;
    /// later calls log a warning and do nothing.
    ///
    /// Requests arrive on connections peers dial to us and on connections we dialed to nodes, so
    /// two nodes that talk both ways share one connection whenever a node is dialed at the
    /// address it dials from. Each connection is handled by its own task and each request stream
    /// by another, so a slow or misbehaving peer holds up nobody else. Connections whose
    /// certificate names no dynamo identity are closed with [`CLOSE_NO_IDENTITY`]. A request that
    /// is malformed, oversized or slower than [`TransportOptions::read_timeout`] gets its stream
    /// reset (see the `STREAM_*` codes) without calling `handler`.
    pub fn serve<Req, Resp, H, Fut>(&self, handler: H) -> JoinHandle<()>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        H: Fn(PeerIdentity, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Resp> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let server: StreamServer = Arc::new(move |connection, admitted| {
            tokio::spawn(serve_streams(connection, admitted, handler.clone()));
        });
        if self.inner.server.set(server).is_err() {
            warn!("Endpoint::serve called twice; ignoring the second handler");
            return tokio::spawn(async {});
        }
        // Connections dialed before this call start being served too (in the background: a
        // slot may be held by a dial that is still in progress).
        let sweep = self.inner.clone();
        tokio::spawn(async move {
            let slots: Vec<(SocketAddr, Slot)> = sweep
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(peer, slot)| (*peer, slot.clone()))
                .collect();
            for (peer, slot) in slots {
                if let Some(entry) = slot.lock().await.as_mut() {
                    sweep.serve_dialed(peer, entry);
                }
            }
        });
        let inner = self.inner.clone();
        tokio::spawn(async move {
            while let Some(incoming) = inner.endpoint.accept().await {
                tokio::spawn(accept_connection(incoming, inner.clone()));
            }
            debug!("endpoint closed, accept loop ends");
        })
    }

    /// Stops accepting, closes every connection and waits (at most
    /// [`TransportOptions::shutdown_timeout`]) for peers to be told.
    pub async fn close(&self) {
        self.inner.endpoint.close(
            quinn::VarInt::from_u32(CLOSE_SHUTDOWN),
            b"node shutting down",
        );
        self.inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        if tokio::time::timeout(
            self.inner.options.shutdown_timeout,
            self.inner.endpoint.wait_idle(),
        )
        .await
        .is_err()
        {
            debug!("connections did not drain before the shutdown timeout");
        }
    }
}

/// A connection a request went out on, and how much had come back on it by then.
struct UsedConnection {
    connection: quinn::Connection,
    datagrams_received: u64,
    since: Instant,
}

impl UsedConnection {
    fn new(connection: &quinn::Connection) -> UsedConnection {
        UsedConnection {
            connection: connection.clone(),
            datagrams_received: connection.stats().udp_rx.datagrams,
            since: Instant::now(),
        }
    }
}

/// Closes the connection a timed-out request went out on if not one datagram came back on it
/// for several round trips (and at least [`SILENT_AFTER`]): a live peer acknowledges what it
/// receives within milliseconds, so the peer is gone (paused, powered off, cut off) or has
/// restarted and no longer knows the connection, which it cannot reset. Left open, every
/// request on it would wait out its timeout until the idle timeout, 30 s; closed, the next
/// request dials again, and reaches the restarted node at once.
fn close_if_silent(peer: SocketAddr, used: &UsedConnection) {
    let silent_for = used.since.elapsed();
    let nothing_back = used.connection.stats().udp_rx.datagrams == used.datagrams_received;
    if nothing_back && silent_for >= SILENT_AFTER.max(used.connection.rtt() * 4) {
        debug!(%peer, ?silent_for, "nothing came back on the connection; closing it");
        used.connection
            .close(quinn::VarInt::from_u32(CLOSE_SILENT), b"no answer");
    }
}

/// The shortest silence after which [`close_if_silent`] gives a connection up.
const SILENT_AFTER: Duration = Duration::from_millis(500);
