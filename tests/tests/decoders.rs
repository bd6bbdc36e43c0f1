//! Every decoder a peer or a client can reach, fed random bytes and mutations of real encodings
//! (bits flipped, bytes overwritten, cut, removed, inserted or appended, huge varints planted):
//! the stable counterpart of the cargo-fuzz targets in `fuzz/`, run by the normal test command.
//!
//! Each decoder must return a value or an error, never panic (ARCHITECTURE.md: "bad input is an
//! error value, never a panic"), and every value it returns must survive encode → decode
//! unchanged. The decoders: the transport's length-prefixed frames, `Request` and `Response`,
//! context tokens (`Context` and `ClientContext`), rings, bucket tables, Merkle diff messages
//! and trees, gossip messages, and DVV sets (`Object`).
//!
//! `cargo test -p dynamo-tests --test decoders -- --ignored write_fuzz_seeds` writes the same
//! real encodings as seed corpora for the fuzz targets (`fuzz/corpus/<target>/`).

use std::fmt::Debug;

use dynamo_client::transport::MAX_FRAME_BYTES;
use dynamo_gossip::{
    Body, Change, DEFAULT_MAX_MESSAGE_BYTES, Delta, Digest, DigestEntry, IdRange, Message,
    NodeDelta, NodeMeta, Status, VersionedChange,
};
use dynamo_merkle::{
    BucketId, DiffInitiator, DiffReply, DiffRequest, DiffResponder, KeyEntry, KeyHash, KeyIndex,
    MerkleTree, NodeHash, SegmentReply, Step, TreeShape, key_hash,
};
use dynamo_protocol::{
    AntiEntropyStatus, BucketEntry, BucketProps, ClusterStatus, ErrorKind, GetReply, HandoffStatus,
    KeyPage, ListCursor, MemberStatus, NodeCounters, PartitionSync, PutReply, ReaperStatus,
    Request, RequestOptions, Response,
};
use dynamo_quorum::{ClientContext, Object, ReplicaReply, ReplicaRequest, Value};
use dynamo_resolve::{Resolution, Resolver};
use dynamo_ring::{Layout, Member, Ring};
use dynamo_vclock::{Actor, Causality, Context, VClock};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Cases per decoder: a few seconds for the whole file in a debug build.
const CASES: u32 = 512;

// ---------------------------------------------------------------------------------------------
// Round trips and the frame layer.

fn encode<T: Serialize + Debug>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value)
        .unwrap_or_else(|e| panic!("a decoded value does not encode: {e}: {value:?}"))
}

/// Decodes one whole postcard value; trailing bytes are an error (as the node decodes frames).
fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

/// Encode → decode gives the value back, and encoding is deterministic.
fn assert_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let bytes = encode(value);
    let again: T = decode_exact(&bytes)
        .unwrap_or_else(|| panic!("re-encoded value does not decode: {value:?}"));
    assert_eq!(&again, value, "round trip changed the value");
    assert_eq!(encode(&again), bytes, "encoding is not deterministic");
}

/// The round trip for types holding `f64` (a NaN is not equal to itself): compares encodings.
fn assert_round_trip_bytes<T: Serialize + DeserializeOwned + Debug>(value: &T) {
    let bytes = encode(value);
    let again: T = decode_exact(&bytes)
        .unwrap_or_else(|| panic!("re-encoded value does not decode: {value:?}"));
    assert_eq!(encode(&again), bytes, "round trip changed the encoding");
}

/// The transport's frame reader over a byte slice: a `u32` big-endian length refused above
/// `MAX_FRAME_BYTES`, then exactly one postcard value. `None` when refused; the rest follows.
fn read_frame<T: DeserializeOwned>(bytes: &[u8]) -> Option<(T, &[u8])> {
    let (header, rest) = bytes.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*header) as usize;
    if len > MAX_FRAME_BYTES || rest.len() < len {
        return None;
    }
    let (payload, after) = rest.split_at(len);
    decode_exact(payload).map(|value| (value, after))
}

/// The transport's frame writer: the length, then the postcard bytes.
fn write_frame<T: Serialize + Debug>(value: &T) -> Vec<u8> {
    let payload = encode(value);
    let mut frame = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&payload);
    frame
}

