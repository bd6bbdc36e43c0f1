//! Per-key hashes and node hashes.
//!
//! A key's *placement hash* depends on the key bytes alone and picks its leaf segment, so
//! updating a key never moves it. A key's [`KeyHash`] covers the key and the caller's bytes
//! for the key's full version state (every sibling, its clock, tombstones included), so two
//! replicas holding different sibling sets disagree. This module must not know the vclock or
//! DVV types: callers hand over opaque serialized state bytes or a digest of them.

use std::fmt;
use std::ops::{BitXor, BitXorAssign};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Seed that separates key hashes from placement hashes.
const KEY_HASH_SEED: u64 = 0x6479_6e61_6d6f_4b48; // "dynamoKH"

/// The hash of one key and its full version state.
///
/// Never zero, so every present key changes its segment's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub u64);

/// The hash of a tree node: the XOR of the [`KeyHash`]es of every key below it (0 when empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeHash(pub u64);

impl NodeHash {
    /// The hash of a node with no keys below it.
    pub const EMPTY: NodeHash = NodeHash(0);
}

impl BitXor for NodeHash {
    type Output = NodeHash;
    fn bitxor(self, rhs: NodeHash) -> NodeHash {
        NodeHash(self.0 ^ rhs.0)
    }
}

impl BitXorAssign for NodeHash {
    fn bitxor_assign(&mut self, rhs: NodeHash) {
        self.0 ^= rhs.0;
    }
}

impl BitXorAssign<KeyHash> for NodeHash {
    fn bitxor_assign(&mut self, rhs: KeyHash) {
        self.0 ^= rhs.0;
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for NodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

// Hashes are uniformly random, so postcard's varints would spend 10 bytes on most of them;
// fixed 8 little-endian bytes are smaller.
macro_rules! fixed_width_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.to_le_bytes().serialize(s)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <[u8; 8]>::deserialize(d).map(|b| Self(u64::from_le_bytes(b)))
            }
        }
    };
}
fixed_width_serde!(KeyHash);
fixed_width_serde!(NodeHash);

/// The placement hash of a key: picks its leaf segment and sub-bucket. Depends on the key only.
pub fn placement_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The [`KeyHash`] of `key` whose full serialized version state is `version_state`.
///
/// ```
/// use dynamo_merkle::key_hash;
/// let a = key_hash(b"cart:42", b"[(A,1)]:book");
/// let b = key_hash(b"cart:42", b"[(A,1)]:book|[(B,1)]:pen"); // an extra sibling
/// assert_ne!(a, b);
/// assert_eq!(a, key_hash(b"cart:42", b"[(A,1)]:book"));
/// ```
pub fn key_hash(key: &[u8], version_state: &[u8]) -> KeyHash {
    key_hash_with_digest(key, xxh3_64(version_state))
}

/// The [`KeyHash`] of `key` when the caller already holds a 64-bit digest of the key's full
/// version state (for example one kept next to the value in storage).
pub fn key_hash_with_digest(key: &[u8], state_digest: u64) -> KeyHash {
    key_hash_with_placement(placement_hash(key), state_digest)
}

/// As [`key_hash_with_digest`], with the key's [`placement_hash`] already computed.
pub fn key_hash_with_placement(placement: u64, state_digest: u64) -> KeyHash {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&placement.to_le_bytes());
    buf[8..].copy_from_slice(&state_digest.to_le_bytes());
    let h = xxh3_64_with_seed(&buf, KEY_HASH_SEED);
    // Zero would make a key invisible to the XOR; remap the one value.
    KeyHash(if h == 0 { 1 } else { h })
}
