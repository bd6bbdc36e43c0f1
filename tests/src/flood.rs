//! A hostile client for the resource-limit tests (issue 12, security review hole 3): many
//! connections from one identity, each opening streams that announce a large frame, send a
//! little of it and never finish.
//!
//! This module must not know how a node bounds what it holds; it only attacks through QUIC
//! with a certificate of the cluster, as a compromised client could.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dynamo_client::tls::{NODE_SERVER_NAME, TlsConfig};
use tokio::task::JoinHandle;

/// What the flood does.
#[derive(Debug, Clone, Copy)]
pub struct FloodPlan {
    /// Connections attempted.
    pub connections: usize,
    /// Streams opened on each admitted connection.
    pub streams_per_connection: usize,
    /// Frame length each stream announces.
    pub announced: u32,
    /// Payload bytes each stream sends of it (less than announced: the frame never completes).
    pub sent: usize,
}

/// A running flood; [`Flood::stop`] ends it.
pub struct Flood {
    endpoint: quinn::Endpoint,
    connections: Vec<quinn::Connection>,
    tasks: Vec<JoinHandle<()>>,
    streams: Arc<AtomicUsize>,
    attempted: usize,
}

impl Flood {
    /// Starts flooding the node at `addr` with identity `tls`; returns once every connection
    /// was attempted (streams keep being opened and written in the background).
    pub async fn start(tls: &TlsConfig, addr: SocketAddr, plan: FloodPlan) -> Flood {
        let mut endpoint =
            quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("endpoint");
        endpoint.set_default_client_config(tls.client_config());
        let streams = Arc::new(AtomicUsize::new(0));
        let mut flood = Flood {
            endpoint,
            connections: Vec::new(),
            tasks: Vec::new(),
            streams: streams.clone(),
            attempted: plan.connections,
        };
        for _ in 0..plan.connections {
            let Ok(connecting) = flood.endpoint.connect(addr, NODE_SERVER_NAME) else {
                continue;
            };
            let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_secs(2), connecting).await
            else {
                continue;
            };
            let streams = streams.clone();
            let attacker = connection.clone();
            flood.tasks.push(tokio::spawn(async move {
                let mut held = Vec::new();
                for _ in 0..plan.streams_per_connection {
                    let Ok((mut send, recv)) = attacker.open_bi().await else {
                        return;
                    };
                    streams.fetch_add(1, Ordering::Relaxed);
                    let mut bytes = plan.announced.to_be_bytes().to_vec();
                    bytes.resize(4 + plan.sent, 0x5a);
                    // Flow control may hold the write back for good: do not wait for it.
                    held.push(tokio::spawn(async move {
                        let _ = send.write_all(&bytes).await;
                        let _keep = recv;
                        std::future::pending::<()>().await;
                    }));
                }
                std::future::pending::<()>().await;
                drop(held);
            }));
            flood.connections.push(connection);
        }
        flood
    }

    /// Connections the node kept open (it closes those over its limit right after the
    /// handshake).
    pub fn admitted(&self) -> usize {
        self.connections
            .iter()
            .filter(|c| c.close_reason().is_none())
            .count()
    }

    /// Connections attempted.
    pub fn attempted(&self) -> usize {
        self.attempted
    }

    /// Streams opened so far.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// Ends the flood: closes every connection.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"flood over");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}