/// Wraps a clock payload in the binary context format (magic, version, payload, CRC-32), so
/// mutations of the clock get past the checksum.
fn seal_context(payload: &[u8]) -> Vec<u8> {
    let mut bytes = dynamo_vclock::context::MAGIC.to_vec();
    bytes.push(dynamo_vclock::context::VERSION);
    bytes.extend_from_slice(payload);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// A `ClientContext` token around a sealed clock payload.
fn seal_client_context(payload: &[u8]) -> Vec<u8> {
    let mut token = b"DYK\x01".to_vec();
    token.extend_from_slice(&0x0123_4567_89ab_cdef_u64.to_be_bytes());
    token.extend_from_slice(&seal_context(payload));
    token
}

// ---------------------------------------------------------------------------------------------
// One check per decoder: decode, and on success round-trip (and use the value the way its
// receiver does, where that is cheap).

fn check_frames(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        if let Some((request, _)) = read_frame::<Request>(rest) {
            assert_round_trip(&request);
            let frame = write_frame(&request);
            assert_eq!(read_frame::<Request>(&frame).map(|(r, _)| r), Some(request));
        }
        if let Some((response, _)) = read_frame::<Response>(rest) {
            let frame = write_frame(&response);
            let again = read_frame::<Response>(&frame).map(|(r, _)| write_frame(&r));
            assert_eq!(again, Some(frame));
        }
        let len = rest
            .first_chunk::<4>()
            .map_or(0, |h| u32::from_be_bytes(*h) as usize);
        let skip = 4usize.saturating_add(len).min(rest.len()).max(1);
        rest = &rest[skip..];
    }
}

fn check_request(bytes: &[u8]) {
    let Ok(request) = postcard::from_bytes::<Request>(bytes) else {
        return;
    };
    assert_round_trip(&request);
    match &request {
        Request::Put {
            context: Some(token),
            ..
        } => check_client_context_text(token),
        Request::Gossip { message, .. } => check_gossip(message),
        _ => {}
    }
}

fn check_response(bytes: &[u8]) {
    if let Ok(response) = postcard::from_bytes::<Response>(bytes) {
        assert_round_trip_bytes(&response);
    }
}

fn check_context_value(context: &Context) {
    assert_eq!(
        Context::from_bytes(&context.to_bytes()).as_ref(),
        Ok(context)
    );
    assert_eq!(Context::from_text(&context.to_text()).as_ref(), Ok(context));
}

fn check_context(bytes: &[u8]) {
    if let Ok(context) = Context::from_bytes(bytes) {
        check_context_value(&context);
    }
    if let Ok(context) = Context::from_text(&String::from_utf8_lossy(bytes)) {
        check_context_value(&context);
    }
    if let Ok(context) = Context::from_bytes(&seal_context(bytes)) {
        check_context_value(&context);
    }
}

fn check_client_context_value(context: &ClientContext) {
    assert_eq!(
        ClientContext::from_bytes(&context.to_bytes()).as_ref(),
        Ok(context)
    );
    assert_eq!(
        ClientContext::from_text(&context.to_text()).as_ref(),
        Ok(context)
    );
}

fn check_client_context_text(text: &str) {
    if let Ok(context) = ClientContext::from_text(text) {
        check_client_context_value(&context);
    }
}

fn check_client_context(bytes: &[u8]) {
    check_client_context_text(&String::from_utf8_lossy(bytes));
    if let Ok(context) = ClientContext::from_bytes(bytes) {
        check_client_context_value(&context);
    }
    if let Ok(context) = ClientContext::from_bytes(&seal_client_context(bytes)) {
        check_client_context_value(&context);
    }
}

fn check_ring(bytes: &[u8]) {
    let Ok(ring) = postcard::from_bytes::<Ring>(bytes) else {
        return;
    };
    assert_round_trip(&ring);
    // A validated ring is used at once: placement queries must not panic on it.
    let n = ring.target_n();
    for key in [&b""[..], b"cart:alice", &[0xff; 16]] {
        let partition = ring.partition_of_key(key);
        let _ = ring.partition_range(partition);
        let _ = ring.partition_owner(partition);
        assert!(ring.preference_list(key, n).len() <= ring.members().len());
        let _ = ring.extended_preference_list(key, n, |id| id.as_str() < "m");
    }
    let _ = ring.partition_counts();
    let _ = ring.replica_shares(n.min(8));
}

fn check_buckets(bytes: &[u8]) {
    if let Ok(table) = postcard::from_bytes::<Vec<BucketEntry>>(bytes) {
        assert_round_trip(&table);
    }
}

fn check_diff_request(bytes: &[u8]) {
    let (tree, index) = merkle_replica();
    let answered = DiffResponder::new().handle_bytes(&tree, &index, bytes);
    let Ok(request) = DiffRequest::decode(bytes) else {
        assert!(answered.is_err(), "answered a request that does not decode");
        return;
    };
    let encoded = request.encode();
    assert_eq!(encoded.len(), request.encoded_len());
    assert_eq!(DiffRequest::decode(&encoded).ok(), Some(request));
    if let Ok(reply) = answered {
        assert!(DiffReply::decode(&reply).is_ok());
    }
}

