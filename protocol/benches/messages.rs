//! The wire cost of the hot path (issue 28): framing ([`dynamo_protocol::encode_frame`], what
//! the transport sends) and decoding the postcard payload of the messages every read and write
//! carries, with 1 KiB values; printed as messages per second by criterion's throughput line.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dynamo_protocol::{GetReply, Request, RequestOptions, Response};
use dynamo_quorum::{Object, ReplicaReply, ReplicaRequest, Value};
use dynamo_vclock::Actor;

const VALUE: usize = 1024;

/// The messages of one replicated write and one read: (name, message).
fn messages() -> Vec<(&'static str, Message)> {
    let actor = Actor::new("node-1#1");
    let mut object = Object::empty();
    object.update(&object.context(), &actor, Value::Data(vec![7; VALUE]), 1);
    vec![
        (
            "client_put",
            Message::Request(Request::Put {
                bucket: "default".into(),
                key: b"user:42".to_vec(),
                value: Some(vec![7; VALUE]),
                context: Some("c".repeat(60)),
                options: RequestOptions::default(),
                forwarded: false,
                write_id: Some(u128::MAX / 3),
            }),
        ),
        (
            "replica_write",
            Message::Request(Request::Replica {
                partition: 17,
                request: ReplicaRequest::Write {
                    key: b"user:42".to_vec(),
                    object: object.clone(),
                    hint: None,
                },
            }),
        ),
        (
            "replica_found",
            Message::Response(Response::Replica(ReplicaReply::Found(object))),
        ),
        (
            "client_get_reply",
            Message::Response(Response::Get(GetReply {
                values: vec![vec![7; VALUE]],
                context: "c".repeat(60),
                deleted: false,
                resolution: None,
            })),
        ),
    ]
}

/// A request or a response: the two types a stream carries.
#[derive(Clone)]
enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    fn frame(&self) -> Vec<u8> {
        const LIMIT: usize = 1 << 24;
        match self {
            Message::Request(request) => dynamo_protocol::encode_frame(request, LIMIT),
            Message::Response(response) => dynamo_protocol::encode_frame(response, LIMIT),
        }
        .expect("encodes")
    }

    fn decode_like(&self, bytes: &[u8]) -> usize {
        match self {
            Message::Request(_) => postcard::from_bytes::<Request>(bytes).map(|_| 1),
            Message::Response(_) => postcard::from_bytes::<Response>(bytes).map(|_| 2),
        }
        .expect("decodes")
    }
}

fn encode_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("message");
    group.throughput(Throughput::Elements(1));
    for (name, message) in messages() {
        let frame = message.frame();
        let payload = &frame[4..];
        group.bench_function(format!("{name}_frame"), |b| {
            b.iter(|| black_box(message.frame()));
        });
        group.bench_function(format!("{name}_decode"), |b| {
            b.iter(|| black_box(message.decode_like(black_box(payload))));
        });
    }
    group.finish();
}

criterion_group!(benches, encode_decode);
criterion_main!(benches);
