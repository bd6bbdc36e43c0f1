//! Real clusters on 127.0.0.1 over QUIC with mutual TLS: the paper's operations end to end
//! (sections 4.4 to 4.8).

use std::time::Duration;

use dynamo_client::Client;
use dynamo_client::ca::ClusterCa;
use dynamo_client::client::{ClientError, GetOutcome};
use dynamo_client::tls::{Role, TlsConfig};
use dynamo_protocol::{BucketProps, ErrorKind, RequestOptions};
use dynamo_resolve::Resolver;
use dynamo_tests::{TestCluster, eventually, sorted_values as values, tls_for};

fn context(outcome: &GetOutcome) -> String {
    match outcome {
        GetOutcome::Found(reply) => reply.context.clone(),
        GetOutcome::NotFound { context } => context.clone(),
    }
}

const OPTIONS: RequestOptions = RequestOptions {
    r: None,
    w: None,
    pr: None,
    pw: None,
    timeout_ms: None,
};

/// Tombstones reaped by every running node together.
async fn reaped_in_all(cluster: &TestCluster) -> u64 {
    cluster.status_sum(|status| status.reaper.reaped).await
}

/// Removes node-4 (stopped) from a four-node cluster through node-1, retrying until node-1
/// sees it down, and waits for the other three to settle.
async fn remove_node_4(cluster: &TestCluster, admin: &Client) {
    use dynamo_protocol::{Request, Response};
    let first = cluster.addresses()[0];
    eventually("node-4 removed", || async {
        let request = Request::RemoveNode {
            name: "node-4".into(),
        };
        let removal = admin.request_to(first, &request).await;
        matches!(removal, Ok(Response::Ring(Some(ring))) if ring.members().len() == 3)
    })
    .await;
    cluster.wait_for_members(3).await;
}

/// Every key `{prefix}0..count` reads as not found at R = 3.
async fn assert_all_gone(client: &Client, prefix: &str, count: usize) {
    let all = RequestOptions {
        r: Some(3),
        ..OPTIONS
    };
    for i in 0..count {
        let read = client
            .get("default", format!("{prefix}{i}").as_bytes(), all)
            .await
            .expect("R=3 read");
        assert!(
            matches!(read, GetOutcome::NotFound { .. }),
            "{prefix}{i} came back: {read:?}"
        );
    }
}

/// Paper 4.4 and 6.3 on a 3-node cluster with (3,2,2): round trips, siblings from concurrent
/// writes, a write with the read's context superseding them, and a delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_put_get_siblings_and_delete() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();

    let written = client
        .put("default", b"cart", b"book".to_vec(), None, OPTIONS)
        .await
        .expect("put");
    assert!(written.acknowledged >= 2);
    let read = client.get("default", b"cart", OPTIONS).await.expect("get");
    assert_eq!(values(&read), ["book"]);

    // Two writers with the same (now stale) context: both survive as siblings.
    client
        .put(
            "default",
            b"cart",
            b"book,pen".to_vec(),
            Some(written.context.clone()),
            OPTIONS,
        )
        .await
        .expect("first concurrent put");
    client
        .put(
            "default",
            b"cart",
            b"book,lamp".to_vec(),
            Some(written.context.clone()),
            OPTIONS,
        )
        .await
        .expect("second concurrent put");
    let read = client
        .get("default", b"cart", OPTIONS)
        .await
        .expect("get siblings");
    assert_eq!(values(&read), ["book,lamp", "book,pen"]);

    // A write with the read's context supersedes both.
    client
        .put(
            "default",
            b"cart",
            b"book,lamp,pen".to_vec(),
            Some(context(&read)),
            OPTIONS,
        )
        .await
        .expect("resolving put");
    let read = client
        .get("default", b"cart", OPTIONS)
        .await
        .expect("get resolved");
    assert_eq!(values(&read), ["book,lamp,pen"]);

    // Every node answers the same.
    for address in cluster.addresses() {
        let read = cluster
            .client_of(address)
            .get("default", b"cart", OPTIONS)
            .await
            .expect("get via one node");
        assert_eq!(values(&read), ["book,lamp,pen"], "via {address}");
    }

    // A context from another key is refused.
    let error = client
        .put(
            "default",
            b"other",
            b"x".to_vec(),
            Some(context(&read)),
            OPTIONS,
        )
        .await
        .expect_err("foreign context");
    assert!(
        matches!(&error, ClientError::Server(e) if e.kind == ErrorKind::BadRequest),
        "{error}"
    );

    // Delete with the context: not found afterwards.
    client
        .delete("default", b"cart", Some(context(&read)), OPTIONS)
        .await
        .expect("delete");
    let read = client
        .get("default", b"cart", OPTIONS)
        .await
        .expect("get deleted");
    assert!(matches!(read, GetOutcome::NotFound { .. }));
    cluster.shutdown().await;
}

