//! Fuzzes the bucket resolvers (`dynamo_resolve`): what a coordinator runs on every get of a
//! bucket with a resolver, over any version set a replica could hold, and what a node runs on
//! every put to a structured bucket (`validate`). Nothing may panic; a cart that decodes must
//! round-trip and join idempotently, and resolving never depends on more than the set.
#![no_main]

use dynamo_quorum::Object;
use dynamo_resolve::{Cart, Resolver, resolve, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for resolver in Resolver::ALL {
        let _ = validate(resolver, data);
    }
    if let Ok(cart) = Cart::decode(data) {
        assert_eq!(Cart::decode(&cart.encode()).ok(), Some(cart.clone()));
        assert_eq!(cart.join(&cart), cart, "join is not idempotent");
    }
    if let Ok(object) = postcard::from_bytes::<Object>(data) {
        for resolver in Resolver::ALL {
            assert_eq!(resolve(resolver, &object), resolve(resolver, &object.sync(&object)));
        }
    }
});