fn check_diff_reply(bytes: &[u8]) {
    if let Ok(reply) = DiffReply::decode(bytes) {
        let encoded = reply.encode();
        assert_eq!(encoded.len(), reply.encoded_len());
        assert_eq!(DiffReply::decode(&encoded).ok(), Some(reply));
    }
    // The same bytes as the successive replies of one session, in one-byte-length chunks.
    let (tree, index) = merkle_replica();
    let (mut session, _) = DiffInitiator::start(&tree);
    let mut rest = bytes;
    while let Some((&len, tail)) = rest.split_first() {
        let (chunk, after) = tail.split_at(usize::from(len).min(tail.len()));
        rest = after;
        match session.on_reply_bytes(&tree, &index, chunk) {
            Ok(Step::Send(_)) => assert!(!session.is_done()),
            Ok(Step::Done(_)) => {
                assert!(session.is_done());
                break;
            }
            Err(_) => break,
        }
    }
}

fn check_tree(bytes: &[u8]) {
    if let Ok(tree) = MerkleTree::from_bytes(bytes) {
        assert_eq!(MerkleTree::from_bytes(&tree.to_bytes()).ok(), Some(tree));
    }
}

fn check_gossip(bytes: &[u8]) {
    let Ok(message) = Message::decode(bytes, DEFAULT_MAX_MESSAGE_BYTES) else {
        return;
    };
    let encoded = message
        .encode(DEFAULT_MAX_MESSAGE_BYTES)
        .expect("a decoded message encodes within its limit");
    assert_eq!(encoded.len(), message.encoded_len());
    assert_eq!(
        Message::decode(&encoded, DEFAULT_MAX_MESSAGE_BYTES).ok(),
        Some(message)
    );
}

fn check_object(bytes: &[u8]) {
    let Ok(object) = postcard::from_bytes::<Object>(bytes) else {
        return;
    };
    assert_round_trip(&object);
    // What a replica does with a received set: join it, compare it, write on top of it.
    assert_eq!(object.sync(&object), object, "sync is not idempotent");
    assert_eq!(object.sync(&Object::empty()), object);
    assert_eq!(object.compare(&object), Causality::Equal);
    let mut written = object.clone();
    written.update(
        &object.context(),
        &Actor::from("node-b#1"),
        Value::Tombstone,
        9,
    );
    assert_round_trip(&written);
    assert!(written.descends(&object));
}

// ---------------------------------------------------------------------------------------------
// Real encodings to mutate (and to seed the fuzz corpora with).

fn clock() -> VClock {
    let mut clock = VClock::new();
    clock.increment(&Actor::from("node-a#1"), 1_700_000_000_000);
    clock.increment(&Actor::from("node-a#1"), 1_700_000_000_001);
    clock.increment(&Actor::from("node-c#7"), 5);
    clock
}

fn object() -> Object {
    let (a, b) = (Actor::from("node-a#1"), Actor::from("node-b#2"));
    let mut object = Object::new(&a, Value::Data(b"book".to_vec()), 1);
    object.update(&VClock::new(), &b, Value::Data(b"pen".to_vec()), 2);
    let retried = Value::data(b"lamp".to_vec(), Some(dynamo_quorum::WriteId(9)));
    object.update(&VClock::new(), &b, retried, 2);
    object.update(&VClock::new(), &a, Value::Tombstone, 3);
    object
}

fn members() -> Vec<Member> {
    (0..4)
        .map(|i| Member::new(format!("node-{i}"), format!("zone-{}", i % 3), 1 + i % 2))
        .collect()
}

fn ring() -> Ring {
    Ring::equal_partitions(16, 3, members()).expect("a valid ring")
}

/// A strategy-1 ring, written through the same field layout as `Ring`'s serde form.
fn token_ring_bytes() -> Vec<u8> {
    let layout = Layout::RandomTokens {
        tokens: vec![(5, 0), (1 << 100, 2), (1 << 120, 1), (u128::MAX - 1, 3)],
    };
    encode(&(7u64, 2u32, members(), layout))
}

fn bucket_table() -> Vec<BucketEntry> {
    let carts = BucketProps {
        name: "carts".into(),
        n: 3,
        r: 2,
        w: 2,
        pr: 1,
        pw: 0,
        resolver: Resolver::Cart,
    };
    vec![
        BucketEntry {
            props: BucketProps::default_bucket(),
            stamp_ms: 0,
            by: "node-0".into(),
        },
        BucketEntry {
            props: carts,
            stamp_ms: 1_700_000_000_000,
            by: "node-2".into(),
        },
    ]
}

