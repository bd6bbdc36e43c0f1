//! What a key holds: a dotted version vector set of values, where a delete is a value too
//! (a tombstone), so it carries a clock and wins or loses like any write (paper 4.4, and Riak's
//! lesson that deletes are a protocol).
//!
//! A client write may carry a [`WriteId`]: a retry of a write that timed out (through another
//! coordinator, or a request delivered twice) carries the same id, so the store can recognise
//! one write coordinated twice. Coordinators do not mint a second version of a write they
//! already hold, readers show a write once however many dots it has, and a write that
//! supersedes one copy of a write supersedes its other copies too (see
//! [`crate::PutCoordinator`]). A delete names the writes it superseded ([`Value::Deleted`]):
//! a copy of one of them that arrives late (a request a client gave up on, delivered after
//! its retry was acknowledged and deleted) is not a new version where the delete is held, and
//! reads as deleted beside it anywhere else.
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
    /// A delete that names the client writes it superseded (at most [`MAX_SUPERSEDED`]).
    Deleted {
        /// Ids of the writes the delete's context covered.
        superseded: Vec<WriteId>,
    },
}

/// Most write ids a [`Value::Deleted`] names (16 bytes each).
pub const MAX_SUPERSEDED: usize = 16;

/// The client writes `first` and `values` name (their write ids and the ids their deletes
/// name), each once, in that order, at most [`MAX_SUPERSEDED`]: what a delete names and a
/// context token carries.
pub(crate) fn named_writes<'a>(
    first: &[WriteId],
    values: impl IntoIterator<Item = &'a Value>,
) -> Vec<WriteId> {
    let mut named = first.to_vec();
    for value in values {
        for id in value.write_id().iter().chain(value.superseded()) {
            if !named.contains(id) {
                named.push(*id);
            }
        }
    }
    named.truncate(MAX_SUPERSEDED);
    named
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
            Value::Tombstone | Value::Deleted { .. } => None,
        }
    }

    /// The id of the write this value belongs to, if the client gave one.
    pub fn write_id(&self) -> Option<WriteId> {
        match self {
            Value::Written { id, .. } => Some(*id),
            Value::Data(_) | Value::Tombstone | Value::Deleted { .. } => None,
        }
    }

    /// Whether this is a delete.
    pub fn is_tombstone(&self) -> bool {
        matches!(self, Value::Tombstone | Value::Deleted { .. })
    }

    /// The writes a delete superseded (empty for anything else).
    pub fn superseded(&self) -> &[WriteId] {
        match self {
            Value::Deleted { superseded } => superseded,
            _ => &[],
        }
    }
}

/// Every version of one key that a replica holds: siblings and tombstones with their dots.
pub type Object = DvvSet<Value>;

/// Whether every sibling of `object` is a tombstone (the key reads as not found).
/// Data siblings a sibling delete names count as deleted (see [`distinct_writes`]).
pub fn is_deleted(object: &Object) -> bool {
    distinct_writes(object).all(|(_, _, v)| v.is_tombstone())
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
/// siblings with one write id are one client write coordinated twice (a retry). A sibling
/// whose write a sibling delete names is left out: it is a late copy of a deleted write.
pub fn distinct_writes(object: &Object) -> impl Iterator<Item = (&Actor, u64, &Value)> {
    let deleted: std::collections::HashSet<WriteId> = object
        .values()
        .flat_map(|v| v.superseded().iter().copied())
        .collect();
    let mut seen = std::collections::HashSet::new();
    object.iter().filter(move |(_, _, v)| {
        v.write_id()
            .is_none_or(|id| !deleted.contains(&id) && seen.insert(id))
    })
}

/// The data siblings of `object`, tombstones left out, and each write once (see
/// [`distinct_writes`]).
pub fn live_values(object: &Object) -> Vec<&[u8]> {
    distinct_writes(object)
        .filter_map(|(_, _, value)| value.bytes())
        .collect()
}
