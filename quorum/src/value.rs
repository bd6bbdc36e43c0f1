//! What a key holds: a dotted version vector set of values, where a delete is a value too
//! (a tombstone), so it carries a clock and wins or loses like any write (paper 4.4, and Riak's
//! lesson that deletes are a protocol).
//!
//! This module must not know about storage or the network.

use dynamo_vclock::DvvSet;
use serde::{Deserialize, Serialize};

/// One sibling of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// Bytes written by a client (encoded as one byte string, not a sequence of numbers, so
    /// decoding a stored value is a copy).
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A delete: hides older values until it is reaped.
    Tombstone,
}

/// Every version of one key that a replica holds: siblings and tombstones with their dots.
pub type Object = DvvSet<Value>;

/// Whether every sibling of `object` is a tombstone (the key reads as not found).
pub fn is_deleted(object: &Object) -> bool {
    object.values().all(|v| *v == Value::Tombstone)
}

/// The data siblings of `object`, tombstones left out.
pub fn live_values(object: &Object) -> Vec<&[u8]> {
    object
        .values()
        .filter_map(|v| match v {
            Value::Data(bytes) => Some(bytes.as_slice()),
            Value::Tombstone => None,
        })
        .collect()
}