fn gossip_messages() -> Vec<Message> {
    let digest = Digest {
        range: Some(IdRange {
            first: Some("node-0".into()),
            last: Some("node-3".into()),
        }),
        entries: vec![
            DigestEntry {
                node: "node-0".into(),
                generation: 1_700_000_000,
                heartbeat: 42,
                max_version: 3,
            },
            DigestEntry {
                node: "node-1".into(),
                generation: 7,
                heartbeat: 1,
                max_version: 1,
            },
        ],
    };
    let delta = Delta {
        nodes: vec![NodeDelta {
            node: "node-1".into(),
            generation: 7,
            heartbeat: 9,
            meta: Some(NodeMeta {
                address: "127.0.0.1:7101".into(),
                zone: "zone-1".into(),
                capacity: 2,
            }),
            from_version: 0,
            to_version: 3,
            changes: vec![
                VersionedChange {
                    version: 1,
                    change: Change::Status(Status::Alive),
                },
                VersionedChange {
                    version: 3,
                    change: Change::Set {
                        key: "ring".into(),
                        value: encode(&ring()),
                    },
                },
            ],
        }],
    };
    let message = |body| Message {
        cluster: "dev".into(),
        from: "node-0".into(),
        body,
    };
    vec![
        message(Body::Syn {
            digest: digest.clone(),
        }),
        message(Body::SynAck {
            digest: Digest::default(),
            delta: delta.clone(),
        }),
        message(Body::Ack { delta }),
    ]
}

fn gossip_bytes() -> Vec<Vec<u8>> {
    gossip_messages()
        .iter()
        .map(|m| m.encode(DEFAULT_MAX_MESSAGE_BYTES).expect("fits"))
        .collect()
}

fn requests() -> Vec<Request> {
    let options = RequestOptions {
        r: Some(1),
        w: None,
        pr: None,
        pw: Some(2),
        timeout_ms: Some(1500),
    };
    vec![
        Request::Get {
            bucket: "carts".into(),
            key: b"alice".to_vec(),
            options,
        },
        Request::Put {
            bucket: "carts".into(),
            key: b"alice".to_vec(),
            value: Some(b"book,pen".to_vec()),
            context: Some(ClientContext::new(b"\x05cartsalice", clock()).to_text()),
            options: RequestOptions::default(),
            forwarded: true,
            write_id: Some(u128::MAX),
        },
        Request::CreateBucket(bucket_table()[1].props.clone()),
        Request::ListBuckets,
        Request::Status,
        Request::Ring,
        Request::Leave,
        Request::Replica {
            partition: 3,
            request: ReplicaRequest::Write {
                key: b"\x05cartsalice".to_vec(),
                object: object(),
                hint: Some("node-2".into()),
            },
        },
        Request::Replica {
            partition: 3,
            request: ReplicaRequest::Reap {
                key: b"k".to_vec(),
                expected: object(),
            },
        },
        Request::Buckets(bucket_table()),
        Request::Gossip {
            reply_to: "127.0.0.1:7100".into(),
            message: gossip_bytes().swap_remove(1),
        },
        Request::DeliverHint {
            partition: 9,
            key: b"\x07defaultk".to_vec(),
            object: object(),
        },
        Request::Handoff {
            partition: 15,
            entries: vec![(b"a".to_vec(), object()), (b"b".to_vec(), Object::empty())],
        },
        Request::Diff {
            partition: 3,
            request: DiffRequest::Children {
                shape: TreeShape::default(),
                level: 1,
                nodes: vec![0, 5],
            },
        },
        Request::Fetch {
            partition: 3,
            keys: vec![b"a".to_vec(), b"b".to_vec()],
        },
        Request::ListKeys {
            bucket: "carts".into(),
            cursor: Some(ListCursor {
                partition: 7,
                after: Some(b"alice".to_vec()),
            }),
            limit: 100,
        },
        Request::ScanKeys {
            partition: 7,
            bucket: "carts".into(),
            after: None,
            limit: 10,
        },
    ]
}

