//! Invariant 6, cluster metadata: after healing, every running node uses the same ring and the
//! same bucket table, every bucket a client created is there with its N, R and W, however many
//! nodes restarted, and every node whose leave was acknowledged has left the ring and announced
//! `Left` (paper 4.8: membership and configuration are persisted and gossiped).

use dynamo_protocol::BucketProps;

use crate::sim::check::Violation;

/// This invariant's name in reports.
pub const NAME: &str = "metadata";

/// What one running node holds.
#[derive(Debug, Clone)]
pub struct NodeMetadata {
    /// The node.
    pub name: String,
    /// Its announced status.
    pub status: Option<String>,
    /// Whether its ring includes it.
    pub in_ring: bool,
    /// `(version, digest)` of its ring.
    pub ring: Option<(u64, u128)>,
    /// Its bucket table.
    pub buckets: Vec<BucketProps>,
}

/// The metadata of every running node, and the buckets clients created.
#[derive(Debug, Clone, Default)]
pub struct MetadataView {
    /// Buckets created (acknowledged).
    pub created: Vec<BucketProps>,
    /// Every running node.
    pub nodes: Vec<NodeMetadata>,
    /// Nodes whose leave was acknowledged.
    pub left: Vec<String>,
}

/// Checks that metadata converged and kept every bucket.
pub fn check(view: &MetadataView) -> Vec<Violation> {
    let mut violations = Vec::new();
    let violation = |message: String| Violation {
        invariant: NAME,
        key: None,
        message,
    };
    for name in &view.left {
        let Some(node) = view.nodes.iter().find(|n| n.name == *name) else {
            continue;
        };
        if node.in_ring || node.status.as_deref() != Some("Left") {
            violations.push(violation(format!(
                "{name} was asked to leave but is {:?}{}",
                node.status,
                if node.in_ring {
                    " and still in the ring"
                } else {
                    ""
                }
            )));
        }
    }
    // Nodes that left the ring no longer take part.
    let members: Vec<&NodeMetadata> = view.nodes.iter().filter(|n| n.in_ring).collect();
    let Some(first) = members.first() else {
        return vec![violation("no ring member is running".into())];
    };
    for node in &members {
        if node.ring != first.ring {
            violations.push(violation(format!(
                "{} uses ring {:?}, {} uses {:?}",
                node.name, node.ring, first.name, first.ring
            )));
        }
        if node.buckets != first.buckets {
            violations.push(violation(format!(
                "{} and {} hold different bucket tables",
                node.name, first.name
            )));
        }
        for bucket in &view.created {
            if !node.buckets.contains(bucket) {
                violations.push(violation(format!(
                    "{} lost bucket {} ({:?})",
                    node.name, bucket.name, bucket
                )));
            }
        }
    }
    violations
}
