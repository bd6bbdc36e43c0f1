//! What coordinators emit and consume: commands for the driver, requests and replies between
//! a coordinator and replicas, and the client's response.
//!
//! This module must not know how messages are encoded or carried (that is `node`'s concern);
//! they are serde values so it can pick any format.

use dynamo_ring::NodeId;
use dynamo_vclock::VClock;
use serde::{Deserialize, Serialize};

use crate::error::QuorumError;
use crate::get::GetOk;
use crate::put::PutOk;
use crate::reap::ReapOutcome;
use crate::value::{Object, Value};

impl Command {
    /// Paper 4.6: `object` written to `target`; a fallback keeps it as a hint for the node it
    /// stands in for.
    pub(crate) fn write_to(target: &dynamo_ring::Target, key: &[u8], object: Object) -> Command {
        let hint = match &target.role {
            dynamo_ring::Role::Primary => None,
            dynamo_ring::Role::Fallback { for_node } => Some(for_node.clone()),
        };
        Command::Send {
            to: target.node.clone(),
            request: ReplicaRequest::Write {
                key: key.to_vec(),
                object,
                hint,
            },
        }
    }
}

/// A request from a coordinator to a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaRequest {
    /// Return the replica's versions of `key`.
    Read {
        /// The key.
        key: Vec<u8>,
    },
    /// Merge `object` into the replica's versions of `key` (a put, or a read repair).
    Write {
        /// The key.
        key: Vec<u8>,
        /// The versions to merge (a DVV join, so order and repetition do not matter).
        object: Object,
        /// Paper 4.6: set when the receiver stands in for this primary; it keeps the versions
        /// as a hint and hands them over when the primary is back.
        hint: Option<NodeId>,
    },
    /// Make every write the replica holds durable, then return its versions of `key`, the ones
    /// it holds as hints included (a reaper reads the tombstone this way: a replica that
    /// crashed after the read still holds it, so a reap that only some replicas carried out
    /// cannot leave an older value behind; and a hint it could still deliver keeps the key).
    ReadSynced {
        /// The key.
        key: Vec<u8>,
    },
    /// Return every version of `key` the node holds *outside* what the key's replicas hold:
    /// versions kept for another node (hints) and copies of a partition it does not replicate
    /// (not yet handed off). A reaper asks every node that is not a primary; any answer other
    /// than [`ReplicaReply::NotFound`] keeps the tombstone, since such versions could later be
    /// delivered to a primary that no longer remembers the delete. Answered, like
    /// [`ReplicaRequest::ReadSynced`], once every write the node holds is durable: a "nothing"
    /// must still be true after a power loss.
    Holdings {
        /// The key.
        key: Vec<u8>,
    },
    /// Delete `key` if the replica still holds exactly `expected` (a tombstone every primary
    /// holds); anything else means a write raced the reap and the key stays.
    Reap {
        /// The key.
        key: Vec<u8>,
        /// The tombstone set every primary reported.
        expected: Object,
    },
}

/// A replica's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaReply {
    /// The replica's versions of the key.
    Found(Object),
    /// The replica has no versions of the key.
    NotFound,
    /// The write was applied.
    Written,
    /// The reap was done (`true`) or refused because the versions changed (`false`).
    Reaped(bool),
    /// The replica could not serve the request (or the driver gave up reaching it).
    Failed(String),
}

/// Something a coordinator wants to draw the client's attention to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Warning {
    /// The key has more siblings than [`crate::SOFT_SIBLING_LIMIT`]; resolve them.
    ManySiblings(usize),
}

/// The answer for the client. Exactly one per coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The outcome of a put or delete.
    Put(Result<PutOk, QuorumError>),
    /// The outcome of a get: `Ok(None)` is "not found" (possibly with the context of a
    /// tombstone, see [`GetOk`]).
    Get(Result<GetOk, QuorumError>),
    /// The outcome of a reap attempt.
    Reap(ReapOutcome),
}

/// An effect a coordinator asks its driver to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Read the key from the local store and call `handle_local_read`.
    ReadLocal {
        /// The key.
        key: Vec<u8>,
    },
    /// Paper 4.5: apply the client's write to the local store atomically (a DVV update of the
    /// stored set with `context`, on the coordinator's actor) and call `handle_local_write`
    /// with the resulting set.
    WriteLocal {
        /// The key.
        key: Vec<u8>,
        /// What the client had read.
        context: VClock,
        /// The new value (a tombstone for a delete).
        value: Value,
    },
    /// Make the set the coordinator holds durable (merge it back with an fsync: nothing new is
    /// written) and call `handle_local_write` with the resulting set. A retried write found
    /// here may be only buffered (it came as a replica write); its acknowledgement must not be.
    SyncLocal {
        /// The key.
        key: Vec<u8>,
        /// The set read from the local store.
        object: Object,
    },
    /// Send `request` to replica `to` and call `handle_reply` with its answer (or with
    /// `ReplicaReply::Failed` if it cannot be reached).
    Send {
        /// The replica.
        to: NodeId,
        /// What to ask.
        request: ReplicaRequest,
    },
    /// Answer the client.
    Respond(Response),
}
