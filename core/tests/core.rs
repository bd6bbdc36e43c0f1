//! The sans-IO node core driven by hand, without a network or a runtime: one founding node over
//! a `MemoryStore`, its store operations run at once. Checks the request rules (roles, shutdown),
//! that every request is answered exactly once, and that buckets and the ring are saved through
//! the store and come back in a new core (issue 10: custom buckets survive restarts).

use dynamo_core::{
    CoreConfig, NodeCore, Output, RequestId, SavedState, Time, execute, load_saved_state,
};
use dynamo_protocol::{BucketProps, ErrorKind, Request, RequestOptions, Response};
use dynamo_protocol::{PeerIdentity, Role};
use dynamo_quorum::Value;
use dynamo_resolve::Resolver;
use dynamo_storage::{Durability, MemoryStore, Store, StoreOptions};

const NOW: Time = Time::from_millis(1_000_000);

fn config() -> CoreConfig {
    CoreConfig {
        secret: dynamo_quorum::ContextKey::new([1; 32]),
        name: "n1".into(),
        address: "sim-1".into(),
        zone: "z".into(),
        capacity: 1,
        seeds: Vec::new(),
        cluster: "test".into(),
        partitions: 8,
        target_n: 3,
        request_timeout_ms: 1_000,
        max_value_bytes: 1024,
        gossip_interval_ms: 1_000,
        replica_durability: Durability::Sync,
        anti_entropy_interval_ms: 0,
        anti_entropy_sessions: 1,
        anti_entropy_bytes_per_sec: 0,
        handoff_concurrency: 2,
        tombstone_grace_ms: 0,
        replaces: None,
        rejoin: false,
        stand_in_after_ms: 500,
    }
}

fn identity(role: Role) -> PeerIdentity {
    PeerIdentity {
        role,
        name: "someone".into(),
    }
}

/// A core and its store, with store operations carried out as soon as they appear.
struct Harness {
    core: NodeCore,
    store: MemoryStore<Value>,
    next: u64,
}

impl Harness {
    fn found() -> Harness {
        Harness::found_with(config())
    }

    /// A founding node on a new store, with `config`.
    fn found_with(config: CoreConfig) -> Harness {
        let store = MemoryStore::open(&StoreOptions::new("n1", NOW.as_millis())).expect("store");
        Harness::on_with(store, config)
    }

    fn on(store: MemoryStore<Value>) -> Harness {
        Harness::on_with(store, config())
    }

    fn on_with(store: MemoryStore<Value>, config: CoreConfig) -> Harness {
        let saved = load_saved_state(&store).expect("saved state");
        let core = NodeCore::new(config, &saved, store.actor(), NOW, 7).expect("core");
        let mut harness = Harness {
            core,
            store,
            next: 0,
        };
        harness.settle();
        harness
    }

    /// Runs store operations until the core waits; returns the answers it gave.
    fn settle(&mut self) -> Vec<(RequestId, Response)> {
        let mut answers = Vec::new();
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Store { id, op } => {
                    let result = execute(&self.store, op);
                    self.core.handle_store_result(NOW, id, result);
                }
                Output::Respond { id, response } => answers.push((id, response)),
                Output::Call { .. } | Output::Event(_) => {}
            }
        }
        answers
    }

    /// Sends one request and returns the one answer it must get.
    fn ask(&mut self, role: Role, request: Request) -> Response {
        self.next += 1;
        let id = RequestId(self.next);
        self.core.handle_request(NOW, id, &identity(role), request);
        let answers = self.settle();
        assert_eq!(answers.len(), 1, "exactly one answer: {answers:?}");
        assert_eq!(answers[0].0, id);
        assert_eq!(self.core.open_requests(), 0);
        answers.into_iter().next().map(|(_, r)| r).expect("answer")
    }
}

/// A ring of four members, n1 among them (so n1 does not replicate every partition), and a
/// store for n1 that has it saved: n1 restarts on it.
fn four_member_ring() -> (dynamo_ring::Ring, MemoryStore<Value>) {
    use dynamo_ring::{Member, Ring};
    let members = ["a", "b", "c", "n1"]
        .map(|id| Member::new(id, "z", 1))
        .to_vec();
    let ring = Ring::equal_partitions(8, 3, members).expect("ring");
    let store = MemoryStore::open(&StoreOptions::new("n1", NOW.as_millis())).expect("store");
    store
        .save_node_state(
            dynamo_core::STATE_RING,
            &postcard::to_allocvec(&ring).expect("encode"),
        )
        .expect("save ring");
    (ring, store)
}

/// A client's put of `value` to key `cart` of bucket `solo`, after the read that gave `context`.
fn put_cart(value: &[u8], context: Option<String>) -> Request {
    Request::Put {
        bucket: "solo".into(),
        key: b"cart".to_vec(),
        value: Some(value.to_vec()),
        context,
        options: RequestOptions::default(),
        forwarded: false,
        write_id: None,
    }
}

/// A founding node with a bucket `solo` of N = 1.
fn solo_node() -> Harness {
    let mut node = Harness::found();
    assert_eq!(
        node.ask(Role::Admin, Request::CreateBucket(bucket("solo", 1))),
        Response::Ack
    );
    node
}

fn error_kind(response: &Response) -> Option<ErrorKind> {
    match response {
        Response::Error(error) => Some(error.kind),
        _ => None,
    }
}

fn bucket(name: &str, n: usize) -> BucketProps {
    BucketProps {
        n,
        r: 1,
        w: 1,
        ..BucketProps::new(name)
    }
}

