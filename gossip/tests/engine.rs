//! Engine behaviour driven by hand: reconciliation, generations, departures, rejection of bad
//! input (paper section 4.8).

use std::time::Duration;

use dynamo_gossip::{
    Body, Change, Config, Delta, Digest, DigestEntry, Event, Gossip, GossipError, IdRange,
    Identity, Message, NodeDelta, NodeId, NodeMeta, Status, VersionedChange,
};

const A: &str = "10.0.0.1:7946";
const B: &str = "10.0.0.2:7946";

fn config() -> Config {
    Config {
        seeds: vec![A.into()],
        ..Config::default()
    }
}

fn node(id: &str, generation: u64, address: &str, seed: u64) -> Gossip {
    Gossip::new(
        config(),
        Identity::new(id, generation, address),
        Status::Alive,
        Duration::ZERO,
        seed,
    )
}

/// Delivers every pending message between two nodes at `now`, until quiet.
fn exchange(now: Duration, a: &mut Gossip, b: &mut Gossip) -> Vec<Message> {
    let mut delivered = Vec::new();
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            delivered.push(t.message.clone());
            b.handle_message(now, A, t.message).expect("b accepts");
            moved = true;
        }
        while let Some(t) = b.poll_transmit() {
            delivered.push(t.message.clone());
            a.handle_message(now, B, t.message).expect("a accepts");
            moved = true;
        }
        if !moved {
            break;
        }
    }
    delivered
}

fn rounds(a: &mut Gossip, b: &mut Gossip, from: u64, to: u64) -> Vec<Message> {
    let mut delivered = Vec::new();
    for second in from..=to {
        let now = Duration::from_secs(second);
        a.handle_timeout(now);
        b.handle_timeout(now);
        delivered.extend(exchange(now, a, b));
    }
    delivered
}

fn events(node: &mut Gossip) -> Vec<Event> {
    std::iter::from_fn(|| node.poll_event()).collect()
}

/// Paper 4.8.1: membership and state spread by reconciliation through a seed; a change is
/// reported as `StateChanged`, and after that idle rounds carry no state at all.
#[test]
fn state_reaches_peer_once_and_only_once() {
    let mut a = node("a", 1, A, 1);
    let mut b = node("b", 1, B, 2);
    b.set("ring", b"r1".to_vec()).unwrap();
    rounds(&mut a, &mut b, 1, 3);
    let b_id = NodeId::from("b");
    assert_eq!(a.member(&b_id).unwrap().get("ring"), Some(&b"r1"[..]));
    let seen = events(&mut a);
    assert!(seen.contains(&Event::StateChanged {
        node: b_id.clone(),
        key: "ring".into()
    }));
    assert!(seen.contains(&Event::NodeUp(b_id.clone())));

    // Idle rounds: only digests travel, yet heartbeats keep advancing.
    let heartbeat = a.member(&b_id).unwrap().heartbeat();
    let delivered = rounds(&mut a, &mut b, 4, 8);
    assert!(!delivered.is_empty());
    for message in &delivered {
        if let Body::SynAck { delta, .. } | Body::Ack { delta } = &message.body {
            assert!(delta.nodes.is_empty(), "state resent while idle: {delta:?}");
        }
    }
    assert!(a.member(&b_id).unwrap().heartbeat() > heartbeat);
    assert!(
        events(&mut a)
            .iter()
            .all(|e| !matches!(e, Event::StateChanged { .. }))
    );
}

/// Paper 4.8.1 / chitchat generations: a restarted node (same id, higher generation) replaces
/// its old self; deltas of the old generation are ignored afterwards.
#[test]
fn higher_generation_wins() {
    let mut a = node("a", 1, A, 1);
    let mut b = node("b", 1, B, 2);
    b.set("ring", b"old".to_vec()).unwrap();
    rounds(&mut a, &mut b, 1, 3);
    let b_id = NodeId::from("b");
    assert_eq!(a.member(&b_id).unwrap().identity().generation, 1);
    events(&mut a);

    let mut b2 = Gossip::new(
        config(),
        Identity::new("b", 2, B),
        Status::Joining,
        Duration::from_secs(4),
        3,
    );
    rounds(&mut a, &mut b2, 4, 6);
    let view = a.member(&b_id).unwrap();
    assert_eq!(view.identity().generation, 2);
    assert_eq!(view.get("ring"), None, "old generation's state is gone");
    assert_eq!(view.status(), Status::Joining);
    assert!(events(&mut a).contains(&Event::NodeRestarted {
        node: b_id.clone(),
        generation: 2
    }));

    // A late delta from generation 1 changes nothing.
    let stale = Message {
        cluster: "dynamo".into(),
        from: "b".into(),
        body: Body::Ack {
            delta: Delta {
                nodes: vec![NodeDelta {
                    node: b_id.clone(),
                    generation: 1,
                    heartbeat: 99,
                    meta: Some(NodeMeta {
                        address: B.into(),
                        zone: String::new(),
                        capacity: 1,
                    }),
                    from_version: 0,
                    to_version: 10,
                    changes: vec![VersionedChange {
                        version: 10,
                        change: Change::Set {
                            key: "ring".into(),
                            value: b"stale".to_vec(),
                        },
                    }],
                }],
            },
        },
    };
    a.handle_message(Duration::from_secs(7), B, stale).unwrap();
    assert_eq!(a.member(&b_id).unwrap().get("ring"), None);
}

