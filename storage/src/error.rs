//! Errors of the storage crate.
//!
//! Every way a caller's input, the disk or the stored bytes can be wrong maps to one variant,
//! so the `node` can answer a client or a peer with a clear reason instead of crashing. This
//! module must not know about the network, rings or quorum logic.

use std::fmt;

/// Everything that can go wrong in a [`crate::Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A key longer than [`crate::MAX_KEY_BYTES`].
    #[error("key of {len} bytes is larger than the limit of {max} bytes")]
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A sibling value whose postcard encoding is larger than the configured limit
    /// ([`crate::StoreOptions::max_value_bytes`]).
    #[error("value of {len} encoded bytes is larger than the limit of {max} bytes")]
    ValueTooLarge {
        /// Encoded length of the rejected value.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A node id (ours or a hint owner's) that is empty or longer than
    /// [`crate::MAX_NODE_ID_BYTES`].
    #[error("invalid node id {id:?}: {reason}")]
    InvalidNodeId {
        /// The rejected id.
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A node-state name ([`crate::Store::save_node_state`]) that is empty or longer than
    /// [`crate::MAX_NODE_STATE_NAME_BYTES`].
    #[error("invalid node state name {name:?}: {reason}")]
    InvalidStateName {
        /// The rejected name (cut to its first 64 characters).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Node state ([`crate::Store::save_node_state`]) larger than
    /// [`crate::MAX_NODE_STATE_BYTES`].
    #[error("node state {name:?} of {len} bytes is larger than the limit of {max} bytes")]
    NodeStateTooLarge {
        /// The name it was to be saved under.
        name: String,
        /// Length of the rejected state.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The data directory belongs to another node: opening it would mix two nodes' data.
    #[error("the store belongs to node {stored:?}, not to {requested:?} (wrong data directory?)")]
    NodeIdMismatch {
        /// The node id recorded in the store.
        stored: String,
        /// The node id the caller asked for.
        requested: String,
    },
    /// The store was written in a later format than this build reads (a newer dynamo wrote
    /// it): downgrading a node's data is not supported.
    #[error(
        "the store is in format {found}, written by a newer dynamo; this build reads formats up to {supported}: run the newer build on it (a node cannot be downgraded)"
    )]
    NewerFormat {
        /// The format recorded in the store.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// The store was written in a format this build no longer reads.
    #[error(
        "the store is in format {found}, which this build no longer reads (it reads format {supported}): upgrade through the releases in between, one at a time"
    )]
    OlderFormat {
        /// The format recorded in the store.
        found: u32,
        /// The format this build reads.
        supported: u32,
    },
    /// Stored bytes that do not decode (disk corruption or a foreign format).
    #[error("corrupt {space} entry for key {}: {reason}", Escaped(.key))]
    Corrupt {
        /// Which part of the store: `data`, `hints` or `meta`.
        space: &'static str,
        /// The user key (or the raw engine key when it cannot be split).
        key: Vec<u8>,
        /// What is wrong.
        reason: String,
    },
    /// A value could not be encoded (a `Serialize` implementation failed).
    #[error("cannot encode a version set: {0}")]
    Encode(String),
    /// An operating-system I/O error (a full disk, a missing directory, permissions...).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The disk's free space fell below the reserve the store keeps: nothing was written. fjall
    /// poisons itself for good on a failed journal write, so the store refuses writes while
    /// they could still fail for want of space, and takes them again once space returns.
    #[error(
        "the disk is full: {free} bytes free, below the reserve of {reserve} bytes kept so the \
         store never runs out; nothing was written"
    )]
    DiskFull {
        /// Bytes free for the store's directory.
        free: u64,
        /// The reserve ([`crate::StoreOptions::disk_reserve_bytes`]).
        reserve: u64,
    },
    /// The engine can no longer promise durability: a journal write, flush or fsync failed, and
    /// fjall refuses every write until the store is reopened (a restart recovers from the
    /// journal, up to the last fsync that succeeded).
    #[error("the store can no longer promise durability: {0}")]
    Poisoned(String),
    /// Any other error of the storage engine (fjall), for example a poisoned journal after a
    /// failed fsync: the store refuses writes until it is reopened.
    #[error("storage engine error: {0}")]
    Engine(String),
}

#[cfg(feature = "fjall")]
impl From<fjall::Error> for StorageError {
    fn from(error: fjall::Error) -> Self {
        match error {
            fjall::Error::Io(io) => StorageError::Io(io),
            fjall::Error::Poisoned => StorageError::Poisoned(
                "an earlier journal write, flush or fsync failed (fjall is poisoned)".into(),
            ),
            other => StorageError::Engine(format!("{other:?}")),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Shows key bytes as escaped ASCII in error messages.
struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        write!(f, "\"{}\"", shown.escape_ascii())?;
        if self.0.len() > SHOWN {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}
