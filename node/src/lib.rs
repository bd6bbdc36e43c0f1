//! A Dynamo node (DeCandia et al. 2007): the one crate with tokio and QUIC. It composes the
//! sans-IO crates in two halves: [`core::NodeCore`] makes every decision of one node (gossip,
//! ring, buckets, placement, quorum coordinators, hints, handoff) as a sans-IO state machine,
//! and [`Node`] runs it over [`transport`] (quinn with mutual TLS from a cluster CA, see [`tls`])
//! on a fjall store; [`Client`] is the partition-aware client library (paper 6.4).
//!
//! This crate must not re-implement what the algorithm crates decide: placement is
//! `dynamo-ring`'s, causality `dynamo-vclock`'s, quorum counting `dynamo-quorum`'s, membership
//! `dynamo-gossip`'s. It moves their inputs and outputs.

pub mod address;
pub mod client;
pub mod config;
pub mod core;
pub mod files;
mod gate;
pub mod http;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod sets;
pub mod tls;
pub mod transport;
mod write_lane;

pub use client::{Client, ClientError};
pub use config::{DurabilityMode, NodeConfig};
pub use node::{Node, NodeError};
