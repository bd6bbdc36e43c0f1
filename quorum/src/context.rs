//! The context token a client carries between a get and the put that follows it: the causal
//! context (a vector clock) bound to the key it was read from, so a context pasted onto another
//! key is refused instead of silently discarding that key's versions, and the ids of the client
//! writes it saw, so the put that follows supersedes every copy of those writes, also copies a
//! coordinator holds under dots the clock does not cover (a write sent to two coordinators).
//!
//! Layout (format 2): `b"DYK"`, a format version byte, the key's 64-bit fingerprint
//! (big-endian), a count of write ids (at most [`MAX_SUPERSEDED`]) and each id (16 bytes,
//! big-endian), then the clock in `dynamo-vclock`'s checksummed context encoding. Format 1 has
//! no write ids and still decodes. Text form: URL-safe base64 without padding.
//!
//! A coordinator trusts a context's clock: whatever it names is treated as seen. A forged clock
//! (a counter of `u64::MAX` for a node's actor) made every later write of that key by that
//! node vanish on every replica while they answered `Written` (issue 26); no bound on the
//! counters prevents it, since any value a reader has not seen does the same. So a token a node
//! hands out is *sealed* (format 3: the format 2 bytes, then a 16-byte HMAC-SHA256 of them under
//! the cluster's [`ContextKey`]), and a coordinator takes only a token it can [`open`]: one a
//! node of the cluster made, unchanged. [`ClientContext::from_text`] reads any format without
//! checking, for observers that only look. This module must not know how tokens travel (CLI
//! flags, HTTP headers) or how the key is shared.
//!
//! [`open`]: ClientContext::open

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dynamo_vclock::{Context, VClock};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::value::{MAX_SUPERSEDED, Object, WriteId, named_writes};

const MAGIC: &[u8; 3] = b"DYK";
/// Tokens without write ids.
const FORMAT_CLOCK_ONLY: u8 = 1;
const FORMAT_VERSION: u8 = 2;
/// Format 2 sealed: the same bytes with this version, then [`SEAL_LEN`] bytes of MAC.
const FORMAT_SEALED: u8 = 3;
const HEADER_LEN: usize = MAGIC.len() + 1 + 8;
/// Bytes of the truncated HMAC-SHA256 that seals a token.
const SEAL_LEN: usize = 16;

/// The cluster's secret for sealing context tokens: 32 random bytes every node shares.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContextKey([u8; 32]);

impl ContextKey {
    /// The key made of `bytes` (they must be secret and random).
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's bytes, to save and share among nodes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key from saved or shared bytes, if there are exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    fn seal(&self, bytes: &[u8]) -> [u8; SEAL_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(bytes);
        let full = mac.finalize().into_bytes();
        let mut seal = [0u8; SEAL_LEN];
        seal.copy_from_slice(&full[..SEAL_LEN]);
        seal
    }

    fn verify(&self, bytes: &[u8], seal: &[u8]) -> bool {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(bytes);
        mac.verify_truncated_left(seal).is_ok()
    }
}

impl std::fmt::Debug for ContextKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextKey(..)")
    }
}

/// A 64-bit fingerprint of a key: the top half of its MD5 ring position.
pub fn key_fingerprint(key: &[u8]) -> u64 {
    (dynamo_ring::key_position(key) >> 64) as u64
}

/// A causal context bound to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientContext {
    /// Fingerprint of the key the context was read from.
    pub key_fingerprint: u64,
    /// What the reader had seen.
    pub clock: VClock,
    /// The client writes among the versions it saw (at most [`MAX_SUPERSEDED`]).
    pub writes: Vec<WriteId>,
}

/// Why a context token could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// Not URL-safe base64.
    #[error("the context token is not valid base64")]
    NotBase64,
    /// Too short or not a dynamo key context.
    #[error("the context token is not a dynamo context (wrong or missing header)")]
    Foreign,
    /// A newer format than this build understands.
    #[error("the context token has format version {0}, this build reads versions 1 to 3")]
    UnsupportedVersion(u8),
    /// The clock part is corrupt.
    #[error("the context token is corrupt: {0}")]
    Corrupt(String),
    /// Not sealed by this cluster (forged, changed, from another cluster, or made before
    /// tokens were sealed).
    #[error(
        "the context token was not issued by this cluster, or was changed; read the key again \
         and write with the context that read returns"
    )]
    NotSealed,
}

