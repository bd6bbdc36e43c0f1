//! The node core's request path (issue 16): a client get and put handled by one `NodeCore`
//! that owns its ring (N = 1, a last-write-wins bucket), with every store operation run at
//! once on an in-memory store.
//! No network, no tokio: what the decisions cost per request, printed as requests per second
//! by criterion's throughput line.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dynamo_core::{CoreConfig, NodeCore, Output, RequestId, Time, execute, load_saved_state};
use dynamo_protocol::{BucketProps, Request, RequestOptions, Response};
use dynamo_protocol::{PeerIdentity, Role};
use dynamo_quorum::Value;
use dynamo_resolve::Resolver;
use dynamo_storage::{Durability, MemoryStore, Store, StoreOptions};

const NOW: Time = Time::from_millis(1_000_000);

struct Node {
    core: NodeCore,
    store: MemoryStore<Value>,
    next: u64,
}

impl Node {
    fn new() -> Node {
        let store = MemoryStore::open(&StoreOptions::new("n1", NOW.as_millis())).expect("store");
        let config = CoreConfig {
            secret: dynamo_quorum::ContextKey::new([1; 32]),
            name: "n1".into(),
            address: "bench-1".into(),
            zone: "z".into(),
            capacity: 1,
            seeds: Vec::new(),
            cluster: "bench".into(),
            partitions: 64,
            target_n: 3,
            request_timeout_ms: 1_000,
            max_value_bytes: 1 << 20,
            gossip_interval_ms: 1_000,
            replica_durability: Durability::Buffered,
            anti_entropy_interval_ms: 0,
            anti_entropy_sessions: 1,
            anti_entropy_bytes_per_sec: 0,
            handoff_concurrency: 2,
            tombstone_grace_ms: 0,
            replaces: None,
            rejoin: false,
            stand_in_after_ms: 500,
        };
        let saved = load_saved_state(&store).expect("saved state");
        let core = NodeCore::new(config, &saved, store.actor(), NOW, 7).expect("core");
        let mut node = Node {
            core,
            store,
            next: 0,
        };
        node.ask(
            Role::Admin,
            Request::CreateBucket(BucketProps {
                name: "solo".into(),
                n: 1,
                r: 1,
                w: 1,
                pr: 0,
                pw: 0,
                // Blind puts replace the version their coordinator holds: no sibling grows
                // over the iterations.
                resolver: Resolver::Lww,
            }),
        );
        node
    }

    fn ask(&mut self, role: Role, request: Request) -> Response {
        self.next += 1;
        let who = PeerIdentity {
            role,
            name: "bench".into(),
        };
        self.core
            .handle_request(NOW, RequestId(self.next), &who, request);
        let mut answer = None;
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Store { id, op } => {
                    let result = execute(&self.store, op);
                    self.core.handle_store_result(NOW, id, result);
                }
                Output::Respond { response, .. } => answer = Some(response),
                Output::Call { .. } | Output::Event(_) => {}
            }
        }
        answer.expect("one answer")
    }
}

fn request_path(c: &mut Criterion) {
    let mut node = Node::new();
    let mut group = c.benchmark_group("node core");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    let put = |key: String| Request::Put {
        bucket: "solo".into(),
        key: key.into_bytes(),
        value: Some(vec![7; 1024]),
        context: None,
        options: RequestOptions::default(),
        forwarded: false,
        write_id: None,
    };
    for _ in 0..2 {
        let answer = node.ask(Role::Client, put("k0".into()));
        assert!(matches!(answer, Response::Put(_)), "{answer:?}");
    }
    group.bench_function("put 1 KiB (N=1)", |b| {
        b.iter(|| {
            i += 1;
            black_box(node.ask(Role::Client, put(format!("k{}", i % 1000))))
        });
    });
    for k in 0..1000 {
        node.ask(Role::Client, put(format!("r{k}")));
    }
    group.bench_function("get 1 KiB (N=1)", |b| {
        b.iter(|| {
            i += 1;
            let get = Request::Get {
                bucket: "solo".into(),
                key: format!("r{}", i % 1000).into_bytes(),
                options: RequestOptions::default(),
            };
            black_box(node.ask(Role::Client, get))
        });
    });
    group.bench_function("ping", |b| {
        b.iter(|| black_box(node.ask(Role::Client, Request::Ping(vec![1; 64]))));
    });
    group.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
