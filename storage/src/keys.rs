//! How user keys, hint keys and metadata are laid out in the engine's ordered key spaces.
//!
//! * data: `partition (u32 big-endian) ++ user key`, so one ring partition is one contiguous
//!   range and a partition scan is one range scan in key order;
//! * hints: `len(owner) (u8) ++ owner ++ partition (u32 big-endian) ++ user key`, so the hints
//!   held for one owner are one range;
//! * meta: fixed names for the node id, the epoch and the key-incarnation lease,
//!   `retired/ ++ partition` for a partition's retirement floor, and `state/ ++ name` for the
//!   node state saved by [`crate::Store::save_node_state`] (no fixed name starts with
//!   `state/` or `retired/`).
//!
//! This module must not know the version types, rings or the network.

use std::ops::Bound;

use crate::error::{Result, StorageError};

/// Longest node id (ours or a hint owner's), in bytes: hint keys prefix it with one length byte.
pub const MAX_NODE_ID_BYTES: usize = 255;

/// Longest engine key fjall accepts (lsm-tree stores key lengths as `u16`).
const ENGINE_MAX_KEY: usize = u16::MAX as usize;

/// Bytes a hint key adds in front of the user key, at most: owner length, owner, partition.
const HINT_OVERHEAD: usize = 1 + MAX_NODE_ID_BYTES + 4;

/// Longest accepted user key, in bytes (65 275).
///
/// Every key over 64 KiB is rejected with [`StorageError::KeyTooLarge`]; the limit is a little
/// under 64 KiB because the engine caps its own keys at 65 535 bytes and a hint key adds up to
/// 260 bytes of owner and partition in front of the user key.
pub const MAX_KEY_BYTES: usize = ENGINE_MAX_KEY - HINT_OVERHEAD;

/// The layout of the keys and values this build writes. A store records the format it was
/// written in ([`META_FORMAT`]); a build refuses a store of a later format, and migrates one of
/// an earlier format it still reads (none yet: format 1 is the first).
///
/// | format | since | layout |
/// |---|---|---|
/// | 1 | the first release | the keyspaces and keys of the crate docs |
pub const STORE_FORMAT: u32 = 1;
/// Meta key holding the store's format (u32 big-endian); a store without it, written before
/// formats were recorded, is format 1.
pub(crate) const META_FORMAT: &[u8] = b"format";
/// Meta key holding the node id (UTF-8).
pub(crate) const META_NODE_ID: &[u8] = b"node_id";
/// Meta key holding the epoch (u64 big-endian).
pub(crate) const META_EPOCH: &[u8] = b"epoch";
/// Prefix of the meta keys holding node state; the fixed names above never start with it.
pub(crate) const META_STATE_PREFIX: &[u8] = b"state/";
/// Meta key holding the key-incarnation lease (u64 big-endian): every incarnation below it
/// may have been handed out.
pub(crate) const META_INCARNATION_LEASE: &[u8] = b"incarnation_lease";
/// Meta key present while a session runs (written at open, removed by a clean close): found
/// at open, the last session ended in a crash or power loss, which may have taken writes that
/// reads had already returned.
pub(crate) const META_RUNNING: &[u8] = b"running";
/// Prefix of the meta keys holding a partition's retirement floor (`retired/ ++ partition`,
/// u64 big-endian value): this node's key incarnations below it are retired in the partition.
pub(crate) const META_RETIRED_PREFIX: &[u8] = b"retired/";

/// Longest name of a piece of node state ([`crate::Store::save_node_state`]), in bytes.
pub const MAX_NODE_STATE_NAME_BYTES: usize = 64;

/// Largest piece of node state ([`crate::Store::save_node_state`]): 16 MiB.
pub const MAX_NODE_STATE_BYTES: usize = 16 * 1024 * 1024;

/// Rejects keys over [`MAX_KEY_BYTES`].
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(StorageError::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// Rejects empty node ids and ids over [`MAX_NODE_ID_BYTES`].
pub(crate) fn check_node_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "empty"
    } else if id.len() > MAX_NODE_ID_BYTES {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(StorageError::InvalidNodeId {
        id: id.chars().take(MAX_NODE_ID_BYTES).collect(),
        reason,
    })
}

/// Rejects empty node-state names and names over [`MAX_NODE_STATE_NAME_BYTES`].
pub(crate) fn check_state_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NODE_STATE_NAME_BYTES {
        "longer than 64 bytes"
    } else {
        return Ok(());
    };
    Err(StorageError::InvalidStateName {
        name: name.chars().take(MAX_NODE_STATE_NAME_BYTES).collect(),
        reason,
    })
}

/// The meta-space key of the node state called `name`.
pub(crate) fn state_key(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(META_STATE_PREFIX.len() + name.len());
    out.extend_from_slice(META_STATE_PREFIX);
    out.extend_from_slice(name.as_bytes());
    out
}

/// The meta-space key of a partition's retirement floor.
pub(crate) fn retired_key(partition: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(META_RETIRED_PREFIX.len() + 4);
    out.extend_from_slice(META_RETIRED_PREFIX);
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

/// The data-space key of `key` in `partition`.
pub(crate) fn data_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len());
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The user key inside a data-space key.
pub(crate) fn split_data_key(raw: &[u8]) -> Result<(u32, &[u8])> {
    match raw.split_first_chunk::<4>() {
        Some((p, key)) => Ok((u32::from_be_bytes(*p), key)),
        None => Err(StorageError::Corrupt {
            space: "data",
            key: raw.to_vec(),
            reason: "engine key shorter than its partition prefix".into(),
        }),
    }
}