/// Buckets carry their own N, R, W; requests may override R and W; with a node down a W=3
/// write fails with a clear error while W=2 still succeeds (paper 4.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_quorums_are_honoured() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    for (name, n, w) in [("single", 1, 1), ("all", 3, 3)] {
        client
            .create_bucket(BucketProps {
                n,
                r: 1,
                w,
                ..BucketProps::new(name)
            })
            .await
            .expect("create bucket");
    }
    // N beyond what the ring spreads replicas for (and absurd N) is refused, not gossiped.
    for n in [4, usize::MAX] {
        let refused = client
            .create_bucket(BucketProps {
                n,
                r: 1,
                w: 1,
                ..BucketProps::new("wide")
            })
            .await;
        assert!(
            matches!(&refused, Err(ClientError::Server(e)) if e.kind == ErrorKind::BadRequest),
            "n = {n}: {refused:?}"
        );
    }
    // Bucket tables travel by gossip: give them a moment to reach every node.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let buckets = client.list_buckets().await.expect("list");
    assert!(buckets.iter().any(|b| b.name == "single" && b.n == 1));

    let single = client
        .put("single", b"k", b"v".to_vec(), None, OPTIONS)
        .await
        .expect("put n=1");
    assert_eq!(single.acknowledged, 1);
    let all = client
        .put("all", b"k", b"v".to_vec(), None, OPTIONS)
        .await
        .expect("put w=3");
    assert_eq!(all.acknowledged, 3);
    let missing = client.put("nope", b"k", b"v".to_vec(), None, OPTIONS).await;
    assert!(matches!(missing, Err(ClientError::Server(e)) if e.message.contains("does not exist")));

    cluster.stop(2).await;
    let strict = client.put("all", b"k2", b"v".to_vec(), None, OPTIONS).await;
    match strict {
        Err(ClientError::Server(e)) => {
            assert!(
                matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
                "{e:?}"
            );
        }
        other => panic!("a W=3 write with a node down must fail, got {other:?}"),
    }
    let relaxed = RequestOptions {
        w: Some(2),
        ..OPTIONS
    };
    client
        .put("all", b"k3", b"v".to_vec(), None, relaxed)
        .await
        .expect("W=2 override with one node down");
    cluster.shutdown().await;
}

/// Five nodes: every key written is readable through every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_serve_every_key_from_every_node() {
    let cluster = TestCluster::start(5).await;
    cluster.write_keys("key-", 40).await;
    for address in cluster.addresses() {
        let single = cluster.client_of(address);
        for i in (0..40).step_by(7) {
            let read = single
                .get("default", format!("key-{i}").as_bytes(), OPTIONS)
                .await
                .expect("get");
            assert_eq!(values(&read), [format!("v{i}")], "key-{i} via {address}");
        }
    }
    cluster.shutdown().await;
}

