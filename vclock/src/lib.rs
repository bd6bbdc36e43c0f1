//! Causality for dynamo: vector clocks, dotted version vector sets and opaque client contexts.
//!
//! Dynamo (DeCandia et al., SOSP 2007, §4.4) versions every object with a vector clock so that
//! replicas can tell an overwrite from a concurrent write, keeping the latter as *siblings* for
//! the client to reconcile. This crate provides:
//!
//! - [`VClock`]: actor -> (counter, timestamp) with merge, compare ([`Causality`]), descends,
//!   dominates and deterministic [`VClock::prune`] ([`PruneConfig`]).
//! - [`DvvSet`]: a key's siblings as a dotted version vector set (Preguiça et al. 2012, as in
//!   Riak's `dvvset`). A write discards exactly the versions its context has seen, so two
//!   clients in a read-modify-write loop keep two siblings, not an ever-growing list.
//! - [`Context`]: the opaque bytes / URL-safe text a client gets with a read and sends back
//!   with its write; corrupt or foreign input is a [`ContextError`], never a panic.
//!
//! Actors are the coordinating replicas (node or vnode names), never clients.
//!
//! This crate is sans-IO and must NOT know the network, storage, other dynamo crates or the
//! wall clock: every timestamp is a `now: u64` argument (e.g. milliseconds since an epoch).
//!
//! # Example: read-modify-write with a context round trip
//!
//! ```
//! use dynamo_vclock::{Actor, Context, DvvSet};
//!
//! #[derive(Clone, Debug, PartialEq)]
//! enum Value { Put(u32), Deleted } // tombstones are just values
//!
//! let coordinator = Actor::from("node-a");
//! let mut stored = DvvSet::new(&coordinator, Value::Put(1), 1_000);
//!
//! // Client: get -> (values, opaque context as text, e.g. an HTTP header).
//! let header = Context::new(stored.context()).to_text();
//!
//! // A second client read the same version and writes first: a concurrent version.
//! let other = stored.context();
//! stored.update(&other, &coordinator, Value::Put(2), 1_500);
//!
//! // First client: put with the context it read; the coordinator decodes and updates.
//! let context: Context = header.parse().expect("context we issued");
//! stored.update(context.clock(), &coordinator, Value::Deleted, 2_000);
//!
//! // Put(1) was seen by both writes and is gone; the two writes are siblings.
//! assert_eq!(stored.len(), 2);
//! let values: Vec<_> = stored.values().collect();
//! assert!(values.contains(&&Value::Put(2)) && values.contains(&&Value::Deleted));
//!
//! // A client that read both siblings resolves them with one write.
//! let seen_both = stored.context();
//! stored.update(&seen_both, &coordinator, Value::Put(3), 3_000);
//! assert_eq!(stored.values().collect::<Vec<_>>(), [&Value::Put(3)]);
//!
//! // Foreign or corrupt contexts are errors, not panics.
//! assert!(Context::from_text("bm90LWEtY29udGV4dA").is_err());
//! ```

pub mod context;
pub mod dvvset;
pub mod vclock;

pub use context::{Context, ContextError};
pub use dvvset::{DvvSet, DvvSetError};
pub use vclock::{Actor, Causality, ClockError, Entry, PruneConfig, VClock};
