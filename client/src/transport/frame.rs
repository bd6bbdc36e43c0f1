//! Frames on a QUIC stream (encoded by [`dynamo_protocol::encode_frame`]: a big-endian `u32`
//! length, then that many bytes of postcard), read and refused before anything is allocated
//! when the length is over the limit; and the errors a stream can end with, named for people.
//!
//! This module must not know what the frames carry or who sends them.

use std::net::SocketAddr;

use super::serving::Admitted;
use super::{
    STREAM_MALFORMED, STREAM_READ_TIMEOUT, STREAM_RESPONSE_FAILED, STREAM_TOO_LARGE,
    STREAM_TRUNCATED, TransportError,
};
use dynamo_protocol::FrameEncodeError;
use serde::de::DeserializeOwned;
use tokio::sync::OwnedSemaphorePermit;

/// A frame-level failure, before the peer address is attached.
#[derive(Debug)]
pub(super) enum FrameError {
    TooLarge { len: usize, limit: usize },
    Decode(String),
    Truncated,
    Reset(quinn::VarInt),
    Lost(String),
}

impl FrameError {
    /// The reset code the server uses for this failure.
    pub(super) fn stream_code(&self) -> u32 {
        match self {
            FrameError::TooLarge { .. } => STREAM_TOO_LARGE,
            FrameError::Decode(_) => STREAM_MALFORMED,
            FrameError::Truncated | FrameError::Reset(_) | FrameError::Lost(_) => STREAM_TRUNCATED,
        }
    }

    pub(super) fn into_transport(self, peer: SocketAddr) -> TransportError {
        match self {
            FrameError::TooLarge { len, limit } => {
                TransportError::FrameTooLarge { peer, len, limit }
            }
            FrameError::Decode(reason) => TransportError::Decode { peer, reason },
            FrameError::Truncated => TransportError::Closed {
                peer,
                reason: "stream ended before a whole response frame arrived".to_owned(),
            },
            FrameError::Reset(code) if code.into_inner() == u64::from(STREAM_MALFORMED) => {
                TransportError::NotUnderstood { peer }
            }
            FrameError::Reset(code) => TransportError::Closed {
                peer,
                reason: format!("peer reset the stream: {}", describe_code(code)),
            },
            FrameError::Lost(reason) => TransportError::Closed { peer, reason },
        }
    }
}

pub(super) fn describe_code(code: quinn::VarInt) -> String {
    let meaning = match u32::try_from(code.into_inner()) {
        Ok(STREAM_MALFORMED) => "our request did not decode (protocol mismatch?)",
        Ok(STREAM_TOO_LARGE) => "our request exceeded the peer's frame limit",
        Ok(STREAM_READ_TIMEOUT) => "our request arrived too slowly",
        Ok(STREAM_TRUNCATED) => "our request was cut short",
        Ok(STREAM_RESPONSE_FAILED) => "the peer could not encode its response",
        _ => "unknown code",
    };
    format!("code {code} ({meaning})")
}

/// Payload buffer capacity reserved before any payload byte has arrived.
pub(super) const INITIAL_READ_CAPACITY: usize = 64 * 1024;

/// The transport error for a message that could not be framed for `peer`.
pub(super) fn encode_error(error: FrameEncodeError, peer: SocketAddr) -> TransportError {
    match error {
        FrameEncodeError::Postcard(source) => TransportError::Encode { peer, source },
        FrameEncodeError::TooLarge { len, limit } => {
            TransportError::FrameTooLarge { peer, len, limit }
        }
    }
}

/// Reads one whole frame and decodes it; trailing bytes inside the frame count as malformed.
/// With a `budget`, the payload is read only once its announced length fits it (until then
/// QUIC flow control holds the sender back), and the permits are returned with the value.
pub(super) async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    limit: usize,
    budget: Option<&Admitted>,
) -> Result<(T, Vec<OwnedSemaphorePermit>), FrameError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header)
        .await
        .map_err(read_exact_error)?;
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let permits = match budget {
        Some(admitted) => admitted.reserve(len).await?,
        None => Vec::new(),
    };
    // Grow with the data actually received, so a peer cannot make us allocate the whole limit
    // on every stream just by announcing a large length.
    let mut payload = Vec::with_capacity(len.min(INITIAL_READ_CAPACITY));
    while payload.len() < len {
        match recv.read_chunk(len - payload.len(), true).await {
            Ok(Some(chunk)) => payload.extend_from_slice(&chunk.bytes),
            Ok(None) => return Err(FrameError::Truncated),
            Err(error) => {
                return Err(read_exact_error(quinn::ReadExactError::ReadError(error)));
            }
        }
    }
    match postcard::take_from_bytes::<T>(&payload) {
        Ok((value, [])) => Ok((value, permits)),
        Ok((_, rest)) => Err(FrameError::Decode(format!(
            "{} trailing bytes after the value",
            rest.len()
        ))),
        Err(e) => Err(FrameError::Decode(e.to_string())),
    }
}

pub(super) fn read_exact_error(error: quinn::ReadExactError) -> FrameError {
    match error {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code)) => FrameError::Reset(code),
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e)) => {
            FrameError::Lost(e.to_string())
        }
        quinn::ReadExactError::ReadError(e) => FrameError::Lost(e.to_string()),
    }
}

/// Describes a write failure, with the connection's own reason when it was lost.
pub(super) fn write_error(error: quinn::WriteError) -> String {
    match error {
        quinn::WriteError::ConnectionLost(e) => e.to_string(),
        quinn::WriteError::Stopped(code) => {
            format!("peer stopped the stream: {}", describe_code(code))
        }
        e => e.to_string(),
    }
}