/// Security review hole 2: what each certificate role may ask. Peer requests need a node
/// certificate; membership and bucket changes an admin's; writes a client's (or an admin's, or
/// a node's, which forwards them); reads any role. A refused request gets `Forbidden` and a
/// message naming the role it needs; an allowed one is never refused for its role.
#[test]
fn each_role_may_send_exactly_its_requests() {
    let get = Request::Get {
        bucket: "default".into(),
        key: b"k".to_vec(),
        options: RequestOptions::default(),
    };
    let put = Request::Put {
        bucket: "default".into(),
        key: b"k".to_vec(),
        value: Some(b"v".to_vec()),
        context: None,
        options: RequestOptions::default(),
        forwarded: false,
        write_id: None,
    };
    let peer = Request::Replica {
        partition: 0,
        request: dynamo_quorum::ReplicaRequest::Read { key: b"k".to_vec() },
    };
    // (request, what it needs, roles allowed: node, admin, client, read-only)
    let table: Vec<(Request, &str, [bool; 4])> = vec![
        (get, "read-only, client or admin", [true, true, true, true]),
        (
            Request::ReadCopy {
                bucket: "default".into(),
                key: b"k".to_vec(),
            },
            "",
            [true, true, true, true],
        ),
        (Request::Status, "", [true, true, true, true]),
        (Request::Ring, "", [true, true, true, true]),
        (Request::ListBuckets, "", [true, true, true, true]),
        (Request::Ping(vec![1; 8]), "", [true, true, true, true]),
        (put, "the client or admin role", [true, true, true, false]),
        (
            Request::CreateBucket(bucket("solo", 1)),
            "the admin role",
            [false, true, false, false],
        ),
        (
            Request::Leave,
            "the admin role",
            [false, true, false, false],
        ),
        (
            Request::RemoveNode { name: "n9".into() },
            "the admin role",
            [false, true, false, false],
        ),
        (peer, "the node role", [true, false, false, false]),
        (
            Request::Gossip {
                reply_to: "x".into(),
                message: vec![1, 2, 3],
            },
            "the node role",
            [true, false, false, false],
        ),
        (
            Request::Handoff {
                partition: 0,
                entries: Vec::new(),
            },
            "the node role",
            [true, false, false, false],
        ),
        (
            Request::Buckets(Vec::new()),
            "the node role",
            [true, false, false, false],
        ),
        (
            Request::ExportVersions {
                bucket: "default".into(),
                cursor: None,
                limit: 10,
            },
            "",
            [true, true, true, true],
        ),
        (
            Request::ScanVersions {
                partition: 0,
                bucket: "default".into(),
                after: None,
                limit: 10,
            },
            "the node role",
            [true, false, false, false],
        ),
        // Merged versions may carry any actor's dots: only an operator restores.
        (
            Request::MergeVersions {
                bucket: "default".into(),
                key: b"k".to_vec(),
                object: dynamo_quorum::Object::empty(),
                options: RequestOptions::default(),
                forwarded: false,
            },
            "the admin role",
            [false, true, false, false],
        ),
        // Passed on to a primary by the node that checked the operator's role.
        (
            Request::MergeVersions {
                bucket: "default".into(),
                key: b"k".to_vec(),
                object: dynamo_quorum::Object::empty(),
                options: RequestOptions::default(),
                forwarded: true,
            },
            "the node role",
            [true, false, false, false],
        ),
    ];
    for (request, needs, allowed) in table {
        for (role, allowed) in Role::ALL.into_iter().zip(allowed) {
            let mut node = Harness::found();
            let answer = node.ask(role, request.clone());
            if allowed {
                assert_ne!(
                    error_kind(&answer),
                    Some(ErrorKind::Forbidden),
                    "{role} {request:?}: {answer:?}"
                );
                continue;
            }
            let Response::Error(error) = answer else {
                panic!("{role} {request:?} was not refused: {answer:?}");
            };
            assert_eq!(error.kind, ErrorKind::Forbidden, "{role} {request:?}");
            assert!(
                error.message.contains(needs) && error.message.contains(&role.to_string()),
                "{role} {request:?}: {}",
                error.message
            );
        }
    }
}

/// Paper 4.5 on one node: a put is coordinated, stored and acknowledged; a get reads it back.
#[test]
fn a_single_node_writes_and_reads() {
    let mut node = solo_node();
    let put = put_cart(b"book", None);
    assert!(matches!(node.ask(Role::Client, put), Response::Put(reply) if reply.acknowledged == 1));
    let get = Request::Get {
        bucket: "solo".into(),
        key: b"cart".to_vec(),
        options: RequestOptions::default(),
    };
    match node.ask(Role::Client, get) {
        Response::Get(reply) => assert_eq!(reply.values, vec![b"book".to_vec()]),
        other => panic!("{other:?}"),
    }
}

