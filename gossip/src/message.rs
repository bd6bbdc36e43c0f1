//! The wire format: three messages of a Scuttlebutt push-pull exchange, serialized with
//! postcard.
//!
//! An exchange is `Syn` (initiator's digest) → `SynAck` (responder's digest plus what the
//! initiator lacks) → `Ack` (what the responder lacks). A digest lists, per known member, its
//! generation, latest heartbeat and highest state version, so each side sends only the versions
//! the other is missing.
//!
//! This module must not know about time, peers' liveness or the engine's state: it defines values,
//! their encoding, and the structural checks every received message must pass.

use serde::{Deserialize, Serialize};

use crate::error::GossipError;
use crate::types::{NodeId, Status};

/// One gossip message with its envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Cluster name; messages for another cluster are rejected.
    pub cluster: String,
    /// The sender's node id.
    pub from: NodeId,
    /// What the message says.
    pub body: Body,
}

/// The three steps of a push-pull exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Opens an exchange: "this is what I know".
    Syn {
        /// The initiator's digest.
        digest: Digest,
    },
    /// Answers a `Syn`: "this is what I know, and here is what you lack".
    SynAck {
        /// The responder's digest.
        digest: Digest,
        /// State the initiator lacks.
        delta: Delta,
    },
    /// Closes an exchange: "here is what you lack".
    Ack {
        /// State the responder lacks.
        delta: Delta,
    },
}

/// A summary of everything a node knows, one entry per member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// `None` when every known member is listed. Otherwise the list did not fit the byte budget
    /// and it lists every known member whose id is in the range, plus possibly the sender; it
    /// says nothing about members outside the range.
    pub range: Option<IdRange>,
    /// Entries, one per member listed.
    pub entries: Vec<DigestEntry>,
}

/// An inclusive range of node ids; a missing bound is unbounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// Lowest id included, if bounded below.
    pub first: Option<NodeId>,
    /// Highest id included, if bounded above.
    pub last: Option<NodeId>,
}

impl IdRange {
    /// Whether `id` is in the range.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.first.as_ref().is_none_or(|first| first <= id)
            && self.last.as_ref().is_none_or(|last| id <= last)
    }
}

impl Digest {
    /// Whether a member missing from this digest is unknown to its sender.
    pub fn covers(&self, id: &NodeId) -> bool {
        self.range.as_ref().is_none_or(|range| range.contains(id))
    }
}

/// What a node knows about one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The member.
    pub node: NodeId,
    /// Its generation (incarnation).
    pub generation: u64,
    /// Its latest heartbeat known to the sender. Heartbeats travel in digests only, so they cost
    /// no state transfer.
    pub heartbeat: u64,
    /// The highest state version of that member the sender holds.
    pub max_version: u64,
}

/// State the receiver lacks, grouped by member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// Per-member updates.
    pub nodes: Vec<NodeDelta>,
}

/// The updates of one member with versions in `(from_version, to_version]`.
///
/// Only the latest version of each key is ever sent, in ascending version order; a receiver that
/// holds `from_version` (or more) of this generation is complete up to `to_version` after
/// applying it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDelta {
    /// The member.
    pub node: NodeId,
    /// Its generation.
    pub generation: u64,
    /// Its latest heartbeat known to the sender.
    pub heartbeat: u64,
    /// What the member says about itself; present when `from_version` is 0.
    pub meta: Option<NodeMeta>,
    /// The receiver must already hold this version (0: nothing) for the delta to apply.
    pub from_version: u64,
    /// The version the receiver holds after applying.
    pub to_version: u64,
    /// Changes in ascending version order.
    pub changes: Vec<VersionedChange>,
}

/// The fixed part of a member's identity, sent with its first delta.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Transport address, opaque.
    pub address: String,
    /// Failure domain.
    pub zone: String,
    /// Relative capacity.
    pub capacity: u32,
}

/// One change with the version the owner gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedChange {
    /// Owner-assigned version, unique within a generation.
    pub version: u64,
    /// The change.
    pub change: Change,
}

