//! The serving side of an endpoint: the connection cache, admission of peers against
//! [`TransportLimits`](super::TransportLimits) (connections in total and per identity, bytes of
//! partly received frames), rate-limited warnings, accepting connections and serving their
//! streams, one request and one response each.
//!
//! This module must not know what the requests mean.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::frame::{FrameError, read_frame};
use super::{
    CLOSE_NO_IDENTITY, CLOSE_REPLACED, CLOSE_TOO_MANY_CONNECTIONS, STREAM_READ_TIMEOUT,
    STREAM_RESPONSE_FAILED, TransportOptions, WARNING_WINDOW, WARNINGS_PER_WINDOW,
};
use crate::tls::{PeerIdentity, Role, TlsError};
use dynamo_protocol::encode_frame;

/// The cached connection to one peer address; the async mutex makes concurrent requesters wait
/// for a single dial instead of each dialing.
pub(super) type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

pub(super) struct Cached {
    pub(super) connection: quinn::Connection,
    /// Whether the streams the peer opens on this connection are being served.
    pub(super) served: bool,
}

/// Serves the request streams a peer opens on one connection (set by [`Endpoint::serve`]).
pub(super) type StreamServer = Arc<dyn Fn(quinn::Connection, Admitted) + Send + Sync>;

pub(super) struct Inner {
    pub(super) endpoint: quinn::Endpoint,
    /// When the endpoint was bound: the origin of [`Activity::last_used_us`].
    pub(super) bound_at: Instant,
    pub(super) identity: PeerIdentity,
    pub(super) options: TransportOptions,
    pub(super) connections: Mutex<HashMap<SocketAddr, Slot>>,
    pub(super) server: OnceLock<StreamServer>,
    pub(super) admission: Admission,
    pub(super) warnings: Mutex<WarningWindow>,
}

/// Connections and frame bytes held per identity, and frame bytes held for all clients.
pub(super) struct Admission {
    pub(super) per_identity: Mutex<HashMap<PeerIdentity, Share>>,
    pub(super) client_frames: Arc<Semaphore>,
}

/// What one identity holds.
pub(super) struct Share {
    /// Accepted connections open now.
    pub(super) open: Vec<Tracked>,
    /// Budget for its partly received frames.
    pub(super) frames: Arc<Semaphore>,
}

/// One accepted connection, as its identity's limit sees it.
pub(super) struct Tracked {
    pub(super) connection: quinn::Connection,
    pub(super) activity: Arc<Activity>,
}

/// What a connection is doing: which idle connection gives way to a new one at the
/// per-identity limit.
#[derive(Default)]
pub(super) struct Activity {
    /// Request streams being served now.
    pub(super) in_progress: AtomicUsize,
    /// When the last request ended (or the connection was accepted), in microseconds since the
    /// endpoint was bound.
    pub(super) last_used_us: AtomicU64,
}

/// Marks a connection busy while one request on it is served; dropping it stamps the time.
pub(super) struct Busy {
    pub(super) activity: Arc<Activity>,
    /// When the endpoint was bound (see [`Activity::last_used_us`]).
    pub(super) bound_at: Instant,
}