/// Range bounds of one partition in the data space, strictly after `after` when given.
pub(crate) fn partition_bounds(
    partition: u32,
    after: Option<&[u8]>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lower = match after {
        Some(key) => Bound::Excluded(data_key(partition, key)),
        None => Bound::Included(partition.to_be_bytes().to_vec()),
    };
    let upper = match partition.checked_add(1) {
        Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
        None => Bound::Unbounded,
    };
    (lower, upper)
}

/// The prefix shared by every hint held for `owner`.
pub(crate) fn hint_prefix(owner: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + owner.len());
    // check_node_id keeps owner ids under 256 bytes.
    out.push(owner.len() as u8);
    out.extend_from_slice(owner.as_bytes());
    out
}

/// The hint-space key of `key` in `partition` held for `owner`.
pub(crate) fn hint_key(owner: &str, partition: u32, key: &[u8]) -> Vec<u8> {
    let mut out = hint_prefix(owner);
    out.reserve(4 + key.len());
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Splits a hint-space key into owner, partition and user key.
pub(crate) fn split_hint_key(raw: &[u8]) -> Result<(&str, u32, &[u8])> {
    let corrupt = |reason: &str| StorageError::Corrupt {
        space: "hints",
        key: raw.to_vec(),
        reason: reason.to_string(),
    };
    let (&len, rest) = raw.split_first().ok_or_else(|| corrupt("empty hint key"))?;
    let len = usize::from(len);
    if rest.len() < len + 4 {
        return Err(corrupt("hint key shorter than its owner and partition"));
    }
    let (owner, rest) = rest.split_at(len);
    let owner = std::str::from_utf8(owner).map_err(|_| corrupt("owner id is not UTF-8"))?;
    let (partition, key) = split_data_key(rest).map_err(|_| corrupt("no partition"))?;
    Ok((owner, partition, key))
}

/// The smallest byte string greater than every string starting with `prefix`, or `None` when
/// there is none (`prefix` is all `0xff`).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < u8::MAX {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// Range bounds of every key starting with `prefix`.
pub(crate) fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (
        Bound::Included(prefix.to_vec()),
        prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_sort_by_partition_then_key() {
        // A partition must be one contiguous range (one range scan per partition).
        let mut keys = [
            data_key(2, b"a"),
            data_key(1, b"zzz"),
            data_key(1, b""),
            data_key(256, b"a"),
            data_key(1, b"b"),
        ];
        keys.sort();
        let split: Vec<(u32, Vec<u8>)> = keys
            .iter()
            .map(|k| {
                let (p, key) = split_data_key(k).expect("valid");
                (p, key.to_vec())
            })
            .collect();
        assert_eq!(
            split,
            vec![
                (1, b"".to_vec()),
                (1, b"b".to_vec()),
                (1, b"zzz".to_vec()),
                (2, b"a".to_vec()),
                (256, b"a".to_vec()),
            ]
        );
    }

    #[test]
    fn hint_keys_round_trip() {
        let cases: &[(&str, u32, &[u8])] = &[
            ("node-a", 0, b""),
            ("b", u32::MAX, b"key"),
            (&"x".repeat(255), 7, &[0xff; 10]),
        ];
        for &(owner, partition, key) in cases {
            let raw = hint_key(owner, partition, key);
            assert_eq!(
                split_hint_key(&raw).expect("valid"),
                (owner, partition, key)
            );
            assert!(raw.starts_with(&hint_prefix(owner)));
        }
        assert!(split_hint_key(&[]).is_err());
        assert!(split_hint_key(&[5, b'a']).is_err());
    }

    #[test]
    fn prefix_successor_table() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"ab", Some(b"ac")),
            (&[1, 0xff], Some(&[2])),
            (&[0xff, 0xff], None),
            (b"", None),
        ];
        for &(prefix, want) in cases {
            assert_eq!(prefix_successor(prefix).as_deref(), want, "{prefix:?}");
        }
    }

    #[test]
    fn key_limit_is_under_64_kib_and_fits_the_engine() {
        const { assert!(MAX_KEY_BYTES < 64 * 1024) };
        assert!(check_key(&vec![0; MAX_KEY_BYTES]).is_ok());
        assert!(check_key(&vec![0; MAX_KEY_BYTES + 1]).is_err());
        assert!(check_key(&vec![0; 64 * 1024 + 1]).is_err());
        let longest = hint_key(&"o".repeat(MAX_NODE_ID_BYTES), 0, &vec![0; MAX_KEY_BYTES]);
        assert_eq!(longest.len(), ENGINE_MAX_KEY);
    }

    #[test]
    fn state_names_are_checked_and_never_collide_with_fixed_meta_keys() {
        assert!(check_state_name("ring").is_ok());
        assert!(check_state_name(&"s".repeat(MAX_NODE_STATE_NAME_BYTES)).is_ok());
        assert!(check_state_name("").is_err());
        assert!(check_state_name(&"s".repeat(MAX_NODE_STATE_NAME_BYTES + 1)).is_err());
        // A multi-byte name is measured in bytes, and the error keeps the message short.
        match check_state_name(&"é".repeat(40)) {
            Err(StorageError::InvalidStateName { name, .. }) => assert!(name.len() <= 2 * 64),
            other => panic!("80-byte name gave {other:?}"),
        }
        for fixed in [META_NODE_ID, META_EPOCH, META_FORMAT] {
            assert!(!fixed.starts_with(META_STATE_PREFIX));
        }
        assert_eq!(state_key("epoch"), b"state/epoch");
        assert_eq!(state_key("node_id"), b"state/node_id");
    }

    #[test]
    fn node_ids_are_checked() {
        assert!(check_node_id("n1").is_ok());
        assert!(check_node_id("").is_err());
        assert!(check_node_id(&"n".repeat(256)).is_err());
    }
}