/// Mutual TLS: a client whose certificate comes from another CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_another_ca_are_refused() {
    let cluster = TestCluster::start(1).await;
    let other = tempfile::tempdir().expect("dir");
    let ca = ClusterCa::generate("intruders").expect("CA");
    ca.install_cert(other.path()).expect("save");
    ca.issue(Role::Admin, "mallory")
        .expect("issue")
        .save(other.path(), false)
        .expect("save");
    let tls: TlsConfig = tls_for(other.path(), "mallory");
    let client = Client::new(&tls, cluster.addresses(), Duration::from_secs(2)).expect("client");
    let refused = client
        .put("default", b"k", b"v".to_vec(), None, OPTIONS)
        .await;
    assert!(
        matches!(refused, Err(ClientError::Unreachable(_))),
        "{refused:?}"
    );
    // The cluster still serves its own clients (one node: W=1).
    let one = RequestOptions {
        w: Some(1),
        ..OPTIONS
    };
    cluster
        .client()
        .put("default", b"k", b"v".to_vec(), None, one)
        .await
        .expect("legitimate put");
    cluster.shutdown().await;
}

/// Paper 4.8.1 and 4.9: a fourth node joins, one leaves; every node ends on the same ring and
/// all data is still readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_leave_keep_data_readable() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    cluster.write_keys("k", 30).await;
    cluster.add_node().await;
    cluster.wait_for_members(4).await;

    let leaver = cluster.addresses()[1];
    client
        .request_to(leaver, &dynamo_protocol::Request::Leave)
        .await
        .expect("leave accepted");
    // Let the handoff run, then drop the leaver.
    let client_after = cluster.client_of(cluster.addresses()[0]);
    eventually("the leave to complete", || async {
        let status = client_after.status().await.expect("status");
        status.members.iter().filter(|m| m.in_ring).count() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop(1).await;
    cluster.wait_for_members(3).await;
    for i in 0..30 {
        let read = client_after
            .get("default", format!("k{i}").as_bytes(), OPTIONS)
            .await
            .expect("get");
        assert_eq!(values(&read), [format!("v{i}")], "k{i}");
    }
    cluster.shutdown().await;
}

/// Paper 4.6: while a replica is down, writes go to fallbacks with hints; when it comes back
/// the hints are delivered and dropped, and the replica serves the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_reach_a_replica_that_comes_back() {
    let mut cluster = TestCluster::start(4).await;
    let client = cluster.client_of(cluster.addresses()[0]);
    cluster.stop(3).await;
    // Wait until the others consider node-4 down, so writes pick fallbacks.
    eventually("node-4 marked down", || async {
        let status = client.status().await.expect("status");
        status.members.iter().any(|m| m.id == "node-4" && !m.up)
    })
    .await;
    cluster.write_keys("h", 20).await;
    assert!(
        cluster.hints_held_for("node-4").await > 0,
        "some writes for node-4 are held as hints"
    );

    cluster.restart(3).await;
    eventually("every hint delivered", || async {
        cluster.hints_held_for("node-4").await == 0
    })
    .await;
    // With every hint delivered, all three replicas answer: R = 3 reads succeed.
    let all = RequestOptions {
        r: Some(3),
        ..OPTIONS
    };
    for i in 0..20 {
        let read = client
            .get("default", format!("h{i}").as_bytes(), all)
            .await
            .expect("R=3 read");
        assert_eq!(values(&read), [format!("v{i}")], "h{i}");
    }
    cluster.shutdown().await;
}

