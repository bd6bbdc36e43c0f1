//! Fuzzes `dynamo_vclock::Context::from_bytes` and `Context::from_text`: the opaque causal
//! context a client hands back (magic, version, postcard clock, CRC-32; or that in URL-safe
//! base64). The input is tried as binary, as text (lossy UTF-8), and as a clock payload sealed
//! with a correct header and checksum, so mutations reach the clock decoder behind the CRC. A
//! decoded context must round-trip through both forms.
#![no_main]

use dynamo_fuzz::seal_context;
use dynamo_vclock::Context;
use libfuzzer_sys::fuzz_target;

fn check(context: &Context) {
    assert_eq!(
        Context::from_bytes(&context.to_bytes()).as_ref(),
        Ok(context)
    );
    assert_eq!(Context::from_text(&context.to_text()).as_ref(), Ok(context));
    assert_eq!(context.to_text().parse::<Context>().as_ref(), Ok(context));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(context) = Context::from_bytes(data) {
        check(&context);
    }
    if let Ok(context) = Context::from_text(&String::from_utf8_lossy(data)) {
        check(&context);
    }
    if let Ok(context) = Context::from_bytes(&seal_context(data)) {
        check(&context);
    }
});
