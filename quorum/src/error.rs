//! Why a request failed, as values a driver can turn into a message a person can act on.
//!
//! This module must not know how errors are shown or sent.

use dynamo_ring::NodeId;

use crate::config::ConfigError;

/// Why a get, put or delete did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// The quorum parameters are invalid.
    #[error("invalid quorum: {0}")]
    Config(#[from] ConfigError),
    /// Not enough replicas answered successfully, and the missing ones can no longer answer.
    #[error(
        "only {answered} of {required} required replicas answered{}",
        describe_failed(failed)
    )]
    NotEnoughReplicas {
        /// Successful answers that count towards the quorum.
        answered: usize,
        /// The quorum (R, W, PR or PW) that was not reached.
        required: usize,
        /// Replicas that failed or were unreachable, with the reason.
        failed: Vec<(NodeId, String)>,
    },
    /// Too few nodes are up to even try: the preference list had fewer targets than the quorum.
    #[error("only {available} replicas are reachable, {required} required")]
    Unavailable {
        /// Targets in the preference list.
        available: usize,
        /// The quorum needed.
        required: usize,
    },
    /// The deadline passed before the quorum was reached.
    #[error("timed out after {waited_ms} ms with {answered} of {required} replicas answered")]
    Timeout {
        /// Successful answers so far.
        answered: usize,
        /// The quorum needed.
        required: usize,
        /// How long the coordinator waited.
        waited_ms: u64,
    },
    /// The coordinator is not in the key's preference list (paper 4.5: a put is coordinated by
    /// one of the key's replicas); the driver must forward the request.
    #[error("node {coordinator} is not a replica of this key; forward the request")]
    NotACoordinator {
        /// The node asked to coordinate.
        coordinator: NodeId,
    },
    /// The client's context was obtained by reading a different key.
    #[error("the context was read from another key")]
    ContextForAnotherKey,
    /// The write would leave more siblings than the hard limit; resolve them first (read, merge,
    /// write with the context).
    #[error(
        "the write would leave {siblings} siblings (limit {limit}); read the key, resolve its siblings and write with the context"
    )]
    TooManySiblings {
        /// Siblings the key would have.
        siblings: usize,
        /// The hard limit.
        limit: usize,
    },
    /// The local store failed.
    #[error("local store failed: {0}")]
    Local(String),
}

fn describe_failed(failed: &[(NodeId, String)]) -> String {
    if failed.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = failed
        .iter()
        .map(|(node, reason)| format!("{node} ({reason})"))
        .collect();
    format!(": {}", parts.join(", "))
}
