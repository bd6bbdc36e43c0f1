//! The shopping-cart story of issue 14 (paper 4.4: "deleted items can resurface"), replayed on a
//! local three-node cluster (N = 3) for one bucket resolver:
//!
//! 1. alice puts kibble in her cart (all three replicas hold it);
//! 2. replica n3 goes down; she removes kibble (n1 and n2 acknowledge);
//! 3. n3 comes back, n1 and n2 go down; a second client, reaching only n3, reads the stale cart
//!    (kibble still in) and adds a toy with that old context;
//! 4. n1 and n2 come back, and a read at R = 3 merges the two concurrent versions.
//!
//! Under `union` (the paper's cart) kibble comes back; under `cart` (an observed-remove set) it
//! stays removed. The example `cart_story` prints the transcript; the integration test asserts
//! both outcomes. Anti-entropy is off, so nothing repairs n3 before the second client reads it
//! (with it on, the same happens whenever a client reads a replica before its next sweep).
//!
//! This module must not reach into node internals: it drives nodes through the client library.

use dynamo_client::sets::{SetOp, SetView};
use dynamo_protocol::{BucketProps, RequestOptions};
use dynamo_resolve::Resolver;

use crate::TestCluster;

/// How the story ended for one resolver.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The resolver replayed.
    pub resolver: Resolver,
    /// The cart's items at the end.
    pub items: Vec<String>,
    /// What the final read said about the merge.
    pub notes: Vec<String>,
    /// How many versions the final read merged.
    pub merged: usize,
    /// What happened, step by step, for a person.
    pub transcript: Vec<String>,
}

fn names(view: &SetView) -> Vec<String> {
    view.items
        .iter()
        .map(|i| String::from_utf8_lossy(i).into_owned())
        .collect()
}

/// Replays the story in a fresh cluster for `resolver`.
pub async fn replay(resolver: Resolver) -> Outcome {
    let mut cluster =
        TestCluster::start_with(3, |config| config.anti_entropy_interval_ms = 0).await;
    let bucket = format!("carts-{resolver}");
    let client = cluster.client();
    client
        .create_bucket(BucketProps {
            name: bucket.clone(),
            n: 3,
            r: 2,
            w: 2,
            pr: 0,
            pw: 0,
            resolver,
        })
        .await
        .expect("create the bucket");
    let mut transcript = vec![format!("bucket {bucket}: N=3, resolver {resolver}")];
    let key = b"alice";
    let with = |r: usize, w: usize| RequestOptions {
        r: Some(r),
        w: Some(w),
        ..RequestOptions::default()
    };
    let add = |item: &str| Some(SetOp::Add(item.as_bytes().to_vec()));

    let view = client
        .update_set(&bucket, key, add("kibble"), with(2, 3))
        .await
        .expect("add kibble");
    transcript.push(format!(
        "client 1 adds kibble on all 3 replicas: {:?}",
        names(&view)
    ));

    cluster.stop(2).await;
    let remove = Some(SetOp::Remove(b"kibble".to_vec()));
    let view = client
        .update_set(&bucket, key, remove, with(2, 2))
        .await
        .expect("remove kibble");
    transcript.push(format!(
        "n3 is down; client 1 removes kibble: {:?}",
        names(&view)
    ));

    cluster.restart(2).await;
    cluster.stop(0).await;
    cluster.stop(1).await;
    let only_n3 = cluster.client_of(cluster.addresses()[0]);
    let view = only_n3
        .update_set(&bucket, key, None, with(1, 1))
        .await
        .expect("read at n3");
    transcript.push(format!(
        "n3 is back, n1 and n2 are down; client 2 reads n3 alone: {:?}",
        names(&view)
    ));
    let view = only_n3
        .update_set(&bucket, key, add("toy"), with(1, 1))
        .await
        .expect("add a toy at n3");
    transcript.push(format!(
        "client 2 adds a toy with that context: {:?}",
        names(&view)
    ));

    cluster.restart(0).await;
    cluster.restart(1).await;
    cluster.wait_for_members(3).await;
    // Restarted nodes listen on new ports: a new client learns them.
    let view = cluster
        .client()
        .update_set(&bucket, key, None, with(3, 2))
        .await
        .expect("read after the heal");
    transcript.push(format!(
        "all three are back; a read at R=3 merges {} versions: {:?}",
        view.merged,
        names(&view)
    ));
    transcript.extend(view.notes.iter().map(|n| format!("  {n}")));
    cluster.shutdown().await;
    Outcome {
        resolver,
        items: names(&view),
        notes: view.notes.clone(),
        merged: view.merged,
        transcript,
    }
}