/// Issue 10: a graceful restart of every node keeps every bucket with its N/R/W (the table is
/// saved in each node's store, not only gossiped) and every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_and_keys_survive_a_full_cluster_restart() {
    let mut cluster = TestCluster::start(3).await;
    let carts = BucketProps {
        name: "carts".into(),
        n: 3,
        r: 1,
        w: 3,
        pr: 0,
        pw: 0,
        // Issue 14: a bucket's resolver survives a full restart too.
        resolver: Resolver::Lww,
    };
    let client = cluster.client();
    client.create_bucket(carts.clone()).await.expect("create");
    for i in 0..10 {
        let key = format!("k{i}");
        let value = format!("v{i}").into_bytes();
        client
            .put(
                "carts",
                key.as_bytes(),
                value,
                None,
                RequestOptions::default(),
            )
            .await
            .expect("put");
    }
    for index in 0..3 {
        cluster.stop(index).await;
    }
    for index in 0..3 {
        cluster.restart(index).await;
    }
    cluster.wait_for_members(3).await;
    for address in cluster.addresses() {
        let buckets = cluster
            .client_of(address)
            .list_buckets()
            .await
            .expect("list");
        assert!(buckets.contains(&carts), "{address}: {buckets:?}");
    }
    let client = cluster.client();
    for i in 0..10 {
        let got = client
            .get(
                "carts",
                format!("k{i}").as_bytes(),
                RequestOptions::default(),
            )
            .await
            .expect("get");
        assert_eq!(values(&got), vec![format!("v{i}")]);
    }
    cluster.shutdown().await;
}

/// Paper 4.7, issue 11: a replica that was down while writes went on (N = 3 on three nodes, so
/// no fallback held hints) catches up through Merkle anti-entropy alone, without any read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_refills_a_replica_without_reads() {
    const KEYS: usize = 100;
    let mut cluster = TestCluster::start(3).await;
    cluster.stop(2).await;
    cluster.write_keys("ae-", KEYS).await;
    assert_eq!(
        cluster.hints_held_for("node-3").await,
        0,
        "no fallback: no hints"
    );
    cluster.restart(2).await;
    cluster.wait_for_members(3).await;
    // `dynamo status` reports the repair: keys moved and partition pairs that agreed.
    eventually("anti-entropy repairing keys", || async {
        let mut repaired = 0;
        for address in cluster.addresses() {
            if let Ok(status) = cluster.client_of(address).status().await {
                assert!(status.anti_entropy.enabled);
                repaired += status.anti_entropy.repaired_keys;
            }
        }
        repaired >= KEYS as u64
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.stop(2).await;
        let held = cluster.keys_on_disk(2, "ae-");
        if held == KEYS {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node-3 holds {held} of {KEYS} keys"
        );
        cluster.restart(2).await;
    }
    cluster.shutdown().await;
}

/// Issue 11: a delete without a context deletes what is there (the client reads first), even
/// concurrent siblings; before, its tombstone sat beside them and the value stayed readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_without_context_deletes_every_sibling() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    for value in ["pen", "lamp"] {
        client
            .put(
                "default",
                b"cart",
                value.into(),
                None,
                RequestOptions::default(),
            )
            .await
            .expect("blind put");
    }
    let before = client
        .get("default", b"cart", RequestOptions::default())
        .await
        .expect("get");
    assert_eq!(values(&before), vec!["lamp", "pen"]);
    client
        .delete("default", b"cart", None, RequestOptions::default())
        .await
        .expect("delete");
    let after = client
        .get("default", b"cart", RequestOptions::default())
        .await
        .expect("get");
    assert!(matches!(after, GetOutcome::NotFound { .. }), "{after:?}");
    cluster.shutdown().await;
}

/// Issue 11: a member that is gone for good is removed (`dynamo node remove`) while writes go
/// on; no acknowledged write is lost, and a live member cannot be removed this way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_removed_and_no_acknowledged_write_is_lost() {
    use dynamo_protocol::Request;
    let mut cluster = TestCluster::start(4).await;
    cluster.write_keys("before-", 40).await;
    let first = cluster.addresses()[0];
    let admin = cluster.client_of(first);
    let live = admin
        .request_to(
            first,
            &Request::RemoveNode {
                name: "node-2".into(),
            },
        )
        .await;
    assert!(
        matches!(&live, Err(ClientError::Server(e)) if e.message.contains("is up")),
        "{live:?}"
    );
    cluster.stop(3).await;
    cluster.write_keys("during-", 40).await;
    remove_node_4(&cluster, &admin).await;
    cluster.write_keys("after-", 40).await;
    let client = cluster.client();
    let all = RequestOptions {
        r: Some(3),
        ..RequestOptions::default()
    };
    for prefix in ["before-", "during-", "after-"] {
        for i in 0..40 {
            let key = format!("{prefix}{i}");
            let got = client
                .get("default", key.as_bytes(), all)
                .await
                .expect("get");
            assert_eq!(values(&got), vec![format!("v{i}")], "{key}");
        }
    }
    cluster.shutdown().await;
}

