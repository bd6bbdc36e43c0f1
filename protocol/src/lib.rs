//! The messages Dynamo nodes and clients exchange (one request and one response per QUIC
//! stream), who may send them (the roles a cluster CA writes into certificates), and the
//! protocol versions that say which peers understand which messages (`version.rs`).
//!
//! Plain serde types shared by the node's core (`dynamo-core`), the node (`dynamo-node`) and
//! the client library (`dynamo-client`), so that none of them has to depend on another to
//! speak to it. This crate must NOT know how messages travel (QUIC, TLS, HTTP), how they are
//! served, or any clock, thread or socket.

mod frame;
mod identity;
mod messages;
mod version;

pub use frame::{FrameEncodeError, encode_frame};
pub use identity::{NameError, PeerIdentity, Role, validate_name};
pub use messages::*;
pub use version::{OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION, alpn_name, version_of_alpn};
