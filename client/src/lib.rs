//! The Rust client of a Dynamo cluster (DeCandia et al. 2007), and the QUIC transport nodes
//! share with it.
//!
//! A [`Client`] routes each request to a member of the key's preference list (paper 6.4,
//! client-driven coordination), reads a key from R of its replicas' copies and asks a
//! coordinator only when they differ or too few answer (or it does not know the bucket yet),
//! hedges reads, moves a write on to the next candidate when its node fails or stays silent,
//! and reconciles nothing itself: a read returns the siblings and the context token the next
//! write must carry (paper 4.4).
//!
//! The example in `README.md` (below, as this crate's documentation) compiles as a doc test.
//!
//! Modules: [`client`] (routing, hedging, retries, client-side reads), [`backup`] (backup files,
//! backup and restore with every version), [`sets`] (typed set buckets), [`tls`]
//! (identities and TLS configurations), [`transport`] (typed frames over QUIC, both sides),
//! [`address`] (names and their resolution), [`files`] (private directories, lock files), and
//! with the `ca` feature `ca` (making a cluster CA and issuing identities).
//!
//! This crate must NOT know how nodes coordinate, store or gossip: no fjall, axum, prometheus
//! or the node's core (`cargo xtask tidy` checks its dependencies).
#![doc = include_str!("../README.md")]

pub mod address;
pub mod backup;
#[cfg(feature = "ca")]
pub mod ca;
pub mod client;
pub mod files;
pub mod sets;
pub mod tls;
pub mod transport;

pub use address::NodeAddress;
pub use client::{Client, ClientError, GetOutcome, ReadPaths};
pub use dynamo_protocol as protocol;
pub use dynamo_protocol::{GetReply, RequestOptions, Role};
pub use tls::{Identity, TlsConfig, TlsError};
