//! Helpers shared by the fuzz targets in `fuzz_targets/`: the round-trip checks every target
//! runs on a value it managed to decode, and a byte-slice model of the transport's frame reader.
//!
//! Every decoder a peer or a client can reach must turn arbitrary bytes into either a value or
//! an error, never a panic; and a decoded value, encoded again, must decode to the same value.
//! Canonical re-encoding is *not* required of the input (postcard may accept several spellings
//! of one value), only of the value once decoded.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes `value` with postcard; every type fuzzed here serializes infallibly into a `Vec`.
///
/// # Panics
///
/// When serialization fails, which is itself a finding (a decoded value that cannot be sent
/// back).
pub fn encode<T: Serialize + Debug>(value: &T) -> Vec<u8> {
    match postcard::to_stdvec(value) {
        Ok(bytes) => bytes,
        Err(error) => panic!("a decoded value does not encode: {error}: {value:?}"),
    }
}

/// Decodes postcard bytes the way the node does for whole messages: the value must use every
/// byte (trailing bytes are an error).
pub fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

/// Checks that `value` (already decoded) survives encode → decode unchanged, and that encoding
/// is deterministic (the second encoding equals the first).
///
/// # Panics
///
/// When the round trip changes the value or the bytes: the finding the fuzzer reports.
pub fn assert_round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let first = encode(value);
    let Some(again) = decode_exact::<T>(&first) else {
        panic!("re-encoded value does not decode: {value:?} as {first:?}");
    };
    assert_eq!(&again, value, "round trip changed the value");
    assert_eq!(encode(&again), first, "encoding is not deterministic");
}

/// Like [`assert_round_trip`] for types whose `PartialEq` is not reflexive (they hold `f64`, and
/// a NaN is not equal to itself): compares the encodings instead of the values.
///
/// # Panics
///
/// When the second encoding differs from the first.
pub fn assert_round_trip_bytes<T>(value: &T)
where
    T: Serialize + DeserializeOwned + Debug,
{
    let first = encode(value);
    let Some(again) = decode_exact::<T>(&first) else {
        panic!("re-encoded value does not decode: {value:?} as {first:?}");
    };
    assert_eq!(encode(&again), first, "round trip changed the encoding");
}

/// Why a frame was refused, mirroring the reasons of `dynamo_client::transport`'s frame reader.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer than 4 header bytes.
    NoHeader,
    /// The announced length is above the limit.
    TooLarge,
    /// Fewer payload bytes than announced.
    Truncated,
    /// The payload is not one whole postcard value.
    Malformed,
}

/// The frame reader of `dynamo_client::transport` (private and async over a QUIC stream there)
/// over a byte slice: a `u32` big-endian length, refused above `limit`, then exactly that many
/// postcard bytes holding one value with nothing after it. Returns the value and the bytes that
/// follow the frame.
pub fn read_frame<T: DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<(T, &[u8]), FrameError> {
    let Some((header, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(FrameError::NoHeader);
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len > limit {
        return Err(FrameError::TooLarge);
    }
    if rest.len() < len {
        return Err(FrameError::Truncated);
    }
    let (payload, after) = rest.split_at(len);
    decode_exact(payload)
        .map(|value| (value, after))
        .ok_or(FrameError::Malformed)
}

/// The frame writer of `dynamo_client::transport`: the length, then the postcard bytes.
///
/// # Panics
///
/// When the value does not encode (see [`encode`]) or is longer than `u32::MAX` bytes.
pub fn write_frame<T: Serialize + Debug>(value: &T) -> Vec<u8> {
    let payload = encode(value);
    let Ok(len) = u32::try_from(payload.len()) else {
        panic!("frame of {} bytes", payload.len());
    };
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// A small replica for the Merkle session targets: a 4 × 2 tree (16 leaf segments, small enough
/// for the fuzzer to hit real segment numbers) over 40 keys, with its key index.
pub fn merkle_replica() -> (dynamo_merkle::MerkleTree, dynamo_merkle::KeyIndex) {
    let Ok(shape) = dynamo_merkle::TreeShape::new(2, 2) else {
        panic!("4 × 2 is a valid tree shape");
    };
    let mut index = dynamo_merkle::KeyIndex::new(shape);
    for i in 0..40u32 {
        let key = format!("key-{i}");
        index.set(
            key.as_bytes(),
            Some(dynamo_merkle::key_hash(key.as_bytes(), &i.to_le_bytes())),
        );
    }
    let tree = dynamo_merkle::MerkleTree::from_entries(shape, index.iter());
    (tree, index)
}

/// Wraps `payload` as the binary context format of `dynamo_vclock::Context` (magic, version,
/// payload, CRC-32), so the fuzzer reaches the clock decoder behind the checksum.
pub fn seal_context(payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(payload.len() + 8);
    bytes.extend_from_slice(&dynamo_vclock::context::MAGIC);
    bytes.push(dynamo_vclock::context::VERSION);
    bytes.extend_from_slice(payload);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}
