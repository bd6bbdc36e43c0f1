//! Opaque causal contexts handed to clients (paper §4.1: `get` returns a context that `put`
//! sends back).
//!
//! Binary form: `b"DYC"`, a version byte (1), the postcard encoding of the [`VClock`], and a
//! little-endian CRC-32 of all preceding bytes. Text form: the binary form in URL-safe base64
//! without padding, for CLIs and HTTP headers. Decoding checks size, magic, version, checksum,
//! encoding and clock validity, so a corrupt or foreign context is a [`ContextError`], never a
//! panic.
//!
//! This module must NOT know the network, storage or the wall clock; clients must not interpret
//! the bytes.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::vclock::VClock;

/// Leading bytes of every binary context (`DYC`, for dynamo context).
pub const MAGIC: [u8; 3] = *b"DYC";
/// The binary format version written by [`Context::to_bytes`].
pub const VERSION: u8 = 1;
/// Largest binary context accepted (64 KiB).
pub const MAX_BYTES: usize = 64 * 1024;
/// Largest number of clock entries accepted when decoding.
pub const MAX_ENTRIES: usize = 1024;

const HEADER: usize = MAGIC.len() + 1;
const CRC: usize = 4;
/// Smallest well-formed context: header, one byte for an empty postcard sequence, checksum.
const MIN_BYTES: usize = HEADER + 1 + CRC;

/// Why bytes or text are not a context this crate wrote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// No bytes at all (a client that has no context should send none).
    #[error("context is empty")]
    Empty,
    /// Fewer bytes than the smallest valid context (truncated).
    #[error("context is truncated: {len} bytes, at least {MIN_BYTES} needed")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// More bytes than [`MAX_BYTES`].
    #[error("context is too large: {len} bytes, at most {max} allowed")]
    TooLarge {
        /// Bytes received (or implied by the text length).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes do not start with [`MAGIC`]: not a dynamo context.
    #[error("not a dynamo context (wrong magic bytes)")]
    WrongMagic,
    /// A format version this build does not understand.
    #[error("unsupported context version {0}, expected {VERSION}")]
    UnsupportedVersion(u8),
    /// The checksum does not match: the context was corrupted or edited.
    #[error(
        "context checksum mismatch (corrupt): stored {stored:#010x}, computed {computed:#010x}"
    )]
    ChecksumMismatch {
        /// Checksum carried by the context.
        stored: u32,
        /// Checksum of the bytes received.
        computed: u32,
    },
    /// The checksum matched but the payload is not a valid clock.
    #[error("malformed context: {0}")]
    Malformed(String),
    /// The clock has more than [`MAX_ENTRIES`] entries.
    #[error("context has {count} clock entries, at most {max} allowed")]
    TooManyEntries {
        /// Entries found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The text form is not URL-safe unpadded base64.
    #[error("context text is not URL-safe base64: {0}")]
    InvalidText(String),
}

/// An opaque causal context: the [`VClock`] a client read, to be sent back with its write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Context(VClock);

impl Context {
    /// Wraps a clock (e.g. [`crate::DvvSet::context`]).
    pub fn new(clock: VClock) -> Self {
        Self(clock)
    }

    /// The wrapped clock.
    pub fn clock(&self) -> &VClock {
        &self.0
    }

    /// Unwraps the clock.
    pub fn into_clock(self) -> VClock {
        self.0
    }

    /// The binary form: magic, version, postcard clock, CRC-32 (little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 16 * self.0.len() + CRC);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        // Serializing strings and integers into a Vec cannot fail.
        let mut out = postcard::to_extend(&self.0, out).unwrap_or_else(|_| {
            unreachable!("postcard serialization of a VClock into a Vec is infallible")
        });
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses the binary form, rejecting anything [`Context::to_bytes`] could not have written.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ContextError> {
        let len = bytes.len();
        if len == 0 {
            return Err(ContextError::Empty);
        }
        if len > MAX_BYTES {
            return Err(ContextError::TooLarge {
                len,
                max: MAX_BYTES,
            });
        }
        if !bytes.starts_with(&MAGIC[..len.min(MAGIC.len())]) {
            return Err(ContextError::WrongMagic);
        }
        if len < MIN_BYTES {
            return Err(ContextError::TooShort { len });
        }
        if bytes[MAGIC.len()] != VERSION {
            return Err(ContextError::UnsupportedVersion(bytes[MAGIC.len()]));
        }
        let (body, tail) = bytes.split_at(len - CRC);
        let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(ContextError::ChecksumMismatch { stored, computed });
        }
        let payload = &body[HEADER..];
        let (clock, rest): (VClock, &[u8]) = postcard::take_from_bytes(payload)
            .map_err(|e| ContextError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(ContextError::Malformed(format!(
                "{} trailing bytes after the clock",
                rest.len()
            )));
        }
        if clock.len() > MAX_ENTRIES {
            return Err(ContextError::TooManyEntries {
                count: clock.len(),
                max: MAX_ENTRIES,
            });
        }
        Ok(Self(clock))
    }

    /// The text form: [`Context::to_bytes`] in URL-safe base64 without padding.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.to_bytes())
    }

    /// Parses the text form.
    pub fn from_text(text: &str) -> Result<Self, ContextError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ContextError::Empty);
        }
        // Every 4 characters carry 3 bytes; refuse to decode anything that would exceed the cap.
        let implied = text.len() / 4 * 3 + 3;
        if implied > MAX_BYTES + 3 {
            return Err(ContextError::TooLarge {
                len: implied,
                max: MAX_BYTES,
            });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| ContextError::InvalidText(e.to_string()))?;
        Self::from_bytes(&bytes)
    }
}

