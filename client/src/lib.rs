//! The Rust client of a Dynamo cluster (DeCandia et al. 2007), and the QUIC transport nodes
//! share with it.
//!
//! A [`Client`] routes each request to a member of the key's preference list (paper 6.4,
//! client-driven coordination), hedges reads, moves a write on to the next candidate when its
//! node fails or stays silent, and reconciles nothing itself: a read returns the siblings and
//! the context token the next write must carry (paper 4.4).
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//!
//! use dynamo_client::{Client, GetOutcome, NodeAddress, RequestOptions, TlsConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // The directory `dynamo cert issue --client app --dir certs` wrote.
//! let tls = TlsConfig::load(Path::new("certs"), Some("app"))?;
//! // Seeds: IP addresses or host names, each with its port.
//! let seeds: Vec<NodeAddress> = vec!["10.0.0.1:7000".parse()?, "db-2.example:7000".parse()?];
//! let client = Client::new(&tls, seeds, Duration::from_secs(2))?;
//!
//! let options = RequestOptions::default();
//! let context = match client.get("default", b"cart:alice", options).await? {
//!     GetOutcome::Found(reply) => {
//!         // Concurrent writes come back as siblings; the application merges them.
//!         println!("{} sibling(s)", reply.values.len());
//!         reply.context
//!     }
//!     GetOutcome::NotFound { context } => context,
//! };
//! // Writing with the read's context supersedes every sibling it saw.
//! client.put("default", b"cart:alice", b"milk,eggs".to_vec(), Some(context), options).await?;
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`client`] (routing, hedging, retries), [`sets`] (typed set buckets), [`tls`]
//! (identities and TLS configurations), [`transport`] (typed frames over QUIC, both sides),
//! [`address`] (names and their resolution), [`files`] (private directories, lock files), and
//! with the `ca` feature `ca` (making a cluster CA and issuing identities).
//!
//! This crate must NOT know how nodes coordinate, store or gossip: no fjall, axum, prometheus
//! or the node's core (`cargo xtask tidy` checks its dependencies).

pub mod address;
#[cfg(feature = "ca")]
pub mod ca;
pub mod client;
pub mod files;
pub mod sets;
pub mod tls;
pub mod transport;

pub use address::NodeAddress;
pub use client::{Client, ClientError, GetOutcome};
pub use dynamo_protocol as protocol;
pub use dynamo_protocol::{GetReply, RequestOptions, Role};
pub use tls::{Identity, TlsConfig, TlsError};
