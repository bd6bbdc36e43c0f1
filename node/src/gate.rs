//! The one way into a running node's core, shared by the QUIC endpoint and the HTTP API: a
//! request from a verified identity is admitted (or answered "overloaded" at once when the
//! node holds as many requests as it takes), queued for the driver, and its answer awaited;
//! each is counted in the node's [`Metrics`].
//!
//! It also carries the node's local write notices (the fingerprints of keys written here), which
//! the HTTP API's watch waits on.
//!
//! This module must not know what a request means: the core decides, roles included.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};

use crate::metrics::Metrics;
use dynamo_client::tls::{PeerIdentity, Role};
use dynamo_protocol::{ErrorKind, Request, Response};

/// Key-write notices kept for slow watchers; a watcher that falls further behind checks again.
const WRITE_NOTICES: usize = 4096;

/// A request from the endpoint, with where its answer goes.
pub(crate) struct Incoming {
    pub(crate) from: PeerIdentity,
    pub(crate) request: Request,
    pub(crate) answer: oneshot::Sender<Response>,
    /// The request's in-flight slot: held until the core answers, even when the caller stopped
    /// waiting (a reset stream must not let a client start unbounded work).
    pub(crate) slot: OwnedSemaphorePermit,
}

/// Admits requests into the node (see the [module documentation](self)). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Gate {
    requests: mpsc::Sender<Incoming>,
    client_slots: Arc<Semaphore>,
    peer_slots: Arc<Semaphore>,
    client_total: usize,
    peer_total: usize,
    metrics: Arc<Metrics>,
    writes: broadcast::Sender<u64>,
}

impl Gate {
    /// A gate admitting at most `clients` client and `peers` node requests at once, and the
    /// receiver the driver takes them from.
    pub(crate) fn new(
        clients: usize,
        peers: usize,
        metrics: Arc<Metrics>,
    ) -> (Gate, mpsc::Receiver<Incoming>) {
        let (requests, incoming) = mpsc::channel(clients.max(1) + peers.max(1));
        let (writes, _) = broadcast::channel(WRITE_NOTICES);
        let gate = Gate {
            requests,
            client_slots: Arc::new(Semaphore::new(clients.max(1))),
            peer_slots: Arc::new(Semaphore::new(peers.max(1))),
            client_total: clients.max(1),
            peer_total: peers.max(1),
            metrics,
            writes,
        };
        (gate, incoming)
    }

    /// Asks the core and waits for its answer.
    pub(crate) async fn submit(&self, from: PeerIdentity, request: Request) -> Response {
        let started = Instant::now();
        let operation = crate::metrics::operation_of(&request);
        let read = matches!(request, Request::Get { .. });
        let response = self.admit(from, request).await;
        self.metrics
            .record(operation, &response, started.elapsed(), read);
        response
    }

    async fn admit(&self, from: PeerIdentity, request: Request) -> Response {
        let slots = if from.role == Role::Node {
            &self.peer_slots
        } else {
            &self.client_slots
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            return Response::error(
                ErrorKind::Overloaded,
                "the node has as many requests in flight as it takes; retry later or ask another node",
            );
        };
        let (answer, answered) = oneshot::channel();
        let incoming = Incoming {
            from,
            request,
            answer,
            slot,
        };
        if let Err(error) = self.requests.try_send(incoming) {
            return match error {
                mpsc::error::TrySendError::Full(_) => Response::error(
                    ErrorKind::Overloaded,
                    "the node's request queue is full; retry later or ask another node",
                ),
                mpsc::error::TrySendError::Closed(_) => {
                    Response::error(ErrorKind::NotReady, "the node has stopped")
                }
            };
        }
        answered.await.unwrap_or_else(|_| {
            Response::error(ErrorKind::NotReady, "the node stopped before answering")
        })
    }

    /// Client and node requests in flight now.
    pub(crate) fn in_flight(&self) -> (usize, usize) {
        let used =
            |slots: &Semaphore, total: usize| total.saturating_sub(slots.available_permits());
        (
            used(&self.client_slots, self.client_total),
            used(&self.peer_slots, self.peer_total),
        )
    }

    /// The node's metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Where to tell watchers of keys written here, while anyone watches (`None` otherwise, so
    /// writes pay nothing for watches nobody holds). Send the key's
    /// [`dynamo_quorum::key_fingerprint`].
    pub(crate) fn write_notices(&self) -> Option<broadcast::Sender<u64>> {
        (self.writes.receiver_count() > 0).then(|| self.writes.clone())
    }

    /// Notices of keys written here from now on.
    pub(crate) fn watch_writes(&self) -> broadcast::Receiver<u64> {
        self.writes.subscribe()
    }
}