/// Paper 4.8.1 (explicit departure): a member that left is not reported down, is forgotten
/// after the grace period, and is not resurrected by its own stale gossip.
#[test]
fn left_member_is_forgotten_not_mourned() {
    let mut a = node("a", 1, A, 1);
    let mut b = node("b", 1, B, 2);
    rounds(&mut a, &mut b, 1, 5);
    let b_id = NodeId::from("b");
    b.set_status(Status::Leaving).unwrap();
    b.set_status(Status::Left).unwrap();
    rounds(&mut a, &mut b, 6, 8);
    assert_eq!(a.member(&b_id).unwrap().status(), Status::Left);
    assert!(!a.is_live(&b_id));
    // b goes away; a keeps ticking past the grace period.
    let grace = config().left_grace.as_secs();
    for second in 9..=(10 + grace) {
        a.handle_timeout(Duration::from_secs(second));
        while a.poll_transmit().is_some() {}
    }
    let seen = events(&mut a);
    assert!(!seen.contains(&Event::NodeDown(b_id.clone())), "{seen:?}");
    assert!(seen.contains(&Event::NodeForgotten(b_id.clone())));
    assert!(a.member(&b_id).is_none());

    // b's last words arrive late: still forgotten.
    let now = Duration::from_secs(11 + grace);
    b.handle_timeout(now);
    while let Some(t) = b.poll_transmit() {
        let _ = a.handle_message(now, B, t.message);
    }
    while let Some(t) = a.poll_transmit() {
        b.handle_message(now, A, t.message).unwrap();
    }
    while let Some(t) = b.poll_transmit() {
        a.handle_message(now, B, t.message).unwrap();
    }
    assert!(a.member(&b_id).is_none(), "left member resurrected");
}

/// Local requests that cannot be honoured are refused.
#[test]
fn local_requests_are_checked() {
    let mut a = node("a", 1, A, 1);
    let huge = vec![0; config().max_message_bytes];
    assert!(matches!(
        a.set("big", huge),
        Err(GossipError::ValueTooLarge { .. })
    ));
    a.set_status(Status::Leaving).unwrap();
    assert!(matches!(
        a.set_status(Status::Alive),
        Err(GossipError::InvalidRequest(_))
    ));
}

fn entry(node: &str) -> DigestEntry {
    DigestEntry {
        node: node.into(),
        generation: 1,
        heartbeat: 1,
        max_version: 1,
    }
}

fn delta_node(from_version: u64, to_version: u64, versions: &[u64], meta: bool) -> NodeDelta {
    NodeDelta {
        node: "x".into(),
        generation: 1,
        heartbeat: 1,
        meta: meta.then(|| NodeMeta {
            address: "x".into(),
            zone: String::new(),
            capacity: 1,
        }),
        from_version,
        to_version,
        changes: versions
            .iter()
            .map(|&version| VersionedChange {
                version,
                change: Change::Status(Status::Alive),
            })
            .collect(),
    }
}

fn msg(body: Body) -> Message {
    Message {
        cluster: "dynamo".into(),
        from: "peer".into(),
        body,
    }
}

