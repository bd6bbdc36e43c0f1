//! A Dynamo node (DeCandia et al. 2007): the one crate with tokio, quinn's server side, fjall
//! and the HTTP API. [`Node`] runs the sans-IO core (`dynamo-core`'s `NodeCore`, which makes
//! every decision) over the transport of `dynamo-client` (quinn with mutual TLS from a cluster
//! CA) on a fjall store, and serves [`http`] and [`metrics`] beside it.
//!
//! This crate must not decide anything the core decides (membership, placement, quorums,
//! hints, handoff, anti-entropy) nor re-implement what the algorithm crates do: it moves the
//! core's inputs and outputs, runs its store operations on the write lane, and carries its
//! peer calls.

pub mod config;
mod gate;
pub mod http;
pub mod metrics;
pub mod node;
mod write_lane;

pub use config::{DurabilityMode, NodeConfig};
pub use node::{Node, NodeError};
