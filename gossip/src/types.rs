//! Identity types shared by the engine and the wire format: [`NodeId`], [`Identity`] and
//! [`Status`].
//!
//! This module must not know about time, the network or the failure detector: it only names
//! members and describes what they announce about themselves.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An opaque, stable node name (the paper's node identifier, section 4.8.1).
///
/// Cheap to clone (a shared string) because digests repeat every member each round.
#[derive(Clone, Eq)]
pub struct NodeId(Arc<str>);

impl PartialEq for NodeId {
    fn eq(&self, other: &Self) -> bool {
        // Ids cloned from one another share their allocation: skip the byte comparison.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl std::hash::Hash for NodeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            std::cmp::Ordering::Equal
        } else {
            self.0.cmp(&other.0)
        }
    }
}

impl NodeId {
    /// Makes an id from any string.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for NodeId {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// Who a member is: its id, its incarnation and what it tells others about itself.
///
/// `generation` grows every time the process restarts (for example a persisted counter or the
/// start time in milliseconds). A restarted node with the same id and a higher generation
/// replaces everything known about its older self. The address is carried for the transport;
/// this crate never parses or dials it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable node name.
    pub id: NodeId,
    /// Incarnation; higher wins.
    pub generation: u64,
    /// Transport address, opaque to this crate.
    pub address: String,
    /// Failure domain (data center or rack), used by placement (paper section 4.6).
    pub zone: String,
    /// Relative capacity, used by placement to weigh virtual nodes (paper section 4.2).
    pub capacity: u32,
}

impl Identity {
    /// An identity in zone `""` with capacity 1.
    pub fn new(id: impl Into<NodeId>, generation: u64, address: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            generation,
            address: address.into(),
            zone: String::new(),
            capacity: 1,
        }
    }

    /// Sets the zone.
    #[must_use]
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = zone.into();
        self
    }

    /// Sets the capacity.
    #[must_use]
    pub fn with_capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }
}

/// A member's announced lifecycle stage (paper section 4.8.1: joins and departures are
/// explicit administrative acts, distinct from transient failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Announced, not yet serving.
    Joining,
    /// Serving.
    Alive,
    /// Handing its data off before going away.
    Leaving,
    /// Gone for good; forgotten by everyone after a grace period.
    Left,
}