impl From<VClock> for Context {
    fn from(clock: VClock) -> Self {
        Self(clock)
    }
}

impl From<Context> for VClock {
    fn from(context: Context) -> Self {
        context.0
    }
}

impl fmt::Display for Context {
    /// Writes the text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for Context {
    type Err = ContextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_text(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vclock::{Actor, Entry};

    fn sample() -> Context {
        let clock: VClock = [
            (
                "node-a",
                Entry {
                    counter: 3,
                    timestamp: 1_700_000_000_000,
                },
            ),
            (
                "node-b",
                Entry {
                    counter: 1,
                    timestamp: 5,
                },
            ),
        ]
        .into_iter()
        .collect();
        Context::new(clock)
    }

    fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn round_trips() {
        for ctx in [Context::default(), sample()] {
            assert_eq!(Context::from_bytes(&ctx.to_bytes()), Ok(ctx.clone()));
            assert_eq!(Context::from_text(&ctx.to_text()), Ok(ctx.clone()));
            assert_eq!(ctx.to_string().parse::<Context>(), Ok(ctx.clone()));
            let text = ctx.to_text();
            assert!(
                text.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            );
        }
    }

    /// Table of damaged, foreign and truncated inputs and the error each must produce.
    type Check = fn(&ContextError) -> bool;

    #[test]
    fn rejects_bad_bytes() {
        let good = sample().to_bytes();
        let mut flipped = good.clone();
        flipped[HEADER + 2] ^= 0x40;
        let mut bad_version = good.clone();
        bad_version[3] = 9;
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        // Checksum is right but the payload is not a clock / has trailing bytes / is unsorted.
        let garbage = with_crc([&MAGIC[..], &[VERSION, 0x05, 0xff]].concat());
        let trailing = {
            let mut body = good[..good.len() - CRC].to_vec();
            body.push(0);
            with_crc(body)
        };
        let unsorted = {
            let raw = vec![
                (
                    Actor::from("b"),
                    Entry {
                        counter: 1,
                        timestamp: 0,
                    },
                ),
                (
                    Actor::from("a"),
                    Entry {
                        counter: 1,
                        timestamp: 0,
                    },
                ),
            ];
            let body = postcard::to_extend(&raw, [&MAGIC[..], &[VERSION]].concat()).unwrap();
            with_crc(body)
        };
        let too_many = {
            let clock: VClock = (0..=MAX_ENTRIES)
                .map(|i| {
                    (
                        format!("n{i}"),
                        Entry {
                            counter: 1,
                            timestamp: 0,
                        },
                    )
                })
                .collect();
            Context::new(clock).to_bytes()
        };
        let cases: Vec<(&str, Vec<u8>, Check)> = vec![
            ("empty", vec![], |e| *e == ContextError::Empty),
            ("truncated header", good[..2].to_vec(), |e| {
                matches!(e, ContextError::TooShort { .. })
            }),
            ("truncated body", good[..good.len() - 1].to_vec(), |e| {
                matches!(e, ContextError::ChecksumMismatch { .. })
            }),
            ("foreign: json", br#"{"a":1}"#.to_vec(), |e| {
                *e == ContextError::WrongMagic
            }),
            (
                "foreign: riak-ish",
                vec![0x83, 0x6c, 0, 0, 0, 1, 0x6a, 0, 0],
                |e| *e == ContextError::WrongMagic,
            ),
            ("bit flip", flipped, |e| {
                matches!(e, ContextError::ChecksumMismatch { .. })
            }),
            ("bad crc", bad_crc, |e| {
                matches!(e, ContextError::ChecksumMismatch { .. })
            }),
            ("future version", bad_version, |e| {
                *e == ContextError::UnsupportedVersion(9)
            }),
            ("garbage payload", garbage, |e| {
                matches!(e, ContextError::Malformed(_))
            }),
            ("trailing bytes", trailing, |e| {
                matches!(e, ContextError::Malformed(_))
            }),
            ("unsorted actors", unsorted, |e| {
                matches!(e, ContextError::Malformed(_))
            }),
            ("too many entries", too_many, |e| {
                matches!(e, ContextError::TooManyEntries { .. })
            }),
            ("too large", vec![b'D'; MAX_BYTES + 1], |e| {
                matches!(e, ContextError::TooLarge { .. })
            }),
        ];
        for (name, bytes, check) in cases {
            let err = Context::from_bytes(&bytes).expect_err(name);
            assert!(check(&err), "{name}: got {err:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn rejects_bad_text() {
        let cases: [(&str, Check); 4] = [
            ("", |e| *e == ContextError::Empty),
            ("not base64!", |e| matches!(e, ContextError::InvalidText(_))),
            ("RFlD", |e| matches!(e, ContextError::TooShort { .. })),
            ("eyJhIjoxfQ", |e| *e == ContextError::WrongMagic),
        ];
        for (text, check) in cases {
            let err = Context::from_text(text).expect_err(text);
            assert!(check(&err), "{text:?}: got {err:?}");
        }
        let huge = "A".repeat(MAX_BYTES * 2);
        assert!(matches!(
            Context::from_text(&huge),
            Err(ContextError::TooLarge { .. })
        ));
    }
}
