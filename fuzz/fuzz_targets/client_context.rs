//! Fuzzes `dynamo_quorum::ClientContext::from_text` (the token a client pastes into a put,
//! decoded by the node) and `ClientContext::from_bytes` (what the text decodes to). The input
//! is tried as binary, as text (lossy UTF-8), and as a clock payload behind a valid `DYK`
//! header and a correctly checksummed inner context, so mutations reach the clock decoder. A
//! decoded context must round-trip through both forms and keep its key binding.
#![no_main]

use dynamo_fuzz::seal_context;
use dynamo_quorum::ClientContext;
use libfuzzer_sys::fuzz_target;

fn check(context: &ClientContext) {
    assert_eq!(
        ClientContext::from_bytes(&context.to_bytes()).as_ref(),
        Ok(context)
    );
    assert_eq!(
        ClientContext::from_text(&context.to_text()).as_ref(),
        Ok(context)
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(context) = ClientContext::from_bytes(data) {
        check(&context);
    }
    if let Ok(context) = ClientContext::from_text(&String::from_utf8_lossy(data)) {
        check(&context);
    }
    let mut token = b"DYK\x01".to_vec();
    token.extend_from_slice(&0x0123_4567_89ab_cdef_u64.to_be_bytes());
    token.extend_from_slice(&seal_context(data));
    if let Ok(context) = ClientContext::from_bytes(&token) {
        check(&context);
    }
});