impl ClientContext {
    /// The context for `clock`, read from `key`.
    pub fn new(key: &[u8], clock: VClock) -> Self {
        Self {
            key_fingerprint: key_fingerprint(key),
            clock,
            writes: Vec::new(),
        }
    }

    /// The context of `object`, read from `key`: its clock and the write ids of its versions
    /// (and those its deletes name).
    pub fn of_object(key: &[u8], object: &Object) -> Self {
        Self {
            key_fingerprint: key_fingerprint(key),
            clock: object.context(),
            writes: named_writes(&[], object.values()),
        }
    }

    /// Whether the context was read from `key`.
    pub fn belongs_to(&self, key: &[u8]) -> bool {
        self.key_fingerprint == key_fingerprint(key)
    }

    /// The binary token.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + 64);
        bytes.extend_from_slice(MAGIC);
        bytes.push(FORMAT_VERSION);
        bytes.extend_from_slice(&self.key_fingerprint.to_be_bytes());
        let writes = &self.writes[..self.writes.len().min(MAX_SUPERSEDED)];
        bytes.push(writes.len() as u8);
        for id in writes {
            bytes.extend_from_slice(&id.0.to_be_bytes());
        }
        bytes.extend_from_slice(&Context::new(self.clock.clone()).to_bytes());
        bytes
    }

    /// The sealed text token (format 3) a node hands to clients.
    pub fn sealed(&self, key: &ContextKey) -> String {
        let mut bytes = self.to_bytes();
        bytes[MAGIC.len()] = FORMAT_SEALED;
        let seal = key.seal(&bytes);
        bytes.extend_from_slice(&seal);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes a text token a coordinator may trust: sealed under `key` and unchanged.
    pub fn open(text: &str, key: &ContextKey) -> Result<Self, ContextError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| ContextError::NotBase64)?;
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(ContextError::Foreign);
        }
        if bytes[MAGIC.len()] != FORMAT_SEALED || bytes.len() < HEADER_LEN + SEAL_LEN {
            return Err(ContextError::NotSealed);
        }
        let (body, seal) = bytes.split_at(bytes.len() - SEAL_LEN);
        if !key.verify(body, seal) {
            return Err(ContextError::NotSealed);
        }
        let mut body = body.to_vec();
        body[MAGIC.len()] = FORMAT_VERSION;
        Self::from_bytes(&body)
    }

    /// Decodes a binary token of any format without checking a seal (for observers that only
    /// look); never panics on arbitrary input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ContextError> {
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(ContextError::Foreign);
        }
        let version = bytes[MAGIC.len()];
        let bytes = match version {
            FORMAT_SEALED if bytes.len() >= HEADER_LEN + SEAL_LEN => {
                &bytes[..bytes.len() - SEAL_LEN]
            }
            FORMAT_SEALED => return Err(ContextError::Corrupt("cut short in its seal".into())),
            FORMAT_VERSION | FORMAT_CLOCK_ONLY => bytes,
            _ => return Err(ContextError::UnsupportedVersion(version)),
        };
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&bytes[MAGIC.len() + 1..HEADER_LEN]);
        let mut rest = &bytes[HEADER_LEN..];
        let mut writes = Vec::new();
        if version != FORMAT_CLOCK_ONLY {
            let corrupt = |what: &str| ContextError::Corrupt(what.to_owned());
            let (&count, after) = rest
                .split_first()
                .ok_or_else(|| corrupt("no write count"))?;
            let count = usize::from(count);
            if count > MAX_SUPERSEDED {
                return Err(corrupt("more write ids than a token holds"));
            }
            if after.len() < count * 16 {
                return Err(corrupt("cut short in its write ids"));
            }
            for chunk in after[..count * 16].chunks_exact(16) {
                let mut id = [0u8; 16];
                id.copy_from_slice(chunk);
                writes.push(WriteId(u128::from_be_bytes(id)));
            }
            rest = &after[count * 16..];
        }
        let context =
            Context::from_bytes(rest).map_err(|e| ContextError::Corrupt(e.to_string()))?;
        Ok(Self {
            key_fingerprint: u64::from_be_bytes(fingerprint),
            clock: context.into_clock(),
            writes,
        })
    }

    /// The text token (URL-safe base64, no padding) for CLIs and HTTP headers.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.to_bytes())
    }

    /// Decodes a text token of any format without checking a seal (see [`ClientContext::open`]).
    pub fn from_text(text: &str) -> Result<Self, ContextError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| ContextError::NotBase64)?;
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use dynamo_vclock::Actor;

    use super::*;

    #[test]
    fn tokens_round_trip_and_bind_to_their_key() {
        let mut clock = VClock::new();
        clock.increment(&Actor::new("a#1"), 10);
        let mut context = ClientContext::new(b"cart:alice", clock.clone());
        context.writes = vec![WriteId(7), WriteId(u128::MAX)];
        let back = ClientContext::from_text(&context.to_text()).unwrap();
        assert_eq!(back, context);
        assert!(back.belongs_to(b"cart:alice"));
        assert!(!back.belongs_to(b"cart:bob"));
        // A format 1 token (before write ids) still decodes, with none.
        let mut old = b"DYK\x01".to_vec();
        old.extend_from_slice(&key_fingerprint(b"cart:alice").to_be_bytes());
        old.extend_from_slice(&Context::new(clock.clone()).to_bytes());
        let back = ClientContext::from_bytes(&old).unwrap();
        assert_eq!((back.clock, back.writes), (clock, Vec::new()));
    }

    type Check = fn(&ContextError) -> bool;

    #[test]
    fn bad_tokens_are_clear_errors() {
        let good = ClientContext::new(b"k", VClock::new()).to_bytes();
        let mut future = good.clone();
        future[3] = 9;
        let mut corrupt = good.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x55;
        let cases: Vec<(Vec<u8>, Check)> = vec![
            (vec![], |e| *e == ContextError::Foreign),
            (b"DYC\x01garbage".to_vec(), |e| *e == ContextError::Foreign),
            (future, |e| *e == ContextError::UnsupportedVersion(9)),
            (corrupt, |e| matches!(e, ContextError::Corrupt(_))),
            (good[..good.len() - 2].to_vec(), |e| {
                matches!(e, ContextError::Corrupt(_))
            }),
        ];
        for (bytes, expected) in cases {
            let error = ClientContext::from_bytes(&bytes).unwrap_err();
            assert!(expected(&error), "{bytes:?}: {error}");
        }
        assert_eq!(
            ClientContext::from_text("not base64 !").unwrap_err(),
            ContextError::NotBase64
        );
    }

    /// Issue 26: a coordinator opens only a token the cluster sealed, unchanged. A forged
    /// clock (a counter raised to `u64::MAX`), a token sealed under another cluster's key, an
    /// unsealed one and a truncated one are all refused; observers still read a sealed token.
    #[test]
    fn only_a_sealed_unchanged_token_opens() {
        let key = ContextKey::new([7; 32]);
        let actor = Actor::new("n1#5.1");
        let mut clock = VClock::new();
        clock.increment(&actor, 10);
        let mut context = ClientContext::new(b"cart", clock);
        context.writes = vec![WriteId(3)];
        let sealed = context.sealed(&key);
        assert_eq!(ClientContext::open(&sealed, &key), Ok(context.clone()));
        assert_eq!(ClientContext::from_text(&sealed), Ok(context.clone()));

        let mut forged = context.clone();
        let top = dynamo_vclock::Entry {
            counter: u64::MAX,
            timestamp: 10,
        };
        forged.clock.witness(&actor, top);
        let forged_bytes = URL_SAFE_NO_PAD.decode(forged.sealed(&key)).unwrap();
        let honest_bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        // The forger's clock with the honest token's seal.
        let mut spliced = forged_bytes[..forged_bytes.len() - SEAL_LEN].to_vec();
        spliced.extend_from_slice(&honest_bytes[honest_bytes.len() - SEAL_LEN..]);
        let mut flipped = honest_bytes.clone();
        flipped[HEADER_LEN + 2] ^= 1;
        let cases = [
            ("a forged clock", URL_SAFE_NO_PAD.encode(&spliced)),
            ("a changed byte", URL_SAFE_NO_PAD.encode(&flipped)),
            (
                "another cluster's key",
                context.sealed(&ContextKey::new([8; 32])),
            ),
            ("an unsealed token", context.to_text()),
            (
                "a cut-off seal",
                URL_SAFE_NO_PAD.encode(&honest_bytes[..honest_bytes.len() - 4]),
            ),
        ];
        for (what, token) in cases {
            assert_eq!(
                ClientContext::open(&token, &key),
                Err(ContextError::NotSealed),
                "{what}"
            );
        }
    }
}
