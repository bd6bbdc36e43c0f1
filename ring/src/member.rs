//! Who can own data: node identities with a zone and a capacity weight.
//!
//! This module must not know how nodes are reached (addresses belong to gossip and `node`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable name of a physical node. Orders the members of a ring, so placement is the same
/// on every machine.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub String);

impl NodeId {
    /// The node id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(name: &str) -> Self {
        Self(name.to_owned())
    }
}

impl From<String> for NodeId {
    fn from(name: String) -> Self {
        Self(name)
    }
}

/// A physical node as the ring sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// Stable node name.
    pub id: NodeId,
    /// Failure domain (rack, availability zone, data centre). Replicas of a key are spread over
    /// distinct zones when there are enough of them.
    pub zone: String,
    /// Relative weight: a node of capacity 2 owns about twice the partitions of capacity 1.
    pub capacity: u32,
}

impl Member {
    /// A member with the given id, zone and capacity weight.
    pub fn new(id: impl Into<NodeId>, zone: impl Into<String>, capacity: u32) -> Self {
        Self {
            id: id.into(),
            zone: zone.into(),
            capacity,
        }
    }
}