fn responses() -> Vec<Response> {
    let member = |id: &str, share: f64| MemberStatus {
        id: id.into(),
        address: "127.0.0.1:7100".into(),
        zone: "zone-0".into(),
        capacity: 1,
        status: "alive".into(),
        up: true,
        in_ring: true,
        partitions: 5,
        ownership_percent: share,
        pending_hints: 2,
        phi: Some(0.4),
        disk_full: false,
    };
    vec![
        Response::Get(GetReply {
            values: vec![b"book".to_vec(), b"pen".to_vec()],
            context: ClientContext::new(b"k", clock()).to_text(),
            deleted: false,
            resolution: Some(Box::new(Resolution {
                resolver: Resolver::Cart,
                value: Some(vec![1, 2, 3]),
                merged: 2,
                notes: vec!["a concurrent remove of kibble was overridden by an add".into()],
                discarded: vec![b"junk".to_vec()],
            })),
        }),
        Response::NotFound {
            context: String::new(),
        },
        Response::Put(PutReply {
            context: ClientContext::new(b"k", clock()).to_text(),
            acknowledged: 2,
            warnings: vec!["many siblings".into()],
        }),
        Response::Buckets(vec![BucketProps::default_bucket()]),
        Response::Status(ClusterStatus {
            node: "node-0".into(),
            ring_version: 4,
            members: vec![member("node-0", 33.3), member("node-1", 66.7)],
            anti_entropy: Box::new(AntiEntropyStatus {
                enabled: true,
                interval_ms: 30_000,
                pairs: vec![PartitionSync {
                    partition: 1,
                    peer: "node-1".into(),
                    agreed_ms_ago: Some(1_200),
                }],
                in_progress: Vec::new(),
                repaired_keys: 7,
                bytes_moved: 900,
                throttled: false,
                allowed_bytes_per_sec: 16 << 20,
            }),
            handoff: HandoffStatus {
                queued: 2,
                running: vec![(5, "node-1".into(), 128)],
                failed: 0,
            },
            reaper: Box::new(ReaperStatus {
                grace_ms: 3_600_000,
                reaped: 3,
                kept: 1,
            }),
            counters: Box::new(NodeCounters {
                read_repairs: 4,
                hints_stored: 2,
                hints_delivered: 1,
                quorum_failures: 0,
                stand_ins: 3,
            }),
        }),
        Response::Keys(KeyPage {
            keys: vec![b"alice".to_vec(), b"bob".to_vec()],
            next: Some(ListCursor {
                partition: 3,
                after: Some(b"bob".to_vec()),
            }),
        }),
        Response::Diff(DiffReply::Hashes(vec![NodeHash(1), NodeHash(2)])),
        Response::Entries(vec![(b"a".to_vec(), object())]),
        Response::Ring(Some(Box::new(ring()))),
        Response::Ring(None),
        Response::Replica(ReplicaReply::Found(object())),
        Response::Replica(ReplicaReply::Reaped(true)),
        Response::Replica(ReplicaReply::Failed("unreachable".into())),
        Response::Stored(object()),
        Response::Ack,
        Response::error(ErrorKind::Unavailable, "2 of 3 replicas answered"),
    ]
}

/// A 4 × 2 tree over 40 keys: small enough for mutations to name real nodes and segments.
fn merkle_replica() -> (MerkleTree, KeyIndex) {
    replica_with(|i| i.to_le_bytes().to_vec())
}

fn replica_with(state: impl Fn(u32) -> Vec<u8>) -> (MerkleTree, KeyIndex) {
    let shape = TreeShape::new(2, 2).expect("valid shape");
    let mut index = KeyIndex::new(shape);
    for i in 0..40u32 {
        let key = format!("key-{i}");
        index.set(key.as_bytes(), Some(key_hash(key.as_bytes(), &state(i))));
    }
    (MerkleTree::from_entries(shape, index.iter()), index)
}

fn diff_requests() -> Vec<DiffRequest> {
    let shape = TreeShape::new(2, 2).expect("valid shape");
    vec![
        DiffRequest::Root {
            shape,
            root: NodeHash(0x0123_4567_89ab_cdef),
        },
        DiffRequest::Children {
            shape,
            level: 1,
            nodes: vec![0, 2, 3],
        },
        DiffRequest::Segments {
            shape,
            segments: vec![1, 7, 15],
        },
        DiffRequest::Buckets {
            shape,
            buckets: vec![
                BucketId { segment: 1, sub: 0 },
                BucketId { segment: 7, sub: 3 },
            ],
        },
        DiffRequest::Root {
            shape: TreeShape::default(),
            root: NodeHash::EMPTY,
        },
    ]
}

fn diff_replies() -> Vec<DiffReply> {
    let entry = |key: &[u8], hash| KeyEntry {
        key: key.to_vec(),
        hash: KeyHash(hash),
    };
    vec![
        DiffReply::Equal,
        DiffReply::ShapeMismatch {
            shape: TreeShape::default(),
        },
        DiffReply::Hashes(vec![NodeHash(1), NodeHash(2), NodeHash::EMPTY, NodeHash(4)]),
        DiffReply::Segments(vec![
            SegmentReply::Entries(vec![entry(b"key-1", 11), entry(b"key-2", 12)]),
            SegmentReply::SubHashes(vec![NodeHash(5); 4]),
        ]),
        DiffReply::Buckets(vec![vec![entry(b"key-3", 13)], Vec::new()]),
    ]
}