/// A change to a member's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The member's lifecycle status.
    Status(Status),
    /// An application key now holds `value`.
    Set {
        /// Application key.
        key: String,
        /// Opaque value.
        value: Vec<u8>,
    },
}

impl Message {
    /// Encodes with postcard, refusing to produce more than `max_bytes`.
    pub fn encode(&self, max_bytes: usize) -> Result<Vec<u8>, GossipError> {
        let bytes = postcard::to_stdvec(self).map_err(|e| GossipError::Malformed(e.to_string()))?;
        if bytes.len() > max_bytes {
            return Err(GossipError::Oversized {
                len: bytes.len(),
                max: max_bytes,
            });
        }
        Ok(bytes)
    }

    /// Decodes a received datagram: rejects oversized input, malformed postcard, trailing bytes,
    /// and structurally invalid content (see [`Message::validate`]).
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Self, GossipError> {
        if bytes.len() > max_bytes {
            return Err(GossipError::Oversized {
                len: bytes.len(),
                max: max_bytes,
            });
        }
        let (message, rest): (Self, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|e| GossipError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(GossipError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        message.validate()?;
        Ok(message)
    }

    /// The exact encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        postcard::experimental::serialized_size(self).unwrap_or(usize::MAX)
    }

    /// Structural checks that do not depend on local state: non-empty ids, no member listed
    /// twice, and every delta's versions in `(from_version, to_version]`, strictly ascending.
    pub fn validate(&self) -> Result<(), GossipError> {
        if self.from.as_str().is_empty() {
            return Err(GossipError::Invalid("empty sender id".into()));
        }
        match &self.body {
            Body::Syn { digest } => validate_digest(digest),
            Body::SynAck { digest, delta } => {
                validate_digest(digest)?;
                validate_delta(delta)
            }
            Body::Ack { delta } => validate_delta(delta),
        }
    }
}

fn validate_digest(digest: &Digest) -> Result<(), GossipError> {
    let inverted = digest
        .range
        .as_ref()
        .and_then(|r| match (&r.first, &r.last) {
            (Some(first), Some(last)) if first > last => Some((first, last)),
            _ => None,
        });
    if let Some((first, last)) = inverted {
        return Err(GossipError::Invalid(format!(
            "digest range {first}..={last} is empty"
        )));
    }
    if digest.entries.iter().any(|e| e.node.as_str().is_empty()) {
        return Err(GossipError::Invalid("empty node id in digest".into()));
    }
    let mut ids: Vec<&NodeId> = digest.entries.iter().map(|e| &e.node).collect();
    // Complete digests are sent in id order, so this is usually a single pass.
    if !ids.is_sorted() {
        ids.sort_unstable();
    }
    if let Some(twice) = ids.windows(2).find_map(|pair| match pair {
        [a, b] if a == b => Some(*a),
        _ => None,
    }) {
        return Err(GossipError::Invalid(format!(
            "node {twice} listed twice in digest"
        )));
    }
    Ok(())
}

fn validate_delta(delta: &Delta) -> Result<(), GossipError> {
    let mut seen = std::collections::BTreeSet::new();
    for node in &delta.nodes {
        if node.node.as_str().is_empty() {
            return Err(GossipError::Invalid("empty node id in delta".into()));
        }
        if !seen.insert(&node.node) {
            return Err(GossipError::Invalid(format!(
                "node {} listed twice in delta",
                node.node
            )));
        }
        if node.from_version > node.to_version {
            return Err(GossipError::Invalid(format!(
                "node {}: from_version {} > to_version {}",
                node.node, node.from_version, node.to_version
            )));
        }
        if node.from_version == 0 && node.meta.is_none() {
            return Err(GossipError::Invalid(format!(
                "node {}: a delta from version 0 must carry its identity",
                node.node
            )));
        }
        let mut previous = node.from_version;
        for change in &node.changes {
            if change.version <= previous || change.version > node.to_version {
                return Err(GossipError::Invalid(format!(
                    "node {}: change version {} out of order or outside ({}, {}]",
                    node.node, change.version, node.from_version, node.to_version
                )));
            }
            previous = change.version;
        }
    }
    Ok(())
}