impl Busy {
    pub(super) fn new(activity: &Arc<Activity>, bound_at: Instant) -> Busy {
        activity.in_progress.fetch_add(1, Ordering::Relaxed);
        Busy {
            activity: activity.clone(),
            bound_at,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity
            .last_used_us
            .store(micros_since(self.bound_at), Ordering::Relaxed);
        self.activity.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// What serving one connection may use: its identity's frame budget (and, for clients, the
/// shared one). Dropping an admitted connection's `Admitted` gives its connection slot back.
pub(super) struct Admitted {
    pub(super) inner: Arc<Inner>,
    pub(super) peer: PeerIdentity,
    pub(super) frames: Arc<Semaphore>,
    pub(super) shared_frames: Option<Arc<Semaphore>>,
    /// The connection's activity, when it counts against the identity's connection limit.
    pub(super) counted: Option<(usize, Arc<Activity>)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some((id, _)) = &self.counted else {
            return;
        };
        let mut shares = self
            .inner
            .admission
            .per_identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(share) = shares.get_mut(&self.peer) {
            // Already gone if it made room for a newer connection.
            share
                .open
                .retain(|tracked| tracked.connection.stable_id() != *id);
            if share.open.is_empty() {
                shares.remove(&self.peer);
            }
        }
    }
}

impl Admitted {
    /// Waits until `len` more bytes of frame fit the budgets, and holds them until the permits
    /// are dropped.
    pub(super) async fn reserve(
        &self,
        len: usize,
    ) -> Result<Vec<OwnedSemaphorePermit>, FrameError> {
        // Budgets are at least one whole frame, so `len` always fits eventually.
        let n = u32::try_from(len).map_err(|_| FrameError::TooLarge {
            len,
            limit: u32::MAX as usize,
        })?;
        let mut permits = Vec::with_capacity(2);
        for budget in std::iter::once(&self.frames).chain(self.shared_frames.as_ref()) {
            let permit = budget
                .clone()
                .acquire_many_owned(n)
                .await
                .map_err(|_| FrameError::Lost("endpoint closed".to_owned()))?;
            permits.push(permit);
        }
        Ok(permits)
    }
}

/// Rate limit of warnings about peers.
pub(super) struct WarningWindow {
    pub(super) started: Instant,
    pub(super) logged: u32,
    pub(super) suppressed: u64,
}

impl WarningWindow {
    /// Whether the next warning may be logged now; reports what was suppressed in the window
    /// that just ended.
    pub(super) fn admit(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.started) >= WARNING_WINDOW {
            if self.suppressed > 0 {
                warn!(
                    suppressed = self.suppressed,
                    "more warnings about misbehaving peers in the last {} s were not logged",
                    WARNING_WINDOW.as_secs()
                );
            }
            *self = WarningWindow {
                started: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if self.logged < WARNINGS_PER_WINDOW {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Logs a warning about a peer, or only at debug level once too many were logged lately.
macro_rules! peer_warning {
    ($inner:expr, $($arg:tt)+) => {
        if $inner.warnings.lock().unwrap_or_else(PoisonError::into_inner).admit() {
            warn!($($arg)+);
        } else {
            debug!($($arg)+);
        }
    };
}

impl Inner {
    /// Admits one more connection from `peer` (`accepted`: a connection the peer dialed, which
    /// counts against the per-identity limit; connections we dialed are not counted). At the
    /// limit, the identity's least recently used idle connection is closed to make room; `None`
    /// when every one of them is busy.
    pub(super) fn admit(
        self: &Arc<Self>,
        peer: &PeerIdentity,
        accepted: Option<&quinn::Connection>,
    ) -> Option<Admitted> {
        let limits = &self.options.limits;
        let is_node = peer.role == Role::Node;
        let budget = if is_node {
            limits.node_frame_bytes_per_identity
        } else {
            limits.client_frame_bytes_per_identity
        }
        .max(self.options.max_frame_bytes);
        let mut shares = self
            .admission
            .per_identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let share = shares.entry(peer.clone()).or_insert_with(|| Share {
            open: Vec::new(),
            frames: Arc::new(Semaphore::new(budget)),
        });
        let mut counted = None;
        if let Some(connection) = accepted {
            if share.open.len() >= limits.max_connections_per_identity {
                let idle = share
                    .open
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.activity.in_progress.load(Ordering::Relaxed) == 0)
                    .min_by_key(|(_, t)| t.activity.last_used_us.load(Ordering::Relaxed))
                    .map(|(i, _)| i)?;
                let replaced = share.open.swap_remove(idle);
                debug!(%peer, remote = %replaced.connection.remote_address(), "closing the identity's least recently used idle connection for a new one");
                replaced.connection.close(
                    quinn::VarInt::from_u32(CLOSE_REPLACED),
                    b"replaced by a newer connection of this identity",
                );
            }
            let activity = Arc::new(Activity::default());
            activity
                .last_used_us
                .store(micros_since(self.bound_at), Ordering::Relaxed);
            share.open.push(Tracked {
                connection: connection.clone(),
                activity: activity.clone(),
            });
            counted = Some((connection.stable_id(), activity));
        }
        Some(Admitted {
            inner: self.clone(),
            peer: peer.clone(),
            frames: share.frames.clone(),
            shared_frames: (!is_node).then(|| self.admission.client_frames.clone()),
            counted,
        })
    }

    pub(super) fn slot(&self, peer: SocketAddr) -> Slot {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(peer)
            .or_default()
            .clone()
    }

    /// Caches a connection a node dialed to us as our connection to that node too (a node's
    /// endpoint dials from the address it listens on), unless we are dialing it right now. A new
    /// connection from an address replaces the cached one: the peer may have restarted, and a
    /// connection to its old process would otherwise look alive until the idle timeout.
    pub(super) fn adopt(&self, remote: SocketAddr, connection: &quinn::Connection) {
        let slot = self.slot(remote);
        let Ok(mut cached) = slot.try_lock() else {
            return;
        };
        if cached
            .as_ref()
            .is_none_or(|c| c.connection.stable_id() != connection.stable_id())
        {
            *cached = Some(Cached {
                connection: connection.clone(),
                served: true, // by `accept_connection`
            });
        }
    }

    /// Starts serving the streams a peer opens on a connection we dialed, once [`Endpoint::serve`]
    /// has been called. Runs under the slot lock, so each connection is served exactly once.
    pub(super) fn serve_dialed(self: &Arc<Self>, peer: SocketAddr, cached: &mut Cached) {
        if cached.served {
            return;
        }
        let Some(server) = self.server.get() else {
            return;
        };
        cached.served = true;
        match identify(&cached.connection) {
            Ok(identity) => {
                if let Some(admitted) = self.admit(&identity, None) {
                    server(cached.connection.clone(), admitted);
                }
            }
            Err(error) => debug!(%peer, %error, "dialed peer has no identity; not serving it"),
        }
    }
}

/// The verified identity in a connection's peer certificate.
pub(super) fn identify(connection: &quinn::Connection) -> Result<PeerIdentity, TlsError> {
    let certs = connection
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or(TlsError::NoIdentity("no certificate"))?;
    match certs.first() {
        Some(cert) => crate::tls::peer_identity(cert),
        None => Err(TlsError::NoIdentity("no certificate")),
    }
}

/// Completes the handshake of one incoming connection and serves its streams.
pub(super) async fn accept_connection(incoming: quinn::Incoming, inner: Arc<Inner>) {
    let remote = incoming.remote_address();
    // `open_connections` counts this one too.
    if inner.endpoint.open_connections() > inner.options.limits.max_connections {
        peer_warning!(inner, %remote, "refusing a connection: {} connections are open", inner.options.limits.max_connections);
        incoming.refuse();
        return;
    }
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            // Includes peers without a certificate from the cluster CA.
            debug!(%remote, %error, "handshake refused");
            return;
        }
    };
    let peer = match identify(&connection) {
        Ok(peer) => peer,
        Err(error) => {
            peer_warning!(inner, %remote, %error, "closing connection: no usable identity");
            connection.close(
                quinn::VarInt::from_u32(CLOSE_NO_IDENTITY),
                b"certificate carries no dynamo identity",
            );
            return;
        }
    };
    let Some(admitted) = inner.admit(&peer, Some(&connection)) else {
        peer_warning!(inner, %remote, %peer, "closing connection: too many connections from this identity, all busy");
        connection.close(
            quinn::VarInt::from_u32(CLOSE_TOO_MANY_CONNECTIONS),
            b"too many connections from this identity",
        );
        return;
    };
    debug!(%remote, %peer, "connection accepted");
    if peer.role == Role::Node {
        let limits = &inner.options.limits;
        connection.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(
            limits.node_streams_per_connection,
        ));
        connection.set_receive_window(quinn::VarInt::from_u32(limits.node_receive_window));
        inner.adopt(remote, &connection);
    }
    if let Some(server) = inner.server.get() {
        server(connection, admitted);
    }
}

/// Serves every request stream the peer opens on `connection` until it closes.
pub(super) async fn serve_streams<Req, Resp, H, Fut>(
    connection: quinn::Connection,
    admitted: Admitted,
    handler: Arc<H>,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    H: Fn(PeerIdentity, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let remote = connection.remote_address();
    let admitted = Arc::new(admitted);
    loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(
                    remote,
                    admitted.clone(),
                    send,
                    recv,
                    handler.clone(),
                ));
            }
            Err(error) => {
                debug!(%remote, peer = %admitted.peer, %error, "connection ended");
                return;
            }
        }
    }
}