/// Issue 26: a member removed for good (`dynamo node remove`) used to hold the reaper up
/// forever, since it stays in gossip as a member that is down ("0 reaped" 90 s after 50
/// deletes). Now the removal is remembered cluster-wide: tombstones are reaped, the status shows
/// the member as removed, and when the removed node comes back on its old disk (holding values
/// whose tombstones were reaped meanwhile) it serves nothing, says why, is not put back in the
/// ring, and nothing it holds comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_holds_nothing_up_and_brings_nothing_back() {
    const KEYS: usize = 12;
    let mut cluster = TestCluster::start_with(4, |config| config.tombstone_grace_ms = 1).await;
    cluster.write_keys("gone", KEYS).await;
    let first = cluster.addresses()[0];
    let client = cluster.client_of(first);
    cluster.stop(3).await;
    remove_node_4(&cluster, &client).await;
    for i in 0..KEYS {
        client
            .delete("default", format!("gone{i}").as_bytes(), None, OPTIONS)
            .await
            .expect("delete");
    }
    // A sweep every 10 s; one that finds replicas not yet agreeing keeps its tombstones for
    // the next, so this waits longer than `eventually` does.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while reaped_in_all(&cluster).await < KEYS as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "tombstones not reaped with a removed member: {:?}",
            client.status().await.map(|s| s.reaper)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Gossip forgets a removed member that is down; while it still knows it, it shows it so.
    let status = client.status().await.expect("status");
    let shown = status.members.iter().find(|m| m.id == "node-4");
    assert!(
        shown.is_none_or(|m| m.status == "removed" && !m.in_ring),
        "{shown:?}"
    );

    // The removed node comes back on its old disk: it still holds every value.
    cluster.restart(3).await;
    let comeback = cluster.addresses()[3];
    eventually("the removed node refusing to serve", || async {
        let read = cluster
            .client_of(comeback)
            .get("default", b"gone0", OPTIONS)
            .await;
        matches!(&read, Err(ClientError::Server(e)) if e.message.contains("was removed"))
    })
    .await;
    // Time for anti-entropy rounds (1 s apart), handoffs and claims that must not happen.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ring = client.ring().await.expect("ring").expect("a ring");
    assert_eq!(ring.members().len(), 3, "the removed node was put back");
    assert_all_gone(&client, "gone", KEYS).await;
    cluster.shutdown().await;
}