/// Nothing a peer sends can make the engine panic: malformed, oversized or structurally
/// invalid messages are rejected with an error, and the engine is unchanged.
#[test]
fn bad_messages_are_rejected() {
    let max = config().max_message_bytes;
    let good = msg(Body::Syn {
        digest: Digest {
            range: None,
            entries: vec![entry("p")],
        },
    })
    .encode(max)
    .unwrap();
    let mut trailing = good.clone();
    trailing.push(0);
    let bytes_cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("garbage", vec![0xff; 40]),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("trailing", trailing),
        ("oversized", vec![0; max + 1]),
    ];
    for (name, bytes) in bytes_cases {
        let mut a = node("a", 1, A, 1);
        let result = a.handle_datagram(Duration::ZERO, B, &bytes);
        assert!(result.is_err(), "{name} accepted");
        assert!(a.poll_transmit().is_none(), "{name} answered");
    }

    let ack = |nodes| {
        msg(Body::Ack {
            delta: Delta { nodes },
        })
    };
    let message_cases: Vec<(&str, Message)> = vec![
        (
            "wrong cluster",
            Message {
                cluster: "other".into(),
                ..msg(Body::Syn {
                    digest: Digest::default(),
                })
            },
        ),
        (
            "duplicate digest entry",
            msg(Body::Syn {
                digest: Digest {
                    range: None,
                    entries: vec![entry("p"), entry("q"), entry("p")],
                },
            }),
        ),
        ("from > to", ack(vec![delta_node(5, 4, &[], true)])),
        (
            "versions out of order",
            ack(vec![delta_node(0, 5, &[3, 2], true)]),
        ),
        ("version beyond to", ack(vec![delta_node(0, 5, &[6], true)])),
        ("version at from", ack(vec![delta_node(2, 5, &[2], true)])),
        (
            "from zero without meta",
            ack(vec![delta_node(0, 5, &[1], false)]),
        ),
        (
            "duplicate delta node",
            ack(vec![
                delta_node(0, 1, &[1], true),
                delta_node(0, 1, &[1], true),
            ]),
        ),
        (
            "inverted digest range",
            msg(Body::Syn {
                digest: Digest {
                    range: Some(IdRange {
                        first: Some("q".into()),
                        last: Some("p".into()),
                    }),
                    entries: vec![],
                },
            }),
        ),
        (
            "empty sender",
            Message {
                from: "".into(),
                ..msg(Body::Syn {
                    digest: Digest::default(),
                })
            },
        ),
    ];
    for (name, message) in message_cases {
        let mut a = node("a", 1, A, 1);
        let bytes = message.encode(max).unwrap();
        assert!(
            a.handle_datagram(Duration::ZERO, B, &bytes).is_err(),
            "{name} accepted"
        );
        assert!(
            a.handle_message(Duration::ZERO, B, message).is_err(),
            "{name} accepted"
        );
        assert!(a.poll_transmit().is_none(), "{name} answered");
        assert_eq!(a.members().count(), 1, "{name} changed membership");
    }
}

mod laws {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Decoding arbitrary bytes never panics.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes, 1024);
        }

        /// Encode then decode is the identity for valid messages.
        #[test]
        fn roundtrip(
            ids in proptest::collection::btree_set("[a-z]{1,8}", 0..20),
            heartbeat in any::<u64>(),
            value in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let entries: Vec<DigestEntry> = ids
                .iter()
                .map(|id| DigestEntry {
                    node: id.as_str().into(),
                    generation: 3,
                    heartbeat,
                    max_version: 7,
                })
                .collect();
            let message = msg(Body::SynAck {
                digest: Digest { range: None, entries },
                delta: Delta {
                    nodes: vec![NodeDelta {
                        changes: vec![VersionedChange {
                            version: 1,
                            change: Change::Set { key: "k".into(), value },
                        }],
                        ..delta_node(0, 1, &[], true)
                    }],
                },
            });
            let bytes = message.encode(1 << 20).unwrap();
            prop_assert_eq!(bytes.len(), message.encoded_len());
            prop_assert_eq!(Message::decode(&bytes, 1 << 20).unwrap(), message);
        }
    }
}

/// Paper 4.8.2: a node that knows nobody contacts a seed (known by address only), and never
/// itself.
#[test]
fn lonely_node_contacts_a_seed() {
    let cases = [
        // (own address, seeds, expected targets)
        (B, vec![A], vec![A]),
        (A, vec![A], vec![]),
        (B, vec![A, B], vec![A]),
        (B, vec![], vec![]),
    ];
    for (own, seeds, expected) in cases {
        let config = Config {
            seeds: seeds.iter().map(|s| (*s).to_owned()).collect(),
            ..Config::default()
        };
        let mut node = Gossip::new(
            config,
            Identity::new("x", 1, own),
            Status::Joining,
            Duration::ZERO,
            5,
        );
        node.handle_timeout(Duration::from_secs(1));
        let targets: Vec<(Option<NodeId>, String)> = std::iter::from_fn(|| node.poll_transmit())
            .map(|t| (t.to, t.address))
            .collect();
        let expected: Vec<(Option<NodeId>, String)> =
            expected.iter().map(|a| (None, (*a).to_owned())).collect();
        assert_eq!(targets, expected, "own {own}, seeds {seeds:?}");
    }
}

/// A partial digest vouches only for the ids in its range.
#[test]
fn id_range_bounds() {
    let range = |first: Option<&str>, last: Option<&str>| IdRange {
        first: first.map(NodeId::from),
        last: last.map(NodeId::from),
    };
    let cases = [
        (range(None, None), "m", true),
        (range(Some("c"), Some("f")), "c", true),
        (range(Some("c"), Some("f")), "f", true),
        (range(Some("c"), Some("f")), "b", false),
        (range(Some("c"), Some("f")), "g", false),
        (range(None, Some("f")), "a", true),
        (range(Some("c"), None), "z", true),
        (range(Some("c"), None), "a", false),
    ];
    for (range, id, expected) in cases {
        assert_eq!(range.contains(&id.into()), expected, "{range:?} {id}");
    }
}