pub(super) async fn serve_stream<Req, Resp, H, Fut>(
    remote: SocketAddr,
    admitted: Arc<Admitted>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    handler: Arc<H>,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    H: Fn(PeerIdentity, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let inner = admitted.inner.clone();
    let peer = admitted.peer.clone();
    let options = &inner.options;
    // The connection is busy until this request is answered: the per-identity limit replaces
    // only idle connections.
    let _busy = admitted
        .counted
        .as_ref()
        .map(|(_, activity)| Busy::new(activity, inner.bound_at));
    let read = tokio::time::timeout(
        options.read_timeout,
        read_frame::<Req>(&mut recv, options.max_frame_bytes, Some(&admitted)),
    )
    .await;
    // The frame's budget is held until the response is sent: the request lives that long.
    let (request, _budget) = match read {
        Ok(Ok(request)) => request,
        Ok(Err(error)) => {
            peer_warning!(inner, %remote, %peer, ?error, "bad request frame, resetting stream");
            reset(&mut send, &mut recv, error.stream_code());
            return;
        }
        Err(_) => {
            peer_warning!(inner, %remote, %peer, "request frame not received in time, resetting stream");
            reset(&mut send, &mut recv, STREAM_READ_TIMEOUT);
            return;
        }
    };
    let response = handler(peer.clone(), request).await;
    let frame = match encode_frame(&response, options.max_frame_bytes) {
        Ok(frame) => frame,
        Err(error) => {
            warn!(%remote, %peer, ?error, "cannot encode response, resetting stream");
            reset(&mut send, &mut recv, STREAM_RESPONSE_FAILED);
            return;
        }
    };
    if let Err(error) = send.write_all(&frame).await {
        // Usually the requester timed out and went away.
        debug!(%remote, %peer, %error, "cannot send response");
        return;
    }
    // Already finished or reset by the peer: nothing left to do.
    let _ = send.finish();
}

/// Abandons a stream in both directions with `code`; errors mean it is already gone.
pub(super) fn reset(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, code: u32) {
    let code = quinn::VarInt::from_u32(code);
    let _ = recv.stop(code);
    let _ = send.reset(code);
}