/// Issue 13: with its first seed dead, the client used to wait out the full timeout for every
/// ring fetch, status and request. Now a dial that gets no handshake fails within the connect
/// timeout, reads go to the next candidate after the hedge delay, and a client whose every
/// address is dead gets an error naming each address with its own cause. (The times are
/// printed by `cargo run -p dynamo-tests --example dead_seed`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_seed_does_not_stall_the_client() {
    let mut cluster = TestCluster::start(3).await;
    let addresses = cluster.addresses();
    cluster.stop(0).await;
    let tls = tls_for(&cluster.certs_dir(), "tester");
    let client = Client::new(&tls, addresses.clone(), Duration::from_secs(5)).expect("client");
    client
        .status()
        .await
        .expect("status through the second seed");
    client.ring().await.expect("ring");
    client
        .put("default", b"k", b"v".to_vec(), None, OPTIONS)
        .await
        .expect("put with one node dead");
    let read = client.get("default", b"k", OPTIONS).await.expect("get");
    assert!(matches!(read, GetOutcome::Found(reply) if reply.values == [b"v".to_vec()]));

    // Only dead addresses: every one is named, with why it failed.
    let dead = vec![
        addresses[0],
        std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
    ];
    let lost = Client::new(&tls, dead.clone(), Duration::from_secs(5)).expect("client");
    match lost.status().await {
        Err(error @ ClientError::Unreachable(_)) => {
            let message = error.to_string();
            for address in &dead {
                assert!(message.contains(&address.to_string()), "{message}");
            }
            assert!(message.contains("no handshake within"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    cluster.shutdown().await;
}

/// Issue 11: handoff after a join can be cancelled by an admin, and what it would have copied
/// still reaches the new owner by anti-entropy: every key stays readable and every node's
/// status shows no transfer left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_handoff_leaves_the_copying_to_anti_entropy() {
    let mut cluster = TestCluster::start(3).await;
    cluster.write_keys("h", 200).await;
    let old = cluster.addresses();
    cluster.add_node().await;
    cluster.wait_for_members(4).await;
    let client = cluster.client();
    for &address in &old {
        match client
            .request_to(address, &dynamo_protocol::Request::CancelHandoff)
            .await
        {
            Ok(dynamo_protocol::Response::Cancelled(_)) => {}
            other => panic!("cancel on {address}: {other:?}"),
        }
        let status = cluster.client_of(address).status().await.expect("status");
        assert!(
            status.handoff.running.is_empty() && status.handoff.queued == 0,
            "{address}: {:?}",
            status.handoff
        );
    }
    // The new node replicates about three quarters of the keys (N = 3 of 4 nodes); it gets
    // them without handoff. Its store is read with it stopped, so no read repair helps.
    let new = cluster.nodes.len() - 1;
    let deadline = std::time::Instant::now() + dynamo_tests::SETTLE;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.stop(new).await;
        let held = cluster.keys_on_disk(new, "h");
        if held >= 100 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new node holds {held} of 200 keys"
        );
        cluster.restart(new).await;
    }
    cluster.shutdown().await;
}

/// Issue 11 and Riak's known anomaly: a tombstone reaped while a fallback still held a hint of
/// the deleted value lets the hint's delivery bring the value back. Here node-4 is down while
/// keys are written (a fallback keeps hints for it), then that fallback goes down holding the
/// hints, node-4 comes back, and the keys are deleted. While the fallback is down no tombstone
/// is reaped, however old; once it is back its hints reach node-4 (which already holds the
/// tombstones, so nothing comes back), and only then are the tombstones reaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_delivered_after_the_delete_does_not_bring_the_value_back() {
    const KEYS: usize = 12;
    let mut cluster = TestCluster::start_with(4, |config| config.tombstone_grace_ms = 1).await;
    let observer = cluster.client_of(cluster.addresses()[0]);
    cluster.stop(3).await;
    eventually("node-4 marked down", || async {
        let status = observer.status().await.expect("status");
        status.members.iter().any(|m| m.id == "node-4" && !m.up)
    })
    .await;
    cluster.write_keys("gone", KEYS).await;
    // The fallback holding hints for node-4 (with 4 nodes and N = 3 there is one per key).
    let mut holder = None;
    for (index, address) in cluster.addresses().into_iter().enumerate() {
        let status = cluster.client_of(address).status().await.expect("status");
        let held = status
            .members
            .iter()
            .filter(|m| m.id == "node-4")
            .map(|m| m.pending_hints)
            .sum::<usize>();
        if held > 0 {
            holder = Some(index);
        }
    }
    let holder = holder.expect("some node holds hints for node-4");
    cluster.stop(holder).await;
    cluster.restart(3).await;
    let client = cluster.client_of(cluster.addresses()[0]);
    for i in 0..KEYS {
        client
            .delete("default", format!("gone{i}").as_bytes(), None, OPTIONS)
            .await
            .expect("delete");
    }
    // Well past the grace period and a sweep: with the hint holder down, nothing is reaped.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let reaped = reaped_in_all(&cluster).await;
    assert_eq!(
        reaped, 0,
        "tombstones reaped while a node holding hints was down"
    );

    cluster.restart(holder).await;
    eventually("every hint delivered", || async {
        cluster.hints_held_for("node-4").await == 0
    })
    .await;
    eventually("the tombstones reaped", || async {
        reaped_in_all(&cluster).await >= KEYS as u64
    })
    .await;
    assert_all_gone(&client, "gone", KEYS).await;
    cluster.shutdown().await;
}

