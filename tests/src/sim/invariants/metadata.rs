//! Invariant 6, cluster metadata: after healing, every running node uses the same ring and the
//! same bucket table, and every bucket a client created is there with its N, R and W, however
//! many nodes restarted (paper 4.8: membership and configuration are persisted and gossiped).

use dynamo_node::protocol::BucketProps;

use crate::sim::check::Violation;

/// This invariant's name in reports.
pub const NAME: &str = "metadata";

/// What one running node holds.
#[derive(Debug, Clone)]
pub struct NodeMetadata {
    /// The node.
    pub name: String,
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
}

/// Checks that metadata converged and kept every bucket.
pub fn check(view: &MetadataView) -> Vec<Violation> {
    let mut violations = Vec::new();
    let violation = |message: String| Violation {
        invariant: NAME,
        key: None,
        message,
    };
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
