//! Sans-IO coordinators for Dynamo's sloppy quorum (DeCandia et al. 2007, sections 4.5 and 4.6):
//! get, put and delete as state machines that turn inputs into commands.
//!
//! A coordinator is created per client request with the key's extended preference list (from
//! `dynamo-ring`: the N primaries that are up, plus fallbacks standing in for those that are
//! down) and the request's [`Quorum`]. The driver then feeds it replies and timeouts and executes
//! the [`Command`]s it emits, in order: local store operations, messages to replicas, and
//! finally exactly one [`Response`] for the client. Nothing here reads a clock, touches a socket
//! or a disk; `now` is milliseconds on any monotonic clock the driver chooses.
//!
//! ```
//! use dynamo_quorum::{
//!     Coordinate,
//!     Command, PutCoordinator, PutRequest, Quorum, ReplicaReply, Response, StandIns, Value,
//! };
//! use dynamo_ring::{Role, Target};
//! use dynamo_vclock::{Actor, DvvSet};
//!
//! let targets: Vec<Target> = ["a", "b", "c"]
//!     .map(|n| Target { node: n.into(), role: Role::Primary })
//!     .to_vec();
//! let request = PutRequest {
//!     key: b"cart:alice".to_vec(),
//!     context: None, // a blind write; after a get, its ClientContext
//!     value: Value::Data(b"book".to_vec()),
//!     coordinator: "a".into(),
//!     actor: Actor::new("a#1"),
//!     targets,
//!     stand_ins: StandIns::default(), // spares for silent targets (paper 4.6)
//!     quorum: Quorum::default(), // N=3, R=2, W=2
//!     timeout_ms: 1_000,
//!     supersede_local: false, // true in a last-write-wins bucket
//! };
//! let mut put = PutCoordinator::new(0, request)?;
//! assert!(matches!(put.poll_command(), Some(Command::ReadLocal { .. })));
//! put.handle_local_read(0, Ok(None));
//! let Some(Command::WriteLocal { context, value, .. }) = put.poll_command() else { panic!() };
//! // The driver applies the write to its store and hands back the stored version set.
//! let mut stored = DvvSet::empty();
//! stored.update(&context, &Actor::new("a#1"), value, 0);
//! put.handle_local_write(0, Ok(stored));
//! // Paper 4.5: the new version goes to the other N-1 replicas...
//! let sends = std::iter::from_fn(|| put.poll_command()).count();
//! assert_eq!(sends, 2);
//! // ...and the client is answered after W = 2 acknowledgements, the coordinator's included.
//! put.handle_reply(5, &"b".into(), ReplicaReply::Written);
//! assert!(matches!(put.poll_command(), Some(Command::Respond(Response::Put(Ok(_))))));
//! # Ok::<(), dynamo_quorum::QuorumError>(())
//! ```
//!
//! What this crate must not know: sockets, async runtimes, the storage engine, the wall clock,
//! how the ring was decided, or what the bytes of a value mean.

mod config;
mod context;
mod coordinate;
mod copies;
mod error;
mod get;
mod message;
mod put;
mod reap;
mod tally;
mod value;

pub use config::{ConfigError, HARD_SIBLING_LIMIT, Quorum, SOFT_SIBLING_LIMIT};
pub use context::{ClientContext, ContextError, ContextKey, key_fingerprint};
pub use coordinate::Coordinate;
pub use copies::{CopyQuorum, Fallback, Verdict};
pub use error::QuorumError;
pub use get::{GetCoordinator, GetOk, GetRequest};
pub use message::{Command, ReplicaReply, ReplicaRequest, Response, Warning};
pub use put::{MergeRequest, PutCoordinator, PutOk, PutRequest};
pub use reap::{ReapCoordinator, ReapOutcome, ReapRequest};
pub use tally::StandIns;
pub use value::{
    MAX_SUPERSEDED, Object, Value, WriteId, distinct_writes, is_deleted, live_values,
    newest_write_ms,
};
