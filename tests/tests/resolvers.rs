//! Issue 14, end to end on a real three-node cluster: the shopping-cart anomaly of paper 4.4
//! ("deleted items can resurface") happens under the `union` resolver and not under `cart`.

use dynamo_resolve::Resolver;
use dynamo_tests::cart_story::replay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_item_comes_back_under_union_and_stays_removed_under_cart() {
    // (resolver, items after the heal)
    let table: [(Resolver, &[&str]); 2] = [
        (Resolver::Union, &["kibble", "toy"]),
        (Resolver::Cart, &["toy"]),
    ];
    for (resolver, expected) in table {
        let outcome = replay(resolver).await;
        let transcript = outcome.transcript.join("\n");
        assert_eq!(outcome.items, expected, "{resolver}:\n{transcript}");
        // The stale replica's version and the removal were concurrent: the read merged both.
        assert_eq!(outcome.merged, 2, "{resolver}:\n{transcript}");
        // Nothing was re-added concurrently with the remove: no add overrode it.
        assert!(
            !outcome.notes.iter().any(|n| n.contains("overridden")),
            "{resolver}:\n{transcript}"
        );
    }
}