/// Issue 11: a dead node is replaced by a new one in one step (`dynamo join --replace`): the
/// claimant removes the dead member and adds the new one in a single ring change, the new node
/// takes over exactly the dead node's partitions (no other partition moves), and anti-entropy
/// fills them from the surviving replicas: every key reads back at R = 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_replaced_in_one_ring_change() {
    const KEYS: usize = 40;
    let mut cluster = TestCluster::start(4).await;
    let client = cluster.client_of(cluster.addresses()[0]);
    cluster.write_keys("r", KEYS).await;
    cluster.stop(3).await;
    eventually("node-4 marked down", || async {
        let status = client.status().await.expect("status");
        status.members.iter().any(|m| m.id == "node-4" && !m.up)
    })
    .await;
    let before = client.ring().await.expect("ring").expect("a ring");
    cluster.add_node_replacing(Some("node-4")).await;
    eventually("node-5 in the ring in place of node-4", || async {
        client.ring().await.ok().flatten().is_some_and(|ring| {
            ring.member(&"node-5".into()).is_some() && ring.member(&"node-4".into()).is_none()
        })
    })
    .await;
    let after = client.ring().await.expect("ring").expect("a ring");
    assert_eq!(after.version(), before.version() + 1, "one ring change");
    for partition in 0..before.partition_count() {
        let (old, new) = (
            before.partition_owner(partition),
            after.partition_owner(partition),
        );
        if old.as_str() == "node-4" {
            assert_eq!(new.as_str(), "node-5", "partition {partition}");
        } else {
            assert_eq!(old, new, "partition {partition} moved");
        }
    }
    cluster.wait_for_members(4).await;
    let all = RequestOptions {
        r: Some(3),
        ..OPTIONS
    };
    for i in 0..KEYS {
        let key = format!("r{i}");
        eventually(&format!("{key} readable at R=3"), || async {
            client
                .get("default", key.as_bytes(), all)
                .await
                .is_ok_and(|read| values(&read) == [format!("v{i}")])
        })
        .await;
    }
    cluster.shutdown().await;
}

