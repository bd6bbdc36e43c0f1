//! The shopping-cart story of issue 14 on a local three-node cluster: an item removed while a
//! replica was down, then a client that reached only that replica. Under `union` (the paper's
//! cart) the removed item comes back; under `cart` (an observed-remove set) it stays removed.
//! See `dynamo_tests::cart_story` for the steps.
//!
//! ```text
//! cargo run -p dynamo-tests --example cart_story
//! ```

use dynamo_resolve::Resolver;
use dynamo_tests::cart_story::replay;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for resolver in [Resolver::Union, Resolver::Cart] {
        let outcome = replay(resolver).await;
        for line in &outcome.transcript {
            println!("{line}");
        }
        let kibble = outcome.items.iter().any(|i| i == "kibble");
        println!(
            "=> under {resolver}, kibble {}\n",
            if kibble {
                "came back (the paper's anomaly)"
            } else {
                "stayed removed"
            }
        );
    }
}
