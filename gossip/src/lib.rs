//! Gossip-based membership and failure detection for a Dynamo-style store (DeCandia et al.
//! 2007, section 4.8).
//!
//! Every member owns a small versioned key-value state (Scuttlebutt: each change gets the next
//! version, each member has a heartbeat and a highest version) and an [`Identity`]: id,
//! generation, address, zone, capacity, and a [`Status`]. Once per interval each node runs a
//! push-pull exchange with a few random peers: digests say what each side holds, so only the
//! missing versions travel, within a byte budget (large backlogs spread over rounds). Seeds
//! are contacted when a node knows nobody and now and then, so partitions merge again. A phi
//! accrual detector per peer, fed with arrivals of that peer's *new heartbeat versions*, turns
//! silence into [`Event::NodeDown`]; a down member is still gossiped about, a member that left
//! is forgotten after a grace period.
//!
//! The engine is sans-IO, shaped like `quinn-proto`: time, received messages and a seed go in;
//! messages to send, events and the next deadline come out.
//!
//! ```
//! use std::time::Duration;
//! use dynamo_gossip::{Config, Event, Gossip, Identity, Status};
//!
//! let config = Config { seeds: vec!["10.0.0.1:7946".into()], ..Config::default() };
//! let a = Identity::new("a", 1, "10.0.0.1:7946");
//! let b = Identity::new("b", 1, "10.0.0.2:7946");
//! let mut a = Gossip::new(config.clone(), a, Status::Alive, Duration::ZERO, 1);
//! let mut b = Gossip::new(config, b, Status::Alive, Duration::ZERO, 2);
//! b.set("ring", b"v1".to_vec())?;
//!
//! // Drive both by hand: deliver every message instantly, tick once a second.
//! for second in 1..=3 {
//!     let now = Duration::from_secs(second);
//!     a.handle_timeout(now);
//!     b.handle_timeout(now);
//!     loop {
//!         let mut moved = false;
//!         while let Some(t) = a.poll_transmit() {
//!             b.handle_message(now, "10.0.0.1:7946", t.message)?;
//!             moved = true;
//!         }
//!         while let Some(t) = b.poll_transmit() {
//!             a.handle_message(now, "10.0.0.2:7946", t.message)?;
//!             moved = true;
//!         }
//!         if !moved { break; }
//!     }
//! }
//! let b_at_a = a.member(&"b".into()).expect("a learned b through the seed");
//! assert_eq!(b_at_a.get("ring"), Some(&b"v1"[..]));
//! assert!(std::iter::from_fn(|| a.poll_event())
//!     .any(|e| matches!(e, Event::StateChanged { key, .. } if key == "ring")));
//! # Ok::<(), dynamo_gossip::GossipError>(())
//! ```
//!
//! [`sim`] is a deterministic network simulator for tests and examples (virtual clock, loss,
//! latency, jitter, crashes, restarts, partitions).
//!
//! What this crate must not know: sockets, real clocks, threads, other workspace crates, or the
//! meaning of the application's keys (the `node` crate puts the ring in one; here it is bytes).

mod detector;
mod engine;
mod error;
mod message;
pub mod sim;
mod state;
mod types;

pub use engine::{Config, DEFAULT_MAX_MESSAGE_BYTES, Event, Gossip, MemberView, Transmit};
pub use error::GossipError;
pub use message::{
    Body, Change, Delta, Digest, DigestEntry, IdRange, Message, NodeDelta, NodeMeta,
    VersionedChange,
};
pub use types::{Identity, NodeId, Status};
