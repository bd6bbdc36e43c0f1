//! Key positions: MD5 of the key bytes as a 128-bit big-endian integer (paper section 4.2).
//!
//! This module must not know about nodes or partitions; it only maps bytes to a point.

use md5::{Digest, Md5};

/// A point on the ring: the 128-bit output space of MD5, read big-endian.
pub type KeyPosition = u128;

/// The ring position of `key` (paper 4.2: "applies a MD5 hash on the key to generate a 128-bit
/// identifier").
///
/// ```
/// // MD5("") = d41d8cd98f00b204e9800998ecf8427e
/// assert_eq!(dynamo_ring::key_position(b""), 0xd41d8cd98f00b204e9800998ecf8427e);
/// ```
pub fn key_position(key: &[u8]) -> KeyPosition {
    let digest = Md5::digest(key);
    u128::from_be_bytes(digest.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1321 test vectors: placement must be identical on every machine, forever.
    #[test]
    fn positions_match_rfc_1321_vectors() {
        let cases: &[(&[u8], u128)] = &[
            (b"", 0xd41d_8cd9_8f00_b204_e980_0998_ecf8_427e),
            (b"a", 0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661),
            (b"abc", 0x9001_5098_3cd2_4fb0_d696_3f7d_28e1_7f72),
            (b"message digest", 0xf96b_697d_7cb7_938d_525a_2f31_aaf1_61d0),
        ];
        for (key, expected) in cases {
            assert_eq!(key_position(key), *expected, "key {key:?}");
        }
    }
}
