//! Coordinator throughput: complete (3,2,2) puts and gets driven through the state machines
//! with instant replies, printed as operations per second by criterion's throughput line.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dynamo_quorum::{
    Command, Coordinate, GetCoordinator, GetRequest, Object, PutCoordinator, PutRequest, Quorum,
    ReplicaReply, StandIns, Value,
};
use dynamo_ring::{Role, Target};
use dynamo_vclock::Actor;

fn targets() -> Vec<Target> {
    ["a", "b", "c"]
        .map(|n| Target {
            node: n.into(),
            role: Role::Primary,
        })
        .to_vec()
}

fn one_put(stored: &Object, actor: &Actor) -> usize {
    let mut put = PutCoordinator::new(
        0,
        PutRequest {
            key: b"user:42".to_vec(),
            context: None,
            value: Value::Data(vec![7; 64]),
            coordinator: "a".into(),
            actor: actor.clone(),
            targets: targets(),
            stand_ins: StandIns::default(),
            quorum: Quorum::default(),
            timeout_ms: 1_000,
            supersede_local: false,
        },
    )
    .expect("valid put");
    let mut commands = 0;
    while let Some(command) = put.poll_command() {
        commands += 1;
        match command {
            Command::ReadLocal { .. } => put.handle_local_read(1, Ok(Some(stored.clone()))),
            Command::WriteLocal { context, value, .. } => {
                let mut object = stored.clone();
                object.update(&context, actor, value, 1);
                put.handle_local_write(1, Ok(object));
            }
            Command::SyncLocal { object, .. } => put.handle_local_write(1, Ok(object)),
            Command::Send { to, .. } => put.handle_reply(2, &to, ReplicaReply::Written),
            Command::Respond(_) => {}
        }
    }
    commands
}

fn one_get(stored: &Object) -> usize {
    let mut get = GetCoordinator::new(
        0,
        GetRequest {
            key: b"user:42".to_vec(),
            targets: targets(),
            stand_ins: StandIns::default(),
            quorum: Quorum::default(),
            timeout_ms: 1_000,
        },
    )
    .expect("valid get");
    let mut commands = 0;
    while let Some(command) = get.poll_command() {
        commands += 1;
        if let Command::Send { to, .. } = command {
            get.handle_reply(1, &to, ReplicaReply::Found(stored.clone()));
        }
    }
    commands
}

fn coordinators(c: &mut Criterion) {
    let actor = Actor::new("a#1");
    let mut stored = Object::empty();
    stored.update(&stored.context(), &actor, Value::Data(vec![1; 64]), 0);
    let mut group = c.benchmark_group("coordinator");
    group.throughput(Throughput::Elements(1));
    group.bench_function("put_3_2_2", |b| {
        b.iter(|| black_box(one_put(&stored, &actor)));
    });
    group.bench_function("get_3_2_2", |b| {
        b.iter(|| black_box(one_get(&stored)));
    });
    group.finish();
}

criterion_group!(benches, coordinators);
criterion_main!(benches);