/// Issue 11: a write retried with its write id (the client timed out and asked again) is one
/// version: the coordinator that already holds it makes no second dot, and the retry answers
/// with the same context. Without an id the retry is a new write and a sibling.
#[test]
fn a_retried_write_is_one_version() {
    let mut node = Harness::found();
    node.ask(Role::Admin, Request::CreateBucket(bucket("solo", 1)));
    let put = |key: &[u8], write_id: Option<u128>| Request::Put {
        bucket: "solo".into(),
        key: key.to_vec(),
        value: Some(b"book".to_vec()),
        context: None,
        options: RequestOptions::default(),
        forwarded: false,
        write_id,
    };
    let get = |key: &[u8]| Request::Get {
        bucket: "solo".into(),
        key: key.to_vec(),
        options: RequestOptions::default(),
    };
    // (key, write id, values a read shows after two attempts, whether the contexts are equal)
    let table: [(&[u8], Option<u128>, usize, bool); 2] = [
        (b"with-id", Some(7), 1, true),
        (b"without-id", None, 2, false),
    ];
    for (key, write_id, shown, same_context) in table {
        let contexts: Vec<String> = (0..2)
            .map(|_| match node.ask(Role::Client, put(key, write_id)) {
                Response::Put(reply) => reply.context,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(contexts[0] == contexts[1], same_context, "{write_id:?}");
        match node.ask(Role::Client, get(key)) {
            Response::Get(reply) => assert_eq!(reply.values.len(), shown, "{write_id:?}"),
            other => panic!("{other:?}"),
        }
    }
}

/// Bad requests get a clear error and nothing else: unknown buckets, empty keys, oversized
/// values, garbage contexts, impossible quorums.
#[test]
fn bad_client_requests_get_errors() {
    let mut node = Harness::found();
    node.ask(Role::Admin, Request::CreateBucket(bucket("solo", 1)));
    let put = |bucket: &str, key: &[u8], value: usize, context: Option<&str>| Request::Put {
        bucket: bucket.into(),
        key: key.to_vec(),
        value: Some(vec![b'x'; value]),
        context: context.map(String::from),
        options: RequestOptions::default(),
        forwarded: false,
        write_id: None,
    };
    let table = [
        (
            "unknown bucket",
            put("nosuch", b"k", 1, None),
            "does not exist",
        ),
        (
            "invalid bucket",
            put("No/Such", b"k", 1, None),
            "invalid bucket name",
        ),
        ("empty key", put("solo", b"", 1, None), "keys must be"),
        (
            "huge value",
            put("solo", b"k", 4096, None),
            "the limit is 1024",
        ),
        (
            "garbage context",
            put("solo", b"k", 1, Some("!!")),
            "context",
        ),
        (
            "N above the ring's",
            Request::CreateBucket(bucket("wide", 9)),
            "more than the ring",
        ),
    ];
    for (what, request, expected) in table {
        match node.ask(Role::Admin, request) {
            Response::Error(error) => {
                assert_eq!(error.kind, ErrorKind::BadRequest, "{what}");
                assert!(
                    error.message.contains(expected),
                    "{what}: {}",
                    error.message
                );
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// A node shutting down refuses new client work ("try another node") but still serves peers.
#[test]
fn shutting_down_refuses_clients_only() {
    let mut node = Harness::found();
    node.core.begin_shutdown();
    let get = Request::Get {
        bucket: "default".into(),
        key: b"k".to_vec(),
        options: RequestOptions::default(),
    };
    assert_eq!(
        error_kind(&node.ask(Role::Client, get)),
        Some(ErrorKind::NotReady)
    );
    let read = Request::Replica {
        partition: 0,
        request: dynamo_quorum::ReplicaRequest::Read { key: b"k".to_vec() },
    };
    assert!(matches!(node.ask(Role::Node, read), Response::Replica(_)));
}

/// Issue 10: the ring and the bucket table are saved through the store, and a core built on
/// that store after a crash has both (before, buckets lived only in gossip).
#[test]
fn buckets_and_ring_come_back_from_the_store() {
    let mut node = Harness::found();
    let carts = bucket("carts", 3);
    node.ask(Role::Admin, Request::CreateBucket(carts.clone()));
    let version = node.core.ring().map(dynamo_ring::Ring::version);
    let saved = load_saved_state(&node.store).expect("state");
    assert!(saved.ring.is_some() && saved.buckets.is_some() && saved.status.is_some());

    let store = node
        .store
        .crash(&StoreOptions::new("n1", NOW.as_millis()))
        .expect("crash");
    let restarted = Harness::on(store);
    assert!(restarted.core.buckets().any(|b| *b == carts));
    assert_eq!(
        restarted.core.ring().map(dynamo_ring::Ring::version),
        version
    );

    let unreadable = SavedState {
        ring: Some(vec![0xff; 3]),
        ..SavedState::default()
    };
    let refused = NodeCore::new(config(), &unreadable, restarted.store.actor(), NOW, 1);
    assert!(
        refused.is_err(),
        "a corrupt saved ring is an error, not a new cluster"
    );
}

/// Issue 11 (as Riak's fallback vnodes do): a node that does not replicate a partition answers
/// reads of its keys with the versions it holds for them as hints, so a write that only
/// fallbacks acknowledged is readable before the hints are delivered; a replica of the
/// partition answers from its data only.
#[test]
fn a_fallback_answers_reads_with_its_hints() {
    use dynamo_quorum::{ReplicaReply, ReplicaRequest};
    use dynamo_vclock::{Actor, DvvSet};

    let (ring, store) = four_member_ring();
    let me = dynamo_ring::NodeId::from("n1");
    let stands_in = (0..8)
        .find(|&p| !ring.replicas_of_partition(p, 3).contains(&&me))
        .expect("a partition n1 does not replicate");
    let replicates = (0..8)
        .find(|&p| ring.replicas_of_partition(p, 3).contains(&&me))
        .expect("a partition n1 replicates");
    let mut node = Harness::on(store);
    let versions = DvvSet::new(
        &Actor::new("a#1"),
        Value::Data(b"book".to_vec()),
        NOW.as_millis(),
    );
    for partition in [stands_in, replicates] {
        let write = Request::Replica {
            partition,
            request: ReplicaRequest::Write {
                key: b"cart".to_vec(),
                object: versions.clone(),
                hint: Some("a".into()),
            },
        };
        assert_eq!(
            node.ask(Role::Node, write),
            Response::Replica(ReplicaReply::Written)
        );
    }
    let read = |partition| Request::Replica {
        partition,
        request: ReplicaRequest::Read {
            key: b"cart".to_vec(),
        },
    };
    assert_eq!(
        node.ask(Role::Node, read(stands_in)),
        Response::Replica(ReplicaReply::Found(versions))
    );
    assert_eq!(
        node.ask(Role::Node, read(replicates)),
        Response::Replica(ReplicaReply::NotFound)
    );
}

/// `dynamo status` shows handoff progress: a node restarted on a ring where it no longer
/// replicates some partitions queues them for the current replicas (the restart sweep), and
/// they wait while no replica is up.
#[test]
fn status_shows_the_handoff_queue() {
    let (ring, store) = four_member_ring();
    let me = dynamo_ring::NodeId::from("n1");
    let not_mine = (0..8)
        .filter(|&p| !ring.replicas_of_partition(p, 3).contains(&&me))
        .count();
    assert!(not_mine > 0);
    let mut node = Harness::on(store);
    match node.ask(Role::Client, Request::Status) {
        Response::Status(status) => {
            assert_eq!(status.handoff.queued, not_mine, "{:?}", status.handoff);
            assert!(status.handoff.running.is_empty());
            assert!(
                !status.anti_entropy.enabled,
                "anti-entropy is off in this harness"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A founding node with a bucket `scores` of N = 1 that resolves siblings to their maximum.
fn scores_node() -> Harness {
    let mut node = Harness::found();
    let scores = BucketProps {
        resolver: Resolver::Max,
        ..bucket("scores", 1)
    };
    assert_eq!(
        node.ask(Role::Admin, Request::CreateBucket(scores)),
        Response::Ack
    );
    node
}

/// A blind write of `value` to key `alice` of bucket `scores`.
fn put_score(value: &[u8]) -> Request {
    Request::Put {
        bucket: "scores".into(),
        key: b"alice".to_vec(),
        value: Some(value.to_vec()),
        context: None,
        options: RequestOptions::default(),
        forwarded: false,
        write_id: None,
    }
}

/// Issue 14: a bucket resolves siblings by the resolver it was created with. A get answers
/// the raw siblings and the resolution; a value the resolver could not read is refused at put;
/// the resolver cannot change once chosen.
#[test]
fn a_bucket_resolves_by_its_resolver() {
    let mut node = scores_node();
    // Two blind writes are concurrent: siblings that `max` resolves.
    for value in [&b"17"[..], b"42"] {
        assert!(matches!(
            node.ask(Role::Client, put_score(value)),
            Response::Put(_)
        ));
    }
    let refused = node.ask(Role::Client, put_score(b"lots"));
    assert_eq!(
        error_kind(&refused),
        Some(ErrorKind::BadRequest),
        "{refused:?}"
    );
    assert!(format!("{refused:?}").contains("max"), "{refused:?}");
    let get = Request::Get {
        bucket: "scores".into(),
        key: b"alice".to_vec(),
        options: RequestOptions::default(),
    };
    match node.ask(Role::Client, get) {
        Response::Get(reply) => {
            assert_eq!(reply.values.len(), 2);
            let resolution = reply.resolution.expect("a max bucket resolves");
            assert_eq!(resolution.value, Some(b"42".to_vec()));
            assert_eq!(resolution.merged, 2);
        }
        other => panic!("{other:?}"),
    }
    let changed = BucketProps {
        resolver: Resolver::Cart,
        ..bucket("scores", 1)
    };
    let refused = node.ask(Role::Admin, Request::CreateBucket(changed));
    assert_eq!(
        error_kind(&refused),
        Some(ErrorKind::BadRequest),
        "{refused:?}"
    );

    // Last write wins: blind writes replace what their coordinator holds, no sibling grows.
    let sessions = BucketProps {
        resolver: Resolver::Lww,
        ..bucket("sessions", 1)
    };
    node.ask(Role::Admin, Request::CreateBucket(sessions));
    for value in ["one", "two", "three"] {
        let put = Request::Put {
            bucket: "sessions".into(),
            key: b"s1".to_vec(),
            value: Some(value.into()),
            context: None,
            options: RequestOptions::default(),
            forwarded: false,
            write_id: None,
        };
        assert!(matches!(node.ask(Role::Client, put), Response::Put(_)));
    }
    let get = Request::Get {
        bucket: "sessions".into(),
        key: b"s1".to_vec(),
        options: RequestOptions::default(),
    };
    match node.ask(Role::Client, get) {
        Response::Get(reply) => {
            assert_eq!(reply.values, vec![b"three".to_vec()]);
            let resolution = reply.resolution.expect("an lww bucket resolves");
            assert_eq!(resolution.merged, 1);
        }
        other => panic!("{other:?}"),
    }
}

/// Issue 28 (paper 6.4, client-side reads): a replica's copy answers exactly what a coordinated
/// get of the same versions answers (siblings, resolution, context token), with a digest that
/// changes with every write and is 0 for a key never written; bad requests are refused as a
/// get's are.
#[test]
fn a_copy_answers_as_a_coordinator_would() {
    let mut node = scores_node();
    let get = |key: &[u8]| Request::Get {
        bucket: "scores".into(),
        key: key.to_vec(),
        options: RequestOptions::default(),
    };
    let copy = |bucket: &str, key: &[u8]| Request::ReadCopy {
        bucket: bucket.into(),
        key: key.to_vec(),
    };
    let mut digests = Vec::new();
    for key in [&b"alice"[..], b"bob"] {
        let Response::Copy(reply) = node.ask(Role::ReadOnly, copy("scores", key)) else {
            panic!("a replica answers with its copy");
        };
        assert_eq!(reply.answer, node.ask(Role::Client, get(key)));
        assert!(matches!(reply.answer, Response::NotFound { .. }));
        assert_eq!(reply.digest, 0, "a key never written");
    }
    // Two blind writes (siblings that `max` resolves), then a delete of both.
    for value in [&b"17"[..], b"42"] {
        assert!(matches!(
            node.ask(Role::Client, put_score(value)),
            Response::Put(_)
        ));
        let Response::Copy(reply) = node.ask(Role::Client, copy("scores", b"alice")) else {
            panic!("a replica answers with its copy");
        };
        assert_eq!(reply.answer, node.ask(Role::Client, get(b"alice")));
        digests.push(reply.digest);
    }
    let Response::Copy(reply) = node.ask(Role::Client, copy("scores", b"alice")) else {
        panic!("a replica answers with its copy");
    };
    let Response::Get(found) = &reply.answer else {
        panic!("{:?}", reply.answer);
    };
    assert_eq!(found.values.len(), 2);
    assert!(found.resolution.is_some(), "the bucket's resolver applies");
    let delete = Request::Put {
        bucket: "scores".into(),
        key: b"alice".to_vec(),
        value: None,
        context: Some(found.context.clone()),
        options: RequestOptions::default(),
        forwarded: false,
        write_id: None,
    };
    assert!(matches!(node.ask(Role::Client, delete), Response::Put(_)));
    let Response::Copy(reply) = node.ask(Role::Client, copy("scores", b"alice")) else {
        panic!("a replica answers with its copy");
    };
    assert!(matches!(reply.answer, Response::NotFound { .. }));
    assert_eq!(reply.answer, node.ask(Role::Client, get(b"alice")));
    digests.push(reply.digest);
    assert!(digests.iter().all(|&d| d != 0), "{digests:?}");
    digests.dedup();
    assert_eq!(digests.len(), 3, "every write changes the digest");

    let refused = [
        (copy("nope", b"k"), "does not exist"),
        (copy("Bad/Name", b"k"), "invalid bucket name"),
        (copy("scores", b""), "keys must be"),
    ];
    for (request, says) in refused {
        let answer = node.ask(Role::Client, request);
        assert_eq!(
            error_kind(&answer),
            Some(ErrorKind::BadRequest),
            "{answer:?}"
        );
        assert!(format!("{answer:?}").contains(says), "{answer:?}");
    }
}

/// Issue 15: listing a bucket's keys is a full scan in pages. Whatever the page size, every live
/// key of the bucket comes back exactly once; deleted keys and other buckets' keys do not, and
/// bad limits, cursors and buckets are refused.
#[test]
fn listing_a_bucket_returns_each_live_key_once() {
    use dynamo_protocol::{KeyPage, ListCursor};
    let mut node = Harness::found();
    for name in ["solo", "solo-b"] {
        assert_eq!(
            node.ask(Role::Admin, Request::CreateBucket(bucket(name, 1))),
            Response::Ack
        );
    }
    let write = |bucket: &str, key: String, value: Option<Vec<u8>>, context| Request::Put {
        bucket: bucket.into(),
        key: key.into_bytes(),
        value,
        context,
        options: RequestOptions::default(),
        forwarded: false,
        write_id: None,
    };
    for i in 0..25 {
        let put = write("solo", format!("k{i:02}"), Some(b"v".to_vec()), None);
        assert!(matches!(node.ask(Role::Client, put), Response::Put(_)));
        // A bucket whose name starts like the first one: its keys must not leak in.
        let other = write("solo-b", format!("k{i:02}"), Some(b"v".to_vec()), None);
        assert!(matches!(node.ask(Role::Client, other), Response::Put(_)));
    }
    for i in [3, 10, 24] {
        let get = Request::Get {
            bucket: "solo".into(),
            key: format!("k{i:02}").into_bytes(),
            options: RequestOptions::default(),
        };
        let Response::Get(read) = node.ask(Role::Client, get) else {
            panic!("k{i:02} was written");
        };
        let delete = write("solo", format!("k{i:02}"), None, Some(read.context));
        assert!(matches!(node.ask(Role::Client, delete), Response::Put(_)));
    }
    let expected: Vec<Vec<u8>> = (0..25)
        .filter(|i| ![3, 10, 24].contains(i))
        .map(|i| format!("k{i:02}").into_bytes())
        .collect();
    for limit in [1, 4, 7, 1000] {
        let mut listed = Vec::new();
        let mut cursor = None;
        for _ in 0..100 {
            let request = Request::ListKeys {
                bucket: "solo".into(),
                cursor: cursor.clone(),
                limit,
            };
            let Response::Keys(KeyPage { keys, next }) = node.ask(Role::ReadOnly, request) else {
                panic!("a page");
            };
            assert!(keys.len() <= limit as usize);
            listed.extend(keys);
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        assert!(cursor.is_none(), "the listing ends (limit {limit})");
        listed.sort();
        assert_eq!(listed, expected, "limit {limit}");
    }
    let refused = [
        ("solo", None, 0),
        ("solo", None, 1001),
        ("nobucket", None, 10),
        ("Bad Name", None, 10),
        (
            "solo",
            Some(ListCursor {
                partition: 8,
                after: None,
            }),
            10,
        ),
    ];
    for (bucket, cursor, limit) in refused {
        let request = Request::ListKeys {
            bucket: bucket.into(),
            cursor,
            limit,
        };
        let answer = node.ask(Role::Client, request);
        assert_eq!(
            error_kind(&answer),
            Some(ErrorKind::BadRequest),
            "{answer:?}"
        );
    }
}

/// Issue 29, backup and restore on one node: an export names every key of the bucket once
/// with its whole version set (siblings, and tombstones of deleted keys), whatever the page
/// size; merging those sets into a fresh node reproduces them exactly, merging them again
/// changes nothing, and merging them into the node after it moved on (an overwrite, a delete)
/// brings back neither the overwritten value nor the deleted key.
#[test]
fn an_export_merged_back_reproduces_every_version_and_resurrects_nothing() {
    use dynamo_protocol::VersionPage;
    let get = |key: &str| Request::Get {
        bucket: "solo".into(),
        key: key.as_bytes().to_vec(),
        options: RequestOptions::default(),
    };
    let write = |key: &str, value: Option<&[u8]>, context| Request::Put {
        bucket: "solo".into(),
        key: key.as_bytes().to_vec(),
        value: value.map(<[u8]>::to_vec),
        context,
        options: RequestOptions::default(),
        forwarded: false,
        write_id: None,
    };
    let context_of = |node: &mut Harness, key: &str| match node.ask(Role::Client, get(key)) {
        Response::Get(read) => read.context,
        Response::NotFound { context } => context,
        other => panic!("{other:?}"),
    };
    let export = |node: &mut Harness, limit: u32| {
        let mut entries = Vec::new();
        let mut cursor = None;
        for _ in 0..100 {
            let request = Request::ExportVersions {
                bucket: "solo".into(),
                cursor: cursor.clone(),
                limit,
            };
            let Response::Versions(VersionPage {
                entries: page,
                next,
            }) = node.ask(Role::ReadOnly, request)
            else {
                panic!("a page");
            };
            assert!(page.len() <= limit as usize);
            entries.extend(page);
            cursor = next;
            if cursor.is_none() {
                // Pages come in partition order; compared in key order.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                return entries;
            }
        }
        panic!("the export ends");
    };
    let values = |node: &mut Harness, key: &str| match node.ask(Role::Client, get(key)) {
        Response::Get(read) => {
            let mut values = read.values;
            values.sort();
            values
        }
        Response::NotFound { .. } => Vec::new(),
        other => panic!("{other:?}"),
    };

    let mut node = solo_node();
    for i in 0..20 {
        let key = format!("k{i:02}");
        assert!(matches!(
            node.ask(Role::Client, write(&key, Some(b"a"), None)),
            Response::Put(_)
        ));
    }
    // Siblings on k00 (two blind writes), a delete on k01.
    assert!(matches!(
        node.ask(Role::Client, write("k00", Some(b"b"), None)),
        Response::Put(_)
    ));
    let context = context_of(&mut node, "k01");
    assert!(matches!(
        node.ask(Role::Client, write("k01", None, Some(context))),
        Response::Put(_)
    ));
    let backup = export(&mut node, 1000);
    assert_eq!(backup.len(), 20, "deleted keys are exported too");
    for limit in [1, 3, 7] {
        assert_eq!(export(&mut node, limit), backup, "limit {limit}");
    }

    let merge = |key: &[u8], object: dynamo_quorum::Object| Request::MergeVersions {
        bucket: "solo".into(),
        key: key.to_vec(),
        object,
        options: RequestOptions::default(),
        forwarded: false,
    };
    let restore = |node: &mut Harness| {
        for (key, object) in &backup {
            let answer = node.ask(Role::Admin, merge(key, object.clone()));
            assert!(matches!(answer, Response::Put(_)), "{answer:?}");
        }
    };
    // Into a fresh node, twice: the same versions, dots included.
    let mut fresh = solo_node();
    restore(&mut fresh);
    assert_eq!(export(&mut fresh, 1000), backup);
    restore(&mut fresh);
    assert_eq!(export(&mut fresh, 1000), backup);
    assert_eq!(values(&mut fresh, "k00"), [b"a".to_vec(), b"b".to_vec()]);
    assert!(values(&mut fresh, "k01").is_empty());

    // Into the node after it moved on: k02 overwritten, k03 deleted.
    let context = context_of(&mut node, "k02");
    assert!(matches!(
        node.ask(Role::Client, write("k02", Some(b"new"), Some(context))),
        Response::Put(_)
    ));
    let context = context_of(&mut node, "k03");
    assert!(matches!(
        node.ask(Role::Client, write("k03", None, Some(context))),
        Response::Put(_)
    ));
    restore(&mut node);
    assert_eq!(values(&mut node, "k02"), [b"new".to_vec()]);
    assert!(values(&mut node, "k03").is_empty(), "a later delete stays");
    assert_eq!(values(&mut node, "k00"), [b"a".to_vec(), b"b".to_vec()]);

    // What a put would refuse, a merge refuses too, and a client may not merge at all.
    let too_big = {
        let mut object = dynamo_quorum::Object::empty();
        object.update(
            &dynamo_vclock::VClock::new(),
            &dynamo_vclock::Actor::new("x#1"),
            Value::Data(vec![0; 2000]),
            1,
        );
        object
    };
    let ahead = {
        let mut object = dynamo_quorum::Object::empty();
        let in_two_days = NOW.as_millis() + 2 * 24 * 3600 * 1000;
        object.update(
            &dynamo_vclock::VClock::new(),
            &dynamo_vclock::Actor::new("x#1"),
            Value::Data(b"v".to_vec()),
            in_two_days,
        );
        object
    };
    let refused = [
        (
            merge(b"k", too_big),
            Role::Admin,
            ErrorKind::BadRequest,
            "limit is 1024",
        ),
        (
            merge(b"", backup[0].1.clone()),
            Role::Admin,
            ErrorKind::BadRequest,
            "keys must be",
        ),
        (
            merge(b"k", backup[0].1.clone()),
            Role::Client,
            ErrorKind::Forbidden,
            "admin role",
        ),
        (
            merge(b"k", dynamo_quorum::Object::empty()),
            Role::Admin,
            ErrorKind::BadRequest,
            "no versions",
        ),
        (
            merge(b"k", ahead),
            Role::Admin,
            ErrorKind::BadRequest,
            "ahead of n1's clock",
        ),
    ];
    for (request, role, kind, says) in refused {
        let answer = node.ask(role, request);
        let Response::Error(error) = answer else {
            panic!("refused: {answer:?}");
        };
        assert_eq!(error.kind, kind, "{}", error.message);
        assert!(error.message.contains(says), "{}", error.message);
    }
}

/// Issue 25 (Kubernetes): every pod of a `StatefulSet` names the first pod as its seed. A node
/// whose seeds are only its own address founds a cluster; one with another seed waits to be
/// added through it.
#[test]
fn a_seed_that_is_the_node_itself_is_no_seed() {
    let cases = [
        (vec!["sim-1".to_owned()], true),
        (vec!["sim-1".to_owned(), "sim-2".to_owned()], false),
        (vec!["sim-2".to_owned()], false),
        (Vec::new(), true),
    ];
    for (seeds, founds) in cases {
        let store = MemoryStore::open(&StoreOptions::new("n1", NOW.as_millis())).expect("store");
        let saved = load_saved_state(&store).expect("saved state");
        let config = CoreConfig {
            seeds: seeds.clone(),
            ..config()
        };
        let core = NodeCore::new(config, &saved, store.actor(), NOW, 7).expect("core");
        assert_eq!(core.ring().is_some(), founds, "seeds {seeds:?}");
    }
}

/// Issue 26: a bucket is acknowledged only once a node saved it. The answer to `CreateBucket`
/// waits for the store's save of the bucket table (the test holds it back), and a save that
/// fails (a full disk) is an error, not an acknowledgement. The same holds for a peer's
/// `Buckets` push, which the pusher counts as a copy.
#[test]
fn a_bucket_is_acknowledged_once_it_is_saved() {
    let cases: [(Role, Request, bool); 4] = [
        (
            Role::Admin,
            Request::CreateBucket(bucket("carts", 1)),
            false,
        ),
        (Role::Admin, Request::CreateBucket(bucket("carts", 1)), true),
        (
            Role::Node,
            Request::Buckets(vec![dynamo_protocol::BucketEntry {
                props: bucket("pushed", 1),
                stamp_ms: 1,
                by: "n2".into(),
            }]),
            false,
        ),
        (
            Role::Node,
            Request::Buckets(vec![dynamo_protocol::BucketEntry {
                props: bucket("pushed", 1),
                stamp_ms: 1,
                by: "n2".into(),
            }]),
            true,
        ),
    ];
    for (role, request, save_fails) in cases {
        let mut node = Harness::found();
        let id = RequestId(1_000);
        node.core.handle_request(NOW, id, &identity(role), request);
        let mut held = Vec::new();
        let mut answered = Vec::new();
        while let Some(output) = node.core.poll_output() {
            match output {
                Output::Store {
                    id: op,
                    op: dynamo_core::StoreOp::SaveState { name, .. },
                } if name == dynamo_core::STATE_BUCKETS => held.push(op),
                Output::Store { id: op_id, op } => {
                    let result = execute(&node.store, op);
                    node.core.handle_store_result(NOW, op_id, result);
                }
                Output::Respond { id, response } => answered.push((id, response)),
                Output::Call { .. } | Output::Event(_) => {}
            }
        }
        assert!(
            answered.is_empty(),
            "{role:?}: answered before the bucket table was saved: {answered:?}"
        );
        assert_eq!(held.len(), 1, "{role:?}: one save of the bucket table");
        let result = if save_fails {
            Err(dynamo_core::StoreError {
                kind: dynamo_core::StoreErrorKind::Failed,
                message: "No space left on device".into(),
            })
        } else {
            Ok(dynamo_core::StoreResult::Done)
        };
        node.core.handle_store_result(NOW, held[0], result);
        let answers = node.settle();
        assert_eq!(answers.len(), 1, "{role:?}: {answers:?}");
        let (answered_id, response) = &answers[0];
        assert_eq!(*answered_id, id);
        if save_fails {
            assert_eq!(
                error_kind(response),
                Some(ErrorKind::Internal),
                "{response:?}"
            );
        } else {
            assert_eq!(*response, Response::Ack);
        }
    }
}

/// Issue 26: a retried write that the coordinator finds in its store (a buffered replica copy
/// of the first attempt, coordinated elsewhere) is acknowledged only once that copy is on
/// disk. With buffered replica writes, a power loss right after the acknowledgement (the
/// in-memory store's `crash` keeps only what was synced) must not lose it.
#[test]
fn a_retried_write_found_here_is_synced_before_it_is_acknowledged() {
    use dynamo_quorum::{ReplicaRequest, WriteId};
    use dynamo_vclock::{Actor, DvvSet};

    let mut node = Harness::found_with(CoreConfig {
        replica_durability: Durability::Buffered,
        ..config()
    });
    node.ask(Role::Admin, Request::CreateBucket(bucket("solo", 1)));
    let key = dynamo_protocol::storage_key("solo", b"cart");
    let partition = node.core.ring().expect("ring").partition_of_key(&key);
    // The first attempt, coordinated by another node, reached this one as a replica write.
    let first = Value::data(b"book".to_vec(), Some(WriteId(9)));
    let object = DvvSet::new(&Actor::new("other#1"), first, NOW.as_millis());
    let replica = Request::Replica {
        partition,
        request: ReplicaRequest::Write {
            key,
            object,
            hint: None,
        },
    };
    assert!(matches!(
        node.ask(Role::Node, replica),
        Response::Replica(_)
    ));
    // The client retries with the same write id; this node coordinates and acknowledges.
    let retry = Request::Put {
        bucket: "solo".into(),
        key: b"cart".to_vec(),
        value: Some(b"book".to_vec()),
        context: None,
        options: RequestOptions::default(),
        forwarded: false,
        write_id: Some(9),
    };
    assert!(matches!(node.ask(Role::Client, retry), Response::Put(_)));
    // Power loss: what was not synced is gone.
    let store = node
        .store
        .crash(&StoreOptions::new("n1", NOW.as_millis()))
        .expect("crash");
    let mut restarted = Harness::on(store);
    let get = Request::Get {
        bucket: "solo".into(),
        key: b"cart".to_vec(),
        options: RequestOptions::default(),
    };
    match restarted.ask(Role::Client, get) {
        Response::Get(reply) => assert_eq!(reply.values, vec![b"book".to_vec()]),
        other => panic!("an acknowledged write was lost: {other:?}"),
    }
}

/// Issue 26: what a reaper is told holds after a power loss, and names every version a node
/// could still hand on. A copy removed without an fsync (here a buffered reap, standing in for
/// a buffered drop of a handed-off copy) must not come back after the node answered a
/// `Holdings` question with "nothing"; and a primary's synced read includes the versions it
/// keeps as hints, which it could still deliver after the tombstone is gone.
#[test]
fn what_a_reaper_is_told_survives_a_power_loss_and_includes_hints() {
    use dynamo_quorum::{ReplicaReply, ReplicaRequest};
    use dynamo_vclock::{Actor, DvvSet};

    let mut node = Harness::found_with(CoreConfig {
        replica_durability: Durability::Buffered,
        ..config()
    });
    let key = dynamo_protocol::storage_key("default", b"gone");
    let partition = node.core.ring().expect("ring").partition_of_key(&key);
    let replica = |request| Request::Replica { partition, request };
    let tombstone = DvvSet::new(&Actor::new("other#1"), Value::Tombstone, 1);
    // A durable copy (a delivered hint is applied with an fsync), then a buffered removal.
    let deliver = Request::DeliverHint {
        partition,
        key: key.clone(),
        object: tombstone.clone(),
    };
    assert!(matches!(node.ask(Role::Node, deliver), Response::Stored(_)));
    let reap = ReplicaRequest::Reap {
        key: key.clone(),
        expected: tombstone.clone(),
    };
    let reaped = node.ask(Role::Node, replica(reap));
    assert_eq!(reaped, Response::Replica(ReplicaReply::Reaped(true)));
    let holdings = ReplicaRequest::Holdings { key: key.clone() };
    let answer = node.ask(Role::Node, replica(holdings));
    assert_eq!(answer, Response::Replica(ReplicaReply::NotFound));
    let store = node
        .store
        .crash(&StoreOptions::new("n1", NOW.as_millis()))
        .expect("crash");
    assert!(
        store.get(partition, &key).expect("read").is_none(),
        "the node answered that it held nothing, and a power loss brought the copy back"
    );

    // A primary's synced read names what it holds as a hint for the key.
    let mut node = Harness::on(store);
    let live = DvvSet::new(
        &Actor::new("other#1"),
        Value::data(b"old".to_vec(), None),
        1,
    );
    let hint = ReplicaRequest::Write {
        key: key.clone(),
        object: live,
        hint: Some("n2".into()),
    };
    assert!(matches!(
        node.ask(Role::Node, replica(hint)),
        Response::Replica(_)
    ));
    let read = ReplicaRequest::ReadSynced { key };
    match node.ask(Role::Node, replica(read)) {
        Response::Replica(ReplicaReply::Found(object)) => {
            assert_eq!(object.values().count(), 1, "{object:?}");
        }
        other => panic!("a primary's synced read missed its hint: {other:?}"),
    }
}

/// Issue 26: a failed fsync poisons fjall, and the node used to stay up serving reads, Merkle
/// trees and anti-entropy from state that may not be on disk while failing every write. A
/// store that can no longer promise durability stops the node: the write in flight fails, every
/// later request but status is refused with why (and "restart"), and it stops gossiping, so its
/// peers see it down.
#[test]
fn a_store_that_lost_durability_stops_the_node() {
    use dynamo_core::{StoreError, StoreErrorKind};
    let mut node = solo_node();
    let put = put_cart(b"book", None);
    let id = RequestId(1_000);
    node.core
        .handle_request(NOW, id, &identity(Role::Client), put);
    let mut answers = Vec::new();
    while let Some(output) = node.core.poll_output() {
        match output {
            Output::Store { id, .. } => {
                let failed = StoreError::new(StoreErrorKind::Fatal, "an fsync failed: EIO");
                node.core.handle_store_result(NOW, id, Err(failed));
            }
            Output::Respond { id, response } => answers.push((id, response)),
            Output::Call { .. } | Output::Event(_) => {}
        }
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(error_kind(&answers[0].1).is_some(), "{answers:?}");
    let why = node.core.stopped().expect("stopped").to_owned();
    assert!(
        why.contains("fsync failed") && why.contains("Restart"),
        "{why}"
    );

    let get = Request::Get {
        bucket: "solo".into(),
        key: b"cart".to_vec(),
        options: RequestOptions::default(),
    };
    let refused = node.ask(Role::Client, get);
    assert_eq!(
        error_kind(&refused),
        Some(ErrorKind::NotReady),
        "{refused:?}"
    );
    let roots = node.ask(Role::Node, Request::PartitionRoots);
    assert_eq!(error_kind(&roots), Some(ErrorKind::NotReady), "{roots:?}");
    assert!(matches!(
        node.ask(Role::Client, Request::Status),
        Response::Status(_)
    ));
    // No gossip round is due any more: peers stop hearing from it.
    assert_eq!(node.core.poll_timeout(), None);
}

/// Issue 26: a context was checked only for its size and checksum, so a client could raise a
/// counter to `u64::MAX` and make every later write of that key by this node vanish on every
/// replica. Now a coordinator takes only a context the cluster sealed, unchanged: the token a
/// put or get returns works, a forged one (or one from another cluster) is refused with what
/// to do, and the forged counter never reaches the store.
#[test]
fn a_write_takes_only_a_context_the_cluster_sealed() {
    use dynamo_quorum::{ClientContext, ContextKey};
    use dynamo_vclock::Entry;
    let mut node = solo_node();
    let put = put_cart;
    let first = match node.ask(Role::Client, put(b"book", None)) {
        Response::Put(reply) => reply.context,
        other => panic!("{other:?}"),
    };
    let mut forged = ClientContext::from_text(&first).expect("a context");
    let actors: Vec<_> = forged.clock.iter().map(|(a, _)| a.clone()).collect();
    for actor in &actors {
        let top = Entry {
            counter: u64::MAX,
            timestamp: 1,
        };
        forged.clock.witness(actor, top);
    }
    let cases = [
        ("forged, unsealed", forged.to_text()),
        (
            "forged, sealed elsewhere",
            forged.sealed(&ContextKey::new([9; 32])),
        ),
    ];
    for (what, token) in cases {
        let refused = node.ask(Role::Client, put(b"pen", Some(token)));
        assert_eq!(error_kind(&refused), Some(ErrorKind::BadRequest), "{what}");
        assert!(
            format!("{refused:?}").contains("read the key again"),
            "{what}"
        );
    }
    // The sealed token of the first write is taken: the second write replaces the first.
    assert!(matches!(
        node.ask(Role::Client, put(b"pen", Some(first))),
        Response::Put(_)
    ));
    let get = Request::Get {
        bucket: "solo".into(),
        key: b"cart".to_vec(),
        options: RequestOptions::default(),
    };
    match node.ask(Role::Client, get) {
        Response::Get(reply) => {
            assert_eq!(reply.values, vec![b"pen".to_vec()]);
            let read = ClientContext::from_text(&reply.context).expect("a context");
            assert!(read.clock.iter().all(|(_, e)| e.counter < 10), "{read:?}");
        }
        other => panic!("{other:?}"),
    }
}
