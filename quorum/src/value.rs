//! What a key holds: a dotted version vector set of values, where a delete is a value too
//! (a tombstone), so it carries a clock and wins or loses like any write (paper 4.4, and Riak's
//! lesson that deletes are a protocol).
//!
//! A client write may carry a [`WriteId`]: a retry of a write that timed out (through another
//! coordinator, or a request delivered twice) carries the same id, so the store can recognise
//! one write coordinated twice. Coordinators do not mint a second version of a write they
//! already hold, readers show a write once however many dots it has, and a write that
//! supersedes one copy of a write supersedes its other copies too (see
//! [`crate::PutCoordinator`]).
//!
//! This module must not know about storage or the network.

use dynamo_vclock::{Actor, DvvSet};
use serde::{Deserialize, Serialize};

/// The identity of one client write, the same on every retry of it (random, chosen by the
/// client library).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WriteId(pub u128);

/// One sibling of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// Bytes written by a client (encoded as one byte string, not a sequence of numbers, so
    /// decoding a stored value is a copy).
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A delete: hides older values until it is reaped.
    Tombstone,
    /// Bytes written by a client under a write id (variants are appended, so versions stored
    /// before write ids existed still decode).
    Written {
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// The write they belong to.
        id: WriteId,
    },
}

impl Value {
    /// A client's bytes, with the write's id when it has one.
    pub fn data(data: Vec<u8>, id: Option<WriteId>) -> Self {
        match id {
            Some(id) => Value::Written { data, id },
            None => Value::Data(data),
        }
    }

    /// The client's bytes; `None` for a tombstone.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Data(data) | Value::Written { data, .. } => Some(data),
            Value::Tombstone => None,
        }
    }

    /// The id of the write this value belongs to, if the client gave one.
    pub fn write_id(&self) -> Option<WriteId> {
        match self {
            Value::Written { id, .. } => Some(*id),
            Value::Data(_) | Value::Tombstone => None,
        }
    }
}

/// Every version of one key that a replica holds: siblings and tombstones with their dots.
pub type Object = DvvSet<Value>;

/// Whether every sibling of `object` is a tombstone (the key reads as not found).
pub fn is_deleted(object: &Object) -> bool {
    object.values().all(|v| *v == Value::Tombstone)
}

/// When the newest version `object` has seen was written (the largest clock timestamp, in the
/// coordinators' milliseconds; 0 for an empty set): a tombstone is reaped only once this is
/// older than the grace period.
pub fn newest_write_ms(object: &Object) -> u64 {
    object
        .context()
        .iter()
        .map(|(_, entry)| entry.timestamp)
        .max()
        .unwrap_or(0)
}

/// The siblings of `object` with their dots, tombstones included, each write once: two
/// siblings with one write id are one client write coordinated twice (a retry).
pub fn distinct_writes(object: &Object) -> impl Iterator<Item = (&Actor, u64, &Value)> {
    let mut seen = std::collections::HashSet::new();
    object
        .iter()
        .filter(move |(_, _, v)| v.write_id().is_none_or(|id| seen.insert(id)))
}

/// The data siblings of `object`, tombstones left out, and each write once (see
/// [`distinct_writes`]).
pub fn live_values(object: &Object) -> Vec<&[u8]> {
    distinct_writes(object)
        .filter_map(|(_, _, value)| value.bytes())
        .collect()
}