/// This node's copy of `key` of bucket `bucket`, as a client-side read asks for it.
async fn copy_on(
    client: &Client,
    address: std::net::SocketAddr,
    bucket: &str,
    key: &[u8],
) -> Result<dynamo_protocol::CopyReply, ClientError> {
    use dynamo_protocol::{Request, Response};
    let request = Request::ReadCopy {
        bucket: bucket.into(),
        key: key.to_vec(),
    };
    match client.request_to(address, &request).await? {
        Response::Copy(copy) => Ok(*copy),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// Issue 28, paper 6.4 taken all the way: the client reads R replicas' copies itself. Equal
/// copies give exactly a coordinator's answer (siblings and context token); a replica that
/// missed a write makes the copies differ, and the read goes to a coordinator, which answers
/// with the write and repairs the replica (4.5); a node that does not replicate a key refuses
/// to answer for it rather than say "not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_copies_and_a_coordinator_repairs_them() {
    // No anti-entropy: only the read may repair the stale replica.
    let mut cluster =
        TestCluster::start_with(3, |config| config.anti_entropy_interval_ms = 0).await;
    let client = cluster.client();
    let coordinated = cluster.client().coordinated_reads();
    for value in ["book", "lamp"] {
        client
            .put("default", b"cart", value.into(), None, OPTIONS)
            .await
            .expect("blind put");
    }
    let copies = client.get("default", b"cart", OPTIONS).await.expect("get");
    assert_eq!(values(&copies), ["book", "lamp"]);
    assert_eq!(
        client.read_paths().from_copies,
        1,
        "{:?}",
        client.read_paths()
    );
    let through_coordinator = coordinated.get("default", b"cart", OPTIONS).await;
    assert_eq!(copies, through_coordinator.expect("coordinated get"));
    assert_eq!(coordinated.read_paths().coordinated, 1);

    // Node 3 misses a write (W = 2 of the other two).
    cluster.stop(2).await;
    client
        .put(
            "default",
            b"cart",
            b"pen".to_vec(),
            Some(context(&copies)),
            OPTIONS,
        )
        .await
        .expect("put with a node down");
    cluster.restart(2).await;
    cluster.wait_for_members(3).await;
    let client = cluster.client();
    let node3 = cluster.addresses()[2];
    let stale = copy_on(&client, node3, "default", b"cart")
        .await
        .expect("copy");
    let fresh = copy_on(&client, cluster.addresses()[0], "default", b"cart")
        .await
        .expect("copy");
    assert_ne!(stale.digest, fresh.digest);
    let repairs_before = cluster.status_sum(|s| s.counters.read_repairs).await;
    // R = 3: all three copies, which differ, so a coordinator answers and repairs node 3.
    let all = RequestOptions {
        r: Some(3),
        ..OPTIONS
    };
    let read = client.get("default", b"cart", all).await.expect("R=3 get");
    assert_eq!(values(&read), ["pen"]);
    let paths = client.read_paths();
    assert_eq!(
        (paths.from_copies, paths.copies_differed),
        (0, 1),
        "{paths:?}"
    );
    eventually("node 3 repaired by the read", || async {
        copy_on(&client, node3, "default", b"cart")
            .await
            .is_ok_and(|copy| copy.digest == fresh.digest)
    })
    .await;
    assert!(cluster.status_sum(|s| s.counters.read_repairs).await > repairs_before);
    // Now every copy agrees: the client answers from them, as a coordinator would.
    let read = client.get("default", b"cart", all).await.expect("R=3 get");
    assert_eq!(
        client.read_paths().from_copies,
        1,
        "{:?}",
        client.read_paths()
    );
    assert_eq!(read, coordinated_answer(&cluster, all).await);

    // N = 1: one node holds the key; the other two refuse to answer for it.
    client
        .create_bucket(BucketProps {
            n: 1,
            r: 1,
            w: 1,
            ..BucketProps::new("single")
        })
        .await
        .expect("create bucket");
    eventually("the bucket on every node", || async {
        let mut answers = Vec::new();
        for address in cluster.addresses() {
            answers.push(copy_on(&client, address, "single", b"k").await);
        }
        answers.iter().all(
            |a| !matches!(a, Err(ClientError::Server(e)) if e.message.contains("does not exist")),
        )
    })
    .await;
    client
        .put("single", b"k", b"v".to_vec(), None, OPTIONS)
        .await
        .expect("put n=1");
    let mut held = 0;
    for address in cluster.addresses() {
        match copy_on(&client, address, "single", b"k").await {
            Ok(copy) => {
                assert!(matches!(copy.answer, dynamo_protocol::Response::Get(_)));
                held += 1;
            }
            Err(ClientError::Server(e)) => {
                assert_eq!(e.kind, ErrorKind::NotReady, "{e:?}");
                assert!(e.message.contains("not a replica"), "{e:?}");
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(held, 1, "one replica of an N = 1 key answers");
    cluster.shutdown().await;
}

/// What a coordinator answers for `cart` with `options`.
async fn coordinated_answer(cluster: &TestCluster, options: RequestOptions) -> GetOutcome {
    let client = cluster.client().coordinated_reads();
    client
        .get("default", b"cart", options)
        .await
        .expect("coordinated get")
}
