//! Measures what anti-entropy exchanges between two replicas that hold KEYS keys and differ in
//! DIFFERING of them (paper 4.7; issue 11's "1,000,000 keys that differ in 100 converge
//! exchanging under 1 MiB"). Both replicas are `MemoryStore`s driven through the node core's own
//! store operations (`DiffStart`, `DiffAnswer`, `DiffStep`, `GetMany`), one exchange per
//! partition in each direction, as two nodes' sweeps do; every request and reply is encoded
//! with postcard as the node's protocol frames it, and the bytes are counted. QUIC and TLS
//! framing are left out.
//!
//! ```text
//! cargo run --release -p dynamo-tests --example ae_exchange_bytes [KEYS] [DIFFERING] [VALUE_BYTES]
//! ```
//! Defaults: 1,000,000 keys, 100 differing, 100-byte values, 256 partitions (the node default).

use std::time::Instant;

use dynamo_core::{StoreOp, StoreResult, execute};
use dynamo_merkle::Step;
use dynamo_protocol::{Request, Response};
use dynamo_quorum::{Object, Value};
use dynamo_ring::key_position;
use dynamo_storage::{Durability, MemoryStore, Store, StoreOptions};
use dynamo_tests::process::arg_or;
use dynamo_vclock::{Actor, VClock};

const PARTITION_BITS: u32 = 8;

fn partition_of(key: &[u8]) -> u32 {
    (key_position(key) >> (128 - PARTITION_BITS)) as u32
}

fn encoded<T: serde::Serialize>(message: &T) -> u64 {
    postcard::to_allocvec(message).map_or(0, |bytes| bytes.len() as u64)
}

/// Bytes and round trips of one direction of the exchange.
#[derive(Default)]
struct Tally {
    diff_bytes: u64,
    fetch_bytes: u64,
    round_trips: u64,
    keys_found: u64,
}

/// `initiator` diffs every partition against `responder` and pulls the differing keys.
fn pull(initiator: &MemoryStore<Value>, responder: &MemoryStore<Value>, tally: &mut Tally) {
    for partition in 0..(1 << PARTITION_BITS) {
        let Ok(StoreResult::DiffStarted(mut session, first)) =
            execute(initiator, StoreOp::DiffStart { partition })
        else {
            panic!("diff start failed");
        };
        let mut step = Step::Send(first);
        let keys = loop {
            match step {
                Step::Send(request) => {
                    tally.round_trips += 1;
                    tally.diff_bytes += encoded(&Request::Diff {
                        partition,
                        request: request.clone(),
                    });
                    let Ok(StoreResult::DiffAnswer(reply)) =
                        execute(responder, StoreOp::DiffAnswer { partition, request })
                    else {
                        panic!("diff answer failed");
                    };
                    tally.diff_bytes += encoded(&Response::Diff(reply.clone()));
                    let op = StoreOp::DiffStep {
                        partition,
                        session,
                        reply,
                    };
                    let Ok(StoreResult::DiffStepped(next, next_step)) = execute(initiator, op)
                    else {
                        panic!("diff step failed");
                    };
                    session = next;
                    step = next_step;
                }
                Step::Done(outcome) => {
                    break outcome
                        .differences
                        .into_iter()
                        .map(|d| d.key)
                        .collect::<Vec<_>>();
                }
            }
        };
        if keys.is_empty() {
            continue;
        }
        tally.keys_found += keys.len() as u64;
        tally.round_trips += 1;
        tally.fetch_bytes += encoded(&Request::Fetch {
            partition,
            keys: keys.clone(),
        });
        let Ok(StoreResult::Scanned(entries)) =
            execute(responder, StoreOp::GetMany { partition, keys })
        else {
            panic!("fetch failed");
        };
        tally.fetch_bytes += encoded(&Response::Entries(entries.clone()));
        for (key, object) in entries {
            initiator
                .apply(partition, &key, &object, Durability::Buffered)
                .expect("merge");
        }
    }
}

fn main() {
    let keys = arg_or(1, 1_000_000);
    let differing = arg_or(2, 100).min(keys);
    let value_bytes = arg_or(3, 100) as usize;
    let open = |name: &str| -> MemoryStore<Value> {
        MemoryStore::open(&StoreOptions::new(name, 1)).expect("store")
    };
    let (a, b) = (open("replica-a"), open("replica-b"));
    let started = Instant::now();
    let writer = Actor::new("n1#1.1");
    let key_of = |i: u64| format!("default/user:{i:08}").into_bytes();
    for i in 0..keys {
        let key = key_of(i);
        let value = Value::Data(vec![b'a' + (i % 26) as u8; value_bytes]);
        let object = Object::new(&writer, value, i);
        for store in [&a, &b] {
            store
                .apply(partition_of(&key), &key, &object, Durability::Buffered)
                .expect("write");
        }
    }
    // Spread the differences over the key space: a third updated on b only, a third updated
    // on a only, a third missing on b.
    let step = (keys / differing.max(1)).max(1);
    for d in 0..differing {
        let i = d * step;
        let key = key_of(i);
        let partition = partition_of(&key);
        match d % 3 {
            0 | 1 => {
                let store = if d % 3 == 0 { &b } else { &a };
                let mut object = store.get(partition, &key).expect("read").expect("held");
                let context: VClock = object.context();
                let value = Value::Data(vec![b'z'; value_bytes]);
                object.update(&context, &Actor::new("n2#1.1"), value, keys + d);
                store
                    .apply(partition, &key, &object, Durability::Buffered)
                    .expect("update");
            }
            _ => {
                let held = b.get(partition, &key).expect("read").expect("held");
                b.remove_if_equal(partition, &key, &held, Durability::Buffered)
                    .expect("remove");
            }
        }
    }
    println!(
        "two replicas of {keys} keys ({value_bytes} B values, {} partitions) differing in {differing}, built in {:.1} s",
        1 << PARTITION_BITS,
        started.elapsed().as_secs_f64()
    );
    let exchanged = Instant::now();
    let mut a_pulls = Tally::default();
    pull(&a, &b, &mut a_pulls);
    let mut b_pulls = Tally::default();
    pull(&b, &a, &mut b_pulls);
    let total = a_pulls.diff_bytes + a_pulls.fetch_bytes + b_pulls.diff_bytes + b_pulls.fetch_bytes;
    for (name, t) in [("a pulls from b", &a_pulls), ("b pulls from a", &b_pulls)] {
        println!(
            "{name}: {} differing keys found, {} round trips, {} B of tree hashes, {} B of fetched versions",
            t.keys_found, t.round_trips, t.diff_bytes, t.fetch_bytes
        );
    }
    println!(
        "total exchanged: {total} B ({:.3} MiB; target under 1 MiB) in {:.1} s",
        total as f64 / (1024.0 * 1024.0),
        exchanged.elapsed().as_secs_f64()
    );
    // Converged: a second exchange finds nothing.
    let mut again = Tally::default();
    pull(&a, &b, &mut again);
    pull(&b, &a, &mut again);
    println!(
        "after the exchange: {} differing keys, {} B of tree hashes to confirm it",
        again.keys_found, again.diff_bytes
    );
}
