//! Test support for cross-crate integration tests: the deterministic whole-cluster simulator
//! ([`sim`]: node cores over in-memory stores, nothing else), and with the default `cluster`
//! feature real nodes: in-process clusters, `dynamo` processes, hosts of their own (network
//! namespaces), a hostile client, the chaos workload and checker, a filesystem that loses
//! power ([`lossyfs`], [`power`]), and the binary of an earlier commit ([`earlier`]).
//!
//! Built without the `cluster` feature (as `cargo xtask sim` builds the simulator) the crate
//! links no tokio, quinn, TLS or fjall: the boundary of the node's core holds by construction.
//! This crate must not reach into node internals: it starts nodes and talks to them through the
//! public client library, like a user.

#[cfg(feature = "cluster")]
pub mod cart_story;
#[cfg(feature = "cluster")]
pub mod chaos;
#[cfg(feature = "cluster")]
mod cluster;
#[cfg(feature = "cluster")]
pub mod earlier;
#[cfg(feature = "cluster")]
pub mod flood;
#[cfg(feature = "cluster")]
pub mod host_cluster;
#[cfg(feature = "cluster")]
pub mod hosts;
#[cfg(feature = "cluster")]
pub mod lossyfs;
#[cfg(feature = "cluster")]
pub mod power;
#[cfg(feature = "cluster")]
pub mod process;
pub mod sim;

#[cfg(feature = "cluster")]
pub use cluster::*;
