//! The messages Dynamo nodes and clients exchange (one request and one response per QUIC
//! stream), and who may send them: the roles a cluster CA writes into certificates.
//!
//! Plain serde types shared by the node's core (`dynamo-core`), the node (`dynamo-node`) and
//! the client library (`dynamo-client`), so that none of them has to depend on another to
//! speak to it. This crate must NOT know how messages travel (QUIC, TLS, HTTP), how they are
//! served, or any clock, thread or socket.

mod frame;
mod identity;
mod messages;

pub use frame::{FrameEncodeError, encode_frame};
pub use identity::{NameError, PeerIdentity, Role, validate_name};
pub use messages::*;