/// The replies a real responder (whose keys 0, 5 and 17 changed) sends to the initiator of
/// [`merkle_replica`], each behind a one-byte length: the input `check_diff_reply` and the
/// `merkle_diff_reply` fuzz target cut into a session.
fn diff_session_transcript() -> Vec<u8> {
    let (tree, index) = merkle_replica();
    let (theirs, their_index) = replica_with(|i| {
        if [0, 5, 17].contains(&i) {
            b"changed".to_vec()
        } else {
            i.to_le_bytes().to_vec()
        }
    });
    let (mut session, mut request) = DiffInitiator::start(&tree);
    let mut responder = DiffResponder::new();
    let mut transcript = Vec::new();
    loop {
        let reply = responder
            .handle_bytes(&theirs, &their_index, &request.encode())
            .expect("a real request is answered");
        transcript.push(u8::try_from(reply.len()).expect("small replies"));
        transcript.extend_from_slice(&reply);
        match session
            .on_reply_bytes(&tree, &index, &reply)
            .expect("a real reply is accepted")
        {
            Step::Send(next) => request = next,
            Step::Done(_) => return transcript,
        }
    }
}

fn tree_bytes() -> Vec<Vec<u8>> {
    let (tree, _) = merkle_replica();
    vec![
        tree.to_bytes(),
        MerkleTree::new(TreeShape::new(1, 1).expect("valid shape")).to_bytes(),
    ]
}

/// The real encodings of each fuzz target, by target name.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "frame" => {
            let mut frames: Vec<Vec<u8>> = requests().iter().map(write_frame).collect();
            frames.extend(responses().iter().map(write_frame));
            frames.push(frames.concat());
            frames
        }
        "request" => requests().iter().map(encode).collect(),
        "response" => responses().iter().map(encode).collect(),
        "context" => {
            let contexts = [Context::new(clock()), Context::default()];
            let mut seeds: Vec<Vec<u8>> = contexts.iter().map(Context::to_bytes).collect();
            seeds.extend(contexts.iter().map(|c| c.to_text().into_bytes()));
            // Bare clock payloads: what the target seals behind a valid checksum.
            seeds.extend(contexts.iter().map(|c| encode(c.clock())));
            seeds
        }
        "client_context" => {
            let token = ClientContext::new(b"\x05cartsalice", clock());
            vec![
                token.to_bytes(),
                token.to_text().into_bytes(),
                ClientContext::new(b"k", VClock::new())
                    .to_text()
                    .into_bytes(),
                encode(&clock()),
            ]
        }
        "ring" => vec![encode(&ring()), token_ring_bytes()],
        "buckets" => vec![encode(&bucket_table()), encode(&Vec::<BucketEntry>::new())],
        "merkle_diff_request" => diff_requests().iter().map(DiffRequest::encode).collect(),
        "merkle_diff_reply" => {
            let mut seeds: Vec<Vec<u8>> = diff_replies().iter().map(DiffReply::encode).collect();
            seeds.push(diff_session_transcript());
            seeds
        }
        "merkle_tree" => tree_bytes(),
        "gossip_message" => gossip_bytes(),
        "object" => vec![encode(&object()), encode(&Object::empty())],
        other => panic!("no seeds for {other}"),
    }
}

/// Every fuzz target, in the order of `fuzz/Cargo.toml`.
const TARGETS: [&str; 12] = [
    "frame",
    "request",
    "response",
    "context",
    "client_context",
    "ring",
    "buckets",
    "merkle_diff_request",
    "merkle_diff_reply",
    "merkle_tree",
    "gossip_message",
    "object",
];

// ---------------------------------------------------------------------------------------------
// Mutations.

/// One change to an encoding.
#[derive(Clone, Debug)]
enum Mutation {
    /// Flip one bit of one byte.
    Flip(Index, u8),
    /// Overwrite one byte.
    Set(Index, u8),
    /// Cut the input to a prefix.
    Truncate(Index),
    /// Remove up to 8 bytes.
    Remove(Index, usize),
    /// Insert bytes.
    Insert(Index, Vec<u8>),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Overwrite with a 5-byte varint of `u32::MAX`: a huge length prefix or counter.
    Huge(Index),
    /// Overwrite with a 10-byte varint of `u64::MAX`: a version or counter at its limit.
    Max64(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = || prop::collection::vec(any::<u8>(), 1..8);
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1usize..8).prop_map(|(at, len)| Mutation::Remove(at, len)),
        1 => (any::<Index>(), bytes()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        1 => bytes().prop_map(Mutation::Extend),
        1 => any::<Index>().prop_map(Mutation::Huge),
        1 => any::<Index>().prop_map(Mutation::Max64),
    ]
}

