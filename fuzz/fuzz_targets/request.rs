//! Fuzzes `postcard::from_bytes::<dynamo_protocol::Request>`: what a node decodes from
//! every frame a client or a peer sends. Arbitrary bytes must decode or fail, never panic; a
//! decoded request must round-trip, and any context token it carries must parse or fail
//! cleanly, as the node parses it (`ClientContext::from_text`).
#![no_main]

use dynamo_fuzz::assert_round_trip;
use dynamo_protocol::Request;
use dynamo_quorum::ClientContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = postcard::from_bytes::<Request>(data) else {
        return;
    };
    assert_round_trip(&request);
    match &request {
        Request::Put {
            context: Some(token),
            ..
        } => {
            if let Ok(context) = ClientContext::from_text(token) {
                assert_eq!(ClientContext::from_text(&context.to_text()), Ok(context));
            }
        }
        Request::Gossip { message, .. } => {
            let _ =
                dynamo_gossip::Message::decode(message, dynamo_gossip::DEFAULT_MAX_MESSAGE_BYTES);
        }
        _ => {}
    }
});
