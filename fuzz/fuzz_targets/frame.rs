//! Fuzzes the transport's frame layer (`dynamo_client::transport`): a `u32` big-endian length
//! capped at `MAX_FRAME_BYTES`, then one postcard value and nothing else. The reader itself is
//! private and async over a QUIC stream, so `dynamo_fuzz::read_frame` models it over a byte
//! slice; the input is read as a sequence of frames, each decoded both as a `Request` (what a
//! server reads) and as a `Response` (what a client reads). A decoded frame is written again
//! and must read back to the same value.
#![no_main]

use dynamo_fuzz::{FrameError, assert_round_trip, read_frame, write_frame};
use dynamo_protocol::{Request, Response};
use dynamo_client::transport::MAX_FRAME_BYTES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while !rest.is_empty() {
        if let Ok((request, _)) = read_frame::<Request>(rest, MAX_FRAME_BYTES) {
            assert_round_trip(&request);
            let frame = write_frame(&request);
            assert_eq!(
                read_frame::<Request>(&frame, MAX_FRAME_BYTES).map(|(r, _)| r),
                Ok(request)
            );
        }
        match read_frame::<Response>(rest, MAX_FRAME_BYTES) {
            Ok((response, _)) => {
                let frame = write_frame(&response);
                // Response holds f64 (ownership shares): compare encodings, not values.
                let again = read_frame::<Response>(&frame, MAX_FRAME_BYTES).map(|(r, _)| r);
                assert!(again.is_ok(), "a written response frame does not read back");
                assert_eq!(again.map(|r| write_frame(&r)), Ok(frame));
            }
            Err(FrameError::NoHeader | FrameError::TooLarge | FrameError::Truncated) => break,
            Err(FrameError::Malformed) => {}
        }
        // Move to the next frame: skip this frame's header and payload (or one byte when the
        // frame was refused), so one input exercises many frames.
        let len = rest
            .first_chunk::<4>()
            .map_or(0, |h| u32::from_be_bytes(*h) as usize);
        let skip = 4usize.saturating_add(len).min(rest.len());
        rest = &rest[skip.max(1)..];
    }
});