fn apply(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for mutation in mutations {
        let len = bytes.len();
        match mutation {
            Mutation::Flip(at, bit) if len > 0 => bytes[at.index(len)] ^= 1 << bit,
            Mutation::Set(at, byte) if len > 0 => bytes[at.index(len)] = *byte,
            Mutation::Truncate(at) => bytes.truncate(at.index(len + 1)),
            Mutation::Remove(at, n) if len > 0 => {
                let start = at.index(len);
                bytes.drain(start..(start + n).min(len));
            }
            Mutation::Insert(at, new) => {
                let at = at.index(len + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Extend(new) => bytes.extend_from_slice(new),
            Mutation::Huge(at) if len > 0 => {
                let at = at.index(len);
                let end = (at + 5).min(len);
                bytes.splice(at..end, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
            Mutation::Max64(at) if len > 0 => {
                let at = at.index(len);
                let end = (at + 10).min(len);
                bytes.splice(
                    at..end,
                    [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                );
            }
            _ => {}
        }
    }
    bytes
}

/// Random bytes (a quarter of the cases) or a real encoding of `target` with 1 to 4 mutations.
fn inputs(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        prop::sample::select(seeds(target)),
        prop::collection::vec(mutation(), 1..=4),
    )
        .prop_map(|(seed, mutations)| apply(&seed, &mutations));
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        3 => mutated,
    ]
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// The unmutated seeds are what they claim to be: each decodes, so the mutation tests start
/// from real encodings (and a bare clock payload is a valid context once sealed).
#[test]
fn seeds_are_valid_encodings() {
    for request in requests() {
        assert_eq!(
            postcard::from_bytes::<Request>(&encode(&request)).ok(),
            Some(request)
        );
    }
    for response in responses() {
        assert!(postcard::from_bytes::<Response>(&encode(&response)).is_ok());
    }
    for frame in seeds("frame") {
        let mut rest = &frame[..];
        while !rest.is_empty() {
            let request = read_frame::<Request>(rest).map(|(_, after)| after);
            let response = read_frame::<Response>(rest).map(|(_, after)| after);
            rest = request.or(response).expect("a valid frame");
        }
    }
    assert_eq!(
        Context::from_bytes(&seal_context(&encode(&clock()))),
        Ok(Context::new(clock()))
    );
    assert!(ClientContext::from_bytes(&seal_client_context(&encode(&clock()))).is_ok());
    assert_eq!(
        postcard::from_bytes::<Ring>(&encode(&ring())).ok(),
        Some(ring())
    );
    let token_ring = postcard::from_bytes::<Ring>(&token_ring_bytes()).expect("a valid ring");
    assert!(matches!(token_ring.layout(), Layout::RandomTokens { .. }));
    assert_eq!(
        postcard::from_bytes::<Vec<BucketEntry>>(&encode(&bucket_table())).ok(),
        Some(bucket_table())
    );
    for request in diff_requests() {
        assert_eq!(DiffRequest::decode(&request.encode()).ok(), Some(request));
    }
    for reply in diff_replies() {
        assert_eq!(DiffReply::decode(&reply.encode()).ok(), Some(reply));
    }
    assert!(diff_session_transcript().len() > 10);
    for bytes in tree_bytes() {
        assert!(MerkleTree::from_bytes(&bytes).is_ok());
    }
    for (bytes, message) in gossip_bytes().iter().zip(gossip_messages()) {
        assert_eq!(
            Message::decode(bytes, DEFAULT_MAX_MESSAGE_BYTES).ok(),
            Some(message)
        );
    }
    assert_eq!(
        postcard::from_bytes::<Object>(&encode(&object())).ok(),
        Some(object())
    );
    for target in TARGETS {
        assert!(!seeds(target).is_empty(), "{target}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Length-prefixed frames (`u32` big-endian length capped at `MAX_FRAME_BYTES`, one
    /// postcard value, no trailing bytes) read as `Request` and as `Response` never panic, and
    /// a frame read back from a written one holds the same value.
    #[test]
    fn frames_never_panic_and_round_trip(bytes in inputs("frame")) {
        check_frames(&bytes);
    }

    /// `postcard::from_bytes::<Request>` never panics; a decoded request round-trips, and the
    /// context token or gossip message it carries decodes without panicking too.
    #[test]
    fn requests_never_panic_and_round_trip(bytes in inputs("request")) {
        check_request(&bytes);
    }

    /// `postcard::from_bytes::<Response>` never panics; a decoded response re-encodes to the
    /// same bytes (compared as bytes: responses hold `f64`).
    #[test]
    fn responses_never_panic_and_round_trip(bytes in inputs("response")) {
        check_response(&bytes);
    }

    /// `Context::from_bytes` and `Context::from_text` never panic, also on clock payloads
    /// behind a valid checksum; a decoded context round-trips through both forms.
    #[test]
    fn contexts_never_panic_and_round_trip(bytes in inputs("context")) {
        check_context(&bytes);
    }

    /// `ClientContext::from_text` and `ClientContext::from_bytes` never panic, also on clock
    /// payloads behind a valid header and checksum; a decoded token round-trips.
    #[test]
    fn client_contexts_never_panic_and_round_trip(bytes in inputs("client_context")) {
        check_client_context(&bytes);
    }

    /// `postcard::from_bytes::<Ring>` (validated on decode) never panics; a decoded ring
    /// round-trips and answers placement queries without panicking.
    #[test]
    fn rings_never_panic_and_round_trip(bytes in inputs("ring")) {
        check_ring(&bytes);
    }

    /// `postcard::from_bytes::<Vec<BucketEntry>>` (bucket tables from gossip) never panics; a
    /// decoded table round-trips.
    #[test]
    fn bucket_tables_never_panic_and_round_trip(bytes in inputs("buckets")) {
        check_buckets(&bytes);
    }

    /// `DiffRequest::decode` and the responder behind it never panic; a decoded request
    /// round-trips and the responder's reply decodes.
    #[test]
    fn merkle_diff_requests_never_panic_and_round_trip(bytes in inputs("merkle_diff_request")) {
        check_diff_request(&bytes);
    }

    /// `DiffReply::decode` and a diff session fed the bytes as its replies never panic; a
    /// decoded reply round-trips.
    #[test]
    fn merkle_diff_replies_never_panic_and_round_trip(bytes in inputs("merkle_diff_reply")) {
        check_diff_reply(&bytes);
    }

    /// `MerkleTree::from_bytes` never panics; a decoded tree round-trips.
    #[test]
    fn merkle_trees_never_panic_and_round_trip(bytes in inputs("merkle_tree")) {
        check_tree(&bytes);
    }

    /// `Message::decode` with the default byte limit never panics; a decoded (and validated)
    /// gossip message encodes within the limit and round-trips.
    #[test]
    fn gossip_messages_never_panic_and_round_trip(bytes in inputs("gossip_message")) {
        check_gossip(&bytes);
    }

    /// `postcard::from_bytes::<Object>` (a validated DVV set) never panics; a decoded set
    /// round-trips, `sync` with itself or the empty set leaves it unchanged, and a local write
    /// on top of it yields a set that still decodes and descends it.
    #[test]
    fn objects_never_panic_and_round_trip(bytes in inputs("object")) {
        check_object(&bytes);
    }
}

/// Finding of the `ring` fuzz target: a ring decoded with version `u64::MAX` passes validation
/// and is adopted (the highest version wins), and the claimant's next `Ring::with_members`
/// computed `version + 1`, which panicked in debug builds and wrapped to version 0 in release
/// builds. A ring change at the last version is now an error.
#[test]
fn a_ring_at_the_last_version_cannot_panic_a_change() {
    let layout = Layout::EqualPartitions {
        owners: vec![0; 16],
    };
    let bytes = encode(&(
        u64::MAX,
        3u32,
        vec![Member::new("node-0", "zone-0", 1)],
        layout,
    ));
    let Ok(ring) = postcard::from_bytes::<Ring>(&bytes) else {
        return;
    };
    let members = vec![
        Member::new("node-0", "zone-0", 1),
        Member::new("node-1", "zone-1", 1),
    ];
    let changed = std::panic::catch_unwind(|| ring.with_members(members).map(|(r, _)| r.version()));
    assert!(
        matches!(changed, Ok(Err(_))),
        "a change of a ring at version u64::MAX must be an error: {changed:?}"
    );
}

/// Owners are indices into the member list as sent: a ring whose members are not sorted by
/// id is refused rather than sorted (which would hand partitions to other nodes).
#[test]
fn a_ring_with_unsorted_members_is_refused() {
    let layout = Layout::EqualPartitions {
        owners: vec![0; 16],
    };
    let members = vec![
        Member::new("node-b", "zone-0", 1),
        Member::new("node-a", "zone-0", 1),
    ];
    let bytes = encode(&(1u64, 3u32, members, layout));
    assert!(postcard::from_bytes::<Ring>(&bytes).is_err());
}

/// Writes [`seeds`] as the fuzz targets' seed corpora, `fuzz/corpus/<target>/seed-NN` (run on
/// demand; the corpora are not committed).
#[test]
#[ignore = "writes fuzz/corpus; run with --ignored when setting up fuzzing"]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for target in TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        for (i, seed) in seeds(target).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write a seed");
        }
    }
}
