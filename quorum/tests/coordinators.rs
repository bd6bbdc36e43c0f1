//! Engine-style tables: each case feeds a coordinator a sequence of inputs and asserts the exact
//! commands it emits after each one (paper 4.5 for put and get, 4.6 for fallbacks and hints,
//! section 5 for read repair; Riak's `notfound_ok`, `basic_quorum` and PR/PW semantics).

use dynamo_quorum::{
    ClientContext, Command, Coordinate, GetCoordinator, GetRequest, MergeRequest, Object,
    PutCoordinator, PutRequest, Quorum, QuorumError, ReapCoordinator, ReapRequest, ReplicaReply,
    ReplicaRequest, Response, StandIns, Value, WriteId,
};
use dynamo_ring::{Role, Target};
use dynamo_vclock::{Actor, VClock};

/// Milliseconds a target may stay silent in the table cases before a spare stands in.
const STAND_IN_AFTER_MS: u64 = 30;

/// Targets and spares from a compact spec: `"a b d>c | e f"` is primaries a and b, d standing
/// in for c, and spares e and f for targets that fail or stay silent past
/// [`STAND_IN_AFTER_MS`].
fn placement(spec: &str) -> (Vec<Target>, StandIns) {
    let (targets_spec, spares) = spec.split_once('|').unwrap_or((spec, ""));
    let stand_ins = StandIns {
        spares: spares.split_whitespace().map(Into::into).collect(),
        after_ms: Some(STAND_IN_AFTER_MS),
    };
    (targets(targets_spec), stand_ins)
}

/// Targets from a compact spec: `"a b d>c"` is primaries a and b, and d standing in for c.
fn targets(spec: &str) -> Vec<Target> {
    spec.split_whitespace()
        .map(|t| match t.split_once('>') {
            Some((node, for_node)) => Target {
                node: node.into(),
                role: Role::Fallback {
                    for_node: for_node.into(),
                },
            },
            None => Target {
                node: t.into(),
                role: Role::Primary,
            },
        })
        .collect()
}

fn data(text: &str) -> Value {
    Value::Data(text.as_bytes().to_vec())
}

/// A version of a key written by `actor`, after whatever `base` holds (a blind write if empty).
fn written(base: &Object, actor: &str, value: Value, now: u64) -> Object {
    let mut object = base.clone();
    object.update(&base.context(), &Actor::new(actor), value, now);
    object
}

fn describe(command: &Command) -> String {
    match command {
        Command::ReadLocal { .. } => "read-local".into(),
        Command::WriteLocal { value, .. } => format!("write-local {}", describe_value(value)),
        Command::SyncLocal { object, .. } => format!("sync-local {}", describe_object(object)),
        Command::Send { to, request } => match request {
            ReplicaRequest::Read { .. } => format!("read {to}"),
            ReplicaRequest::ReadSynced { .. } => format!("read-synced {to}"),
            ReplicaRequest::Write { hint, object, .. } => {
                let hint = hint
                    .as_ref()
                    .map(|h| format!(" hint={h}"))
                    .unwrap_or_default();
                format!("write {to}{hint} {}", describe_object(object))
            }
            ReplicaRequest::Reap { .. } => format!("reap {to}"),
            ReplicaRequest::Holdings { .. } => format!("holdings {to}"),
        },
        Command::Respond(Response::Put(Ok(ok))) => {
            let warnings = if ok.warnings.is_empty() {
                String::new()
            } else {
                format!(" {:?}", ok.warnings)
            };
            format!("put ok acks={}{warnings}", ok.acknowledged)
        }
        Command::Respond(Response::Put(Err(e))) => format!("put err {e}"),
        Command::Respond(Response::Get(Ok(ok))) => match &ok.object {
            Some(object) => format!("get ok {}", describe_object(object)),
            None => "get notfound".into(),
        },
        Command::Respond(Response::Get(Err(e))) => format!("get err {e}"),
        Command::Respond(Response::Reap(outcome)) => format!("reap {outcome:?}"),
    }
}

fn describe_value(value: &Value) -> String {
    match value {
        Value::Data(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::Written { data, id } => format!("{}#{}", String::from_utf8_lossy(data), id.0),
        Value::Tombstone => "<tombstone>".into(),
        Value::Deleted { superseded } => {
            let ids: Vec<String> = superseded.iter().map(|id| format!("#{}", id.0)).collect();
            format!("<deleted {}>", ids.join(","))
        }
    }
}

fn describe_object(object: &Object) -> String {
    let mut values: Vec<String> = object.values().map(describe_value).collect();
    values.sort();
    format!("[{}]", values.join(","))
}

fn drain(commands: impl FnMut() -> Option<Command>) -> Vec<String> {
    std::iter::from_fn(commands).map(|c| describe(&c)).collect()
}

/// One input to a coordinator.
#[derive(Clone)]
enum Step {
    /// The local store's current versions (put only).
    LocalRead(Option<Object>),
    /// The local write succeeds, on top of what the local read returned (put only).
    LocalWrite,
    /// The local store fails.
    LocalFails(&'static str),
    /// A replica answers.
    Reply(&'static str, ReplicaReply),
    /// The clock reaches this time.
    Timeout(u64),
}

struct Case {
    name: &'static str,
    quorum: Quorum,
    targets: &'static str,
    steps: Vec<(Step, Vec<&'static str>)>,
}

fn run_put_case(case: &Case) {
    let (targets, stand_ins) = placement(case.targets);
    let request = PutRequest {
        key: b"cart".to_vec(),
        context: None,
        value: data("new"),
        coordinator: "a".into(),
        actor: Actor::new("a#1"),
        targets,
        stand_ins,
        quorum: case.quorum,
        timeout_ms: 100,
        supersede_local: false,
    };
    let mut put = PutCoordinator::new(0, request).expect(case.name);
    assert_eq!(
        drain(|| put.poll_command()),
        ["read-local"],
        "{}",
        case.name
    );
    let mut local = Object::empty();
    for (i, (step, expected)) in case.steps.iter().enumerate() {
        match step.clone() {
            Step::LocalRead(stored) => {
                local = stored.clone().unwrap_or_else(Object::empty);
                put.handle_local_read(1, Ok(stored));
            }
            Step::LocalWrite => {
                // The requests here are blind writes (no context): the store adds a sibling.
                local.update(&VClock::new(), &Actor::new("a#1"), data("new"), 1);
                put.handle_local_write(1, Ok(local.clone()));
            }
            Step::LocalFails(reason) => put.handle_local_write(1, Err(reason.into())),
            Step::Reply(from, reply) => put.handle_reply(2, &from.into(), reply),
            Step::Timeout(now) => put.handle_timeout(now),
        }
        assert_eq!(
            drain(|| put.poll_command()),
            *expected,
            "{} step {i}",
            case.name
        );
    }
}

fn written_ok() -> ReplicaReply {
    ReplicaReply::Written
}

fn failed(reason: &str) -> ReplicaReply {
    ReplicaReply::Failed(reason.into())
}

#[test]
fn put_tables() {
    let start = || {
        vec![
            (Step::LocalRead(None), vec!["write-local new"]),
            (Step::LocalWrite, vec!["write b [new]", "write c [new]"]),
        ]
    };
    let with = |mut steps: Vec<(Step, Vec<&'static str>)>, more: Vec<(Step, Vec<&'static str>)>| {
        steps.extend(more);
        steps
    };
    let cases = vec![
        Case {
            name: "(3,2,2): the coordinator's write and one replica's",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: with(
                start(),
                vec![
                    (Step::Reply("b", written_ok()), vec!["put ok acks=2"]),
                    (Step::Reply("c", written_ok()), vec![]),
                ],
            ),
        },
        Case {
            name: "(3,1,3): every replica must acknowledge",
            quorum: Quorum::new(3, 1, 3),
            targets: "a b c",
            steps: with(
                start(),
                vec![
                    (Step::Reply("c", written_ok()), vec![]),
                    (Step::Reply("b", written_ok()), vec!["put ok acks=3"]),
                ],
            ),
        },
        Case {
            name: "(3,3,3): one failure makes W unreachable at once",
            quorum: Quorum::new(3, 3, 3),
            targets: "a b c",
            steps: with(
                start(),
                vec![
                    (Step::Reply("b", written_ok()), vec![]),
                    (
                        Step::Reply("c", failed("disk full")),
                        vec!["put err only 2 of 3 required replicas answered: c (disk full)"],
                    ),
                ],
            ),
        },
        Case {
            name: "(3,1,1) and W=1: the local write alone answers the client",
            quorum: Quorum::new(3, 1, 1),
            targets: "a b c",
            steps: vec![
                (Step::LocalRead(None), vec!["write-local new"]),
                (
                    Step::LocalWrite,
                    vec!["write b [new]", "write c [new]", "put ok acks=1"],
                ),
                (Step::Reply("b", written_ok()), vec![]),
            ],
        },
        Case {
            name: "one dead primary: the fallback gets the write with a hint (4.6)",
            quorum: Quorum::new(3, 2, 3),
            targets: "a b d>c",
            steps: vec![
                (Step::LocalRead(None), vec!["write-local new"]),
                (
                    Step::LocalWrite,
                    vec!["write b [new]", "write d hint=c [new]"],
                ),
                (Step::Reply("d", written_ok()), vec![]),
                (Step::Reply("b", written_ok()), vec!["put ok acks=3"]),
            ],
        },
        Case {
            name: "two dead primaries: fallbacks count towards W (sloppy quorum)",
            quorum: Quorum::new(3, 2, 2),
            targets: "a d>b e>c",
            steps: vec![
                (Step::LocalRead(None), vec!["write-local new"]),
                (
                    Step::LocalWrite,
                    vec!["write d hint=b [new]", "write e hint=c [new]"],
                ),
                (Step::Reply("e", written_ok()), vec!["put ok acks=2"]),
            ],
        },
        Case {
            name: "PW=2 with a fallback: the fallback's ack does not count as a primary's",
            quorum: Quorum {
                pw: 2,
                ..Quorum::new(3, 2, 2)
            },
            targets: "a b d>c",
            steps: vec![
                (Step::LocalRead(None), vec!["write-local new"]),
                (
                    Step::LocalWrite,
                    vec!["write b [new]", "write d hint=c [new]"],
                ),
                (Step::Reply("d", written_ok()), vec![]),
                (Step::Reply("b", written_ok()), vec!["put ok acks=3"]),
            ],
        },
        Case {
            name: "PW=2 unreachable once the only other primary fails",
            quorum: Quorum {
                pw: 2,
                ..Quorum::new(3, 2, 2)
            },
            targets: "a b d>c",
            steps: vec![
                (Step::LocalRead(None), vec!["write-local new"]),
                (
                    Step::LocalWrite,
                    vec!["write b [new]", "write d hint=c [new]"],
                ),
                (
                    Step::Reply("b", failed("unreachable")),
                    vec!["put err only 1 of 2 required replicas answered: b (unreachable)"],
                ),
                (Step::Reply("d", written_ok()), vec![]),
            ],
        },
        Case {
            name: "late, duplicate and unsolicited replies do not count",
            quorum: Quorum::new(3, 2, 3),
            targets: "a b c",
            steps: with(
                start(),
                vec![
                    (Step::Reply("b", written_ok()), vec![]),
                    (Step::Reply("b", written_ok()), vec![]),
                    (Step::Reply("x", written_ok()), vec![]),
                    (Step::Reply("a", written_ok()), vec![]),
                    (Step::Reply("c", written_ok()), vec!["put ok acks=3"]),
                    (Step::Reply("c", written_ok()), vec![]),
                ],
            ),
        },
        Case {
            name: "timeout before the quorum fails the put",
            quorum: Quorum::new(3, 2, 3),
            targets: "a b c",
            steps: with(
                start(),
                vec![
                    (Step::Reply("b", written_ok()), vec![]),
                    (Step::Timeout(99), vec![]),
                    (
                        Step::Timeout(100),
                        vec!["put err timed out after 100 ms with 2 of 3 replicas answered"],
                    ),
                    (Step::Reply("c", written_ok()), vec![]),
                ],
            ),
        },
        Case {
            name: "timeout after the quorum changes nothing",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: with(
                start(),
                vec![
                    (Step::Reply("b", written_ok()), vec!["put ok acks=2"]),
                    (Step::Timeout(500), vec![]),
                ],
            ),
        },
        Case {
            name: "4.6: targets silent past the delay get a spare each, with a hint",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c | d e",
            steps: with(
                start(),
                vec![
                    (Step::Timeout(30), vec![]),
                    (
                        Step::Timeout(31),
                        vec!["write d hint=b [new]", "write e hint=c [new]"],
                    ),
                    (Step::Timeout(90), vec![]),
                    (Step::Reply("e", written_ok()), vec!["put ok acks=2"]),
                    (Step::Reply("b", written_ok()), vec![]),
                ],
            ),
        },
        Case {
            name: "4.6: a failed target is replaced at once, and a spare for a fallback hints the primary",
            quorum: Quorum::new(3, 2, 3),
            targets: "a b d>c | e f",
            steps: vec![
                (Step::LocalRead(None), vec!["write-local new"]),
                (
                    Step::LocalWrite,
                    vec!["write b [new]", "write d hint=c [new]"],
                ),
                (
                    Step::Reply("d", failed("unreachable")),
                    vec!["write e hint=c [new]"],
                ),
                (Step::Reply("b", written_ok()), vec![]),
                (Step::Reply("e", written_ok()), vec!["put ok acks=3"]),
            ],
        },
        Case {
            name: "4.6: a silent target that answers late still counts, and one spare stands in for one target",
            quorum: Quorum::new(3, 2, 3),
            targets: "a b c | d",
            steps: with(
                start(),
                vec![
                    (Step::Timeout(31), vec!["write d hint=b [new]"]),
                    (Step::Timeout(60), vec![]),
                    (Step::Reply("c", written_ok()), vec![]),
                    (Step::Reply("b", written_ok()), vec!["put ok acks=3"]),
                    (Step::Reply("d", written_ok()), vec![]),
                ],
            ),
        },
        Case {
            name: "PW=2: a spare's ack does not count as a primary's",
            quorum: Quorum {
                pw: 2,
                ..Quorum::new(3, 2, 2)
            },
            targets: "a b c | d",
            steps: with(
                start(),
                vec![
                    (
                        Step::Reply("b", failed("unreachable")),
                        vec!["write d hint=b [new]"],
                    ),
                    (Step::Reply("d", written_ok()), vec![]),
                    (Step::Reply("c", written_ok()), vec!["put ok acks=3"]),
                ],
            ),
        },
        Case {
            name: "with no spare left a failure still fails the put at once",
            quorum: Quorum::new(3, 3, 3),
            targets: "a b c | d",
            steps: with(
                start(),
                vec![
                    (
                        Step::Reply("b", failed("unreachable")),
                        vec!["write d hint=b [new]"],
                    ),
                    (
                        Step::Reply("d", failed("disk full")),
                        vec![
                            "put err only 1 of 3 required replicas answered: b (unreachable), d (disk full)",
                        ],
                    ),
                ],
            ),
        },
        Case {
            name: "a failing local store fails the put and sends nothing",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: vec![
                (Step::LocalRead(None), vec!["write-local new"]),
                (
                    Step::LocalFails("no space left on device"),
                    vec!["put err local store failed: no space left on device"],
                ),
            ],
        },
    ];
    for case in &cases {
        run_put_case(case);
    }
}

#[test]
fn put_refuses_requests_that_cannot_succeed() {
    let request = |targets_spec: &str, quorum: Quorum, context: Option<ClientContext>| PutRequest {
        key: b"cart".to_vec(),
        context,
        value: data("x"),
        coordinator: "a".into(),
        actor: Actor::new("a#1"),
        targets: targets(targets_spec),
        stand_ins: StandIns::default(),
        quorum,
        timeout_ms: 100,
        supersede_local: false,
    };
    let cases = vec![
        (
            request("b c d", Quorum::default(), None),
            QuorumError::NotACoordinator {
                coordinator: "a".into(),
            },
        ),
        (
            request("a", Quorum::default(), None),
            QuorumError::Unavailable {
                available: 1,
                required: 2,
            },
        ),
        (
            request(
                "a d>b e>c",
                Quorum {
                    pw: 2,
                    ..Quorum::default()
                },
                None,
            ),
            QuorumError::Unavailable {
                available: 1,
                required: 2,
            },
        ),
        (
            request(
                "a b c",
                Quorum::default(),
                Some(ClientContext::new(b"other key", VClock::new())),
            ),
            QuorumError::ContextForAnotherKey,
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(PutCoordinator::new(0, request).err(), Some(expected));
    }
}

/// A restore's merge (issue 29): no local read and no new dot; the versions are joined into
/// the coordinator's copy durably, and what the store then holds goes to the other targets
/// (a fallback with its hint, a spare for a failed target), answered after W.
#[test]
fn a_merge_joins_the_versions_and_replicates_what_is_stored() {
    let backed_up = written(&Object::empty(), "old#1", data("kept"), 1);
    let stored = written(&backed_up, "a#1", data("newer"), 2).sync(&written(
        &Object::empty(),
        "b#1",
        data("sibling"),
        3,
    ));
    let merge = |spec: &str, quorum: Quorum, object: Object| {
        let (targets, stand_ins) = placement(spec);
        PutCoordinator::merge(
            0,
            MergeRequest {
                key: b"cart".to_vec(),
                object,
                coordinator: "a".into(),
                targets,
                stand_ins,
                quorum,
                timeout_ms: 100,
            },
        )
    };
    let mut put = merge("a b d>c | e", Quorum::new(3, 2, 2), backed_up.clone()).expect("merge");
    assert_eq!(drain(|| put.poll_command()), ["read-local"]);
    put.handle_local_read(1, Ok(Some(stored.clone())));
    assert_eq!(drain(|| put.poll_command()), ["sync-local [kept]"]);
    put.handle_local_write(1, Ok(stored.clone()));
    assert_eq!(
        drain(|| put.poll_command()),
        ["write b [newer,sibling]", "write d hint=c [newer,sibling]"]
    );
    put.handle_reply(2, &"b".into(), failed("disk full"));
    assert_eq!(
        drain(|| put.poll_command()),
        ["write e hint=b [newer,sibling]"]
    );
    put.handle_reply(3, &"e".into(), written_ok());
    assert_eq!(drain(|| put.poll_command()), ["put ok acks=2"]);

    // 60 siblings here and 60 in the backup: the join would pass the limit.
    let sixty = |prefix: &str| {
        (0..60).fold(Object::empty(), |set, i| {
            set.sync(&written(
                &Object::empty(),
                &format!("{prefix}{i}"),
                data("s"),
                i,
            ))
        })
    };
    let mut crowded = merge("a b c", Quorum::default(), sixty("backup")).expect("merge");
    drain(|| crowded.poll_command());
    crowded.handle_local_read(1, Ok(Some(sixty("here"))));
    assert_eq!(
        drain(|| crowded.poll_command()),
        [
            "put err the write would leave 120 siblings (limit 100); read the key, resolve its siblings and write with the context"
        ]
    );
    let refusals = [
        (
            merge("b c d", Quorum::default(), backed_up.clone()).err(),
            QuorumError::NotACoordinator {
                coordinator: "a".into(),
            },
        ),
        (
            merge("a", Quorum::default(), backed_up).err(),
            QuorumError::Unavailable {
                available: 1,
                required: 2,
            },
        ),
    ];
    for (refused, expected) in refusals {
        assert_eq!(refused, Some(expected));
    }
}

/// Riak's sibling explosion guard: warn above 25 siblings, refuse a write that would pass 100.
#[test]
fn sibling_limits() {
    let mut crowded = Object::empty();
    for i in 0..100 {
        crowded = crowded.sync(&written(&Object::empty(), &format!("w{i}"), data("s"), i));
    }
    assert_eq!(crowded.len(), 100);
    let mut few = Object::empty();
    for i in 0..30 {
        few = few.sync(&written(&Object::empty(), &format!("w{i}"), data("s"), i));
    }
    let cases = vec![
        Case {
            name: "a blind write onto 100 siblings is refused before anything is written",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: vec![(
                Step::LocalRead(Some(crowded)),
                vec![
                    "put err the write would leave 101 siblings (limit 100); read the key, resolve its siblings and write with the context",
                ],
            )],
        },
        Case {
            name: "a write leaving 31 siblings succeeds with a warning",
            quorum: Quorum::new(3, 1, 1),
            targets: "a",
            steps: vec![
                (Step::LocalRead(Some(few)), vec!["write-local new"]),
                (Step::LocalWrite, vec!["put ok acks=1 [ManySiblings(31)]"]),
            ],
        },
    ];
    for case in &cases {
        run_put_case(case);
    }
}

/// Issue 14, last write wins: a blind write in an `lww` bucket supersedes every version its
/// coordinator holds, so 100 siblings do not refuse it and the store keeps only the new value
/// (without the flag, the same write is refused above).
#[test]
fn a_last_write_wins_put_supersedes_what_the_coordinator_holds() {
    let mut crowded = Object::empty();
    for i in 0..100 {
        crowded = crowded.sync(&written(&Object::empty(), &format!("w{i}"), data("s"), i));
    }
    let mut put = PutCoordinator::new(
        0,
        PutRequest {
            key: b"cart".to_vec(),
            context: None,
            value: data("new"),
            coordinator: "a".into(),
            actor: Actor::new("a#1"),
            targets: targets("a"),
            stand_ins: StandIns::default(),
            quorum: Quorum::new(1, 1, 1),
            timeout_ms: 100,
            supersede_local: true,
        },
    )
    .expect("put");
    drain(|| put.poll_command());
    put.handle_local_read(1, Ok(Some(crowded.clone())));
    let Some(Command::WriteLocal { context, value, .. }) = put.poll_command() else {
        panic!("the write goes ahead");
    };
    let mut stored = crowded;
    stored.update(&context, &Actor::new("a#1"), value, 1);
    assert_eq!(stored.values().collect::<Vec<_>>(), vec![&data("new")]);
}

fn run_get_case(case: &Case) -> Vec<Vec<String>> {
    let (targets, stand_ins) = placement(case.targets);
    let request = GetRequest {
        key: b"cart".to_vec(),
        targets,
        stand_ins,
        quorum: case.quorum,
        timeout_ms: 100,
    };
    let mut get = GetCoordinator::new(0, request).expect(case.name);
    let mut all = vec![drain(|| get.poll_command())];
    for (i, (step, expected)) in case.steps.iter().enumerate() {
        match step.clone() {
            Step::Reply(from, reply) => get.handle_reply(5, &from.into(), reply),
            Step::Timeout(now) => get.handle_timeout(now),
            _ => unreachable!("gets have no local steps"),
        }
        let got = drain(|| get.poll_command());
        assert_eq!(got, *expected, "{} step {i}", case.name);
        all.push(got);
    }
    all
}

#[test]
fn get_tables() {
    let v1 = written(&Object::empty(), "a#1", data("v1"), 1);
    let v2 = written(&v1, "b#1", data("v2"), 2);
    let x = written(&Object::empty(), "a#1", data("x"), 1);
    let y = written(&Object::empty(), "b#1", data("y"), 1);
    let found = |o: &Object| ReplicaReply::Found(o.clone());
    let strict = Quorum {
        notfound_ok: false,
        ..Quorum::new(3, 2, 2)
    };
    let cases = vec![
        Case {
            name: "(3,2,2): answer after two replies, repair the replica that had nothing",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", found(&v1)), vec![]),
                (Step::Reply("b", found(&v1)), vec!["get ok [v1]"]),
                (
                    Step::Reply("c", ReplicaReply::NotFound),
                    vec!["write c [v1]"],
                ),
            ],
        },
        Case {
            name: "a dominated version is dropped and only the stale replica is repaired",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", found(&v2)), vec![]),
                (Step::Reply("b", found(&v1)), vec!["get ok [v2]"]),
                (Step::Reply("c", found(&v2)), vec!["write b [v2]"]),
            ],
        },
        Case {
            name: "4.6: a target silent past the delay is stood in for by a spare, which is never repaired",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c | d",
            steps: vec![
                (Step::Reply("a", found(&v1)), vec![]),
                (Step::Timeout(29), vec![]),
                (Step::Timeout(30), vec!["read d"]),
                (
                    Step::Reply("d", ReplicaReply::NotFound),
                    vec!["get ok [v1]"],
                ),
                (Step::Timeout(100), vec![]),
            ],
        },
        Case {
            name: "4.6: a failed target is replaced at once; the spare's hint is read",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c | d",
            steps: vec![
                (Step::Reply("b", failed("unreachable")), vec!["read d"]),
                (Step::Reply("a", found(&v1)), vec![]),
                (Step::Reply("d", found(&v2)), vec!["get ok [v2]"]),
                (Step::Reply("c", found(&v2)), vec!["write a [v2]"]),
            ],
        },
        Case {
            name: "concurrent versions come back as siblings and every replica gets both",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", found(&x)), vec![]),
                (Step::Reply("b", found(&y)), vec!["get ok [x,y]"]),
                (
                    Step::Reply("c", ReplicaReply::NotFound),
                    vec!["write a [x,y]", "write b [x,y]", "write c [x,y]"],
                ),
            ],
        },
        Case {
            name: "(3,1,*): the first reply answers",
            quorum: Quorum::new(3, 1, 1),
            targets: "a b c",
            steps: vec![
                (Step::Reply("c", found(&v1)), vec!["get ok [v1]"]),
                (Step::Reply("a", found(&v1)), vec![]),
                (Step::Reply("b", found(&v1)), vec![]),
            ],
        },
        Case {
            name: "(3,3,3): every replica must answer",
            quorum: Quorum::new(3, 3, 3),
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", found(&v1)), vec![]),
                (Step::Reply("b", found(&v1)), vec![]),
                (
                    Step::Reply("c", found(&v2)),
                    vec!["get ok [v2]", "write a [v2]", "write b [v2]"],
                ),
            ],
        },
        Case {
            name: "notfound_ok: two not-founds are a quorum for 'not found'",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", ReplicaReply::NotFound), vec![]),
                (
                    Step::Reply("b", ReplicaReply::NotFound),
                    vec!["get notfound"],
                ),
                (
                    Step::Reply("c", found(&v1)),
                    vec!["write a [v1]", "write b [v1]"],
                ),
            ],
        },
        Case {
            name: "notfound_ok = false: a not-found does not count, the found replies do",
            quorum: strict,
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", ReplicaReply::NotFound), vec![]),
                (Step::Reply("b", found(&v1)), vec![]),
                (
                    Step::Reply("c", found(&v1)),
                    vec!["get ok [v1]", "write a [v1]"],
                ),
            ],
        },
        Case {
            name: "notfound_ok = false, all not found: not found once R is out of reach",
            quorum: strict,
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", ReplicaReply::NotFound), vec![]),
                (
                    Step::Reply("b", ReplicaReply::NotFound),
                    vec!["get notfound"],
                ),
                (Step::Reply("c", ReplicaReply::NotFound), vec![]),
            ],
        },
        Case {
            name: "basic_quorum: a majority of not-founds answers 'not found' early",
            quorum: Quorum {
                basic_quorum: true,
                ..strict
            },
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", ReplicaReply::NotFound), vec![]),
                (
                    Step::Reply("b", ReplicaReply::NotFound),
                    vec!["get notfound"],
                ),
            ],
        },
        Case {
            name: "basic_quorum: a failed replica is not a not-found (Riak's get FSM): an error",
            quorum: Quorum {
                basic_quorum: true,
                ..strict
            },
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", failed("unreachable")), vec![]),
                (
                    Step::Reply("b", ReplicaReply::NotFound),
                    vec!["get err only 0 of 2 required replicas answered: a (unreachable)"],
                ),
            ],
        },
        Case {
            name: "without basic_quorum the same replies are an error: R is out of reach",
            quorum: strict,
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", failed("unreachable")), vec![]),
                (
                    Step::Reply("b", ReplicaReply::NotFound),
                    vec!["get err only 0 of 2 required replicas answered: a (unreachable)"],
                ),
            ],
        },
        Case {
            name: "failures: fail fast when R can no longer be reached",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", failed("unreachable")), vec![]),
                (
                    Step::Reply("b", failed("timeout")),
                    vec![
                        "get err only 0 of 2 required replicas answered: a (unreachable), b (timeout)",
                    ],
                ),
                (Step::Reply("c", found(&v1)), vec![]),
            ],
        },
        Case {
            name: "fallbacks: a stale fallback is repaired with its hint",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b d>c",
            steps: vec![
                (Step::Reply("a", found(&v2)), vec![]),
                (
                    Step::Reply("d", ReplicaReply::NotFound),
                    vec!["get ok [v2]"],
                ),
                (Step::Reply("b", found(&v2)), vec!["write d hint=c [v2]"]),
            ],
        },
        Case {
            name: "PR=2 with a fallback: wait for a second primary",
            quorum: Quorum {
                pr: 2,
                ..Quorum::new(3, 2, 2)
            },
            targets: "a b d>c",
            steps: vec![
                (Step::Reply("d", found(&v1)), vec![]),
                (Step::Reply("a", found(&v1)), vec![]),
                (Step::Reply("b", found(&v1)), vec!["get ok [v1]"]),
            ],
        },
        Case {
            name: "PR=3 above R=2 (as Riak allows): the get waits for max(R, PR) = 3 primaries",
            quorum: Quorum {
                pr: 3,
                ..Quorum::new(3, 2, 2)
            },
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", found(&v1)), vec![]),
                (Step::Reply("b", found(&v1)), vec![]),
                (Step::Reply("c", found(&v1)), vec!["get ok [v1]"]),
            ],
        },
        Case {
            name: "timeout before R: fail, and repair with the replies that came",
            quorum: Quorum::new(3, 3, 2),
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", found(&v2)), vec![]),
                (Step::Reply("b", found(&v1)), vec![]),
                (
                    Step::Timeout(100),
                    vec![
                        "get err timed out after 100 ms with 2 of 3 replicas answered",
                        "write b [v2]",
                    ],
                ),
                (Step::Reply("c", found(&v1)), vec![]),
            ],
        },
        Case {
            name: "timeout after R: only the repair",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", found(&v2)), vec![]),
                (
                    Step::Reply("b", ReplicaReply::NotFound),
                    vec!["get ok [v2]"],
                ),
                (Step::Timeout(100), vec!["write b [v2]"]),
            ],
        },
        Case {
            name: "duplicates and unsolicited replies do not count",
            quorum: Quorum::new(3, 2, 2),
            targets: "a b c",
            steps: vec![
                (Step::Reply("a", found(&v1)), vec![]),
                (Step::Reply("a", found(&v2)), vec![]),
                (Step::Reply("x", found(&v2)), vec![]),
                (Step::Reply("b", found(&v1)), vec!["get ok [v1]"]),
            ],
        },
    ];
    for case in &cases {
        let all = run_get_case(case);
        let reads = &all[0];
        assert_eq!(reads.len(), placement(case.targets).0.len());
        assert!(reads.iter().all(|r| r.starts_with("read ")));
    }
}

/// A reap case: name, the time of the replies, the replies, the commands expected.
type ReapCase = (
    &'static str,
    u64,
    Vec<(&'static str, ReplicaReply)>,
    Vec<&'static str>,
);

/// Deletes are tombstones written like a put, and reaping needs every primary to hold the same
/// old tombstone and every other node (here `d`) to hold no hint or unsent copy of the key.
#[test]
fn reap_tables() {
    let live = written(&Object::empty(), "a#1", data("v1"), 1);
    let tomb = written(&live, "a#1", Value::Tombstone, 10);
    let other_tomb = written(&live, "b#1", Value::Tombstone, 10);
    let found = |o: &Object| ReplicaReply::Found(o.clone());
    let cases: Vec<ReapCase> = vec![
        (
            "every primary holds the same old tombstone: reap",
            1_000,
            vec![
                ("a", found(&tomb)),
                ("b", found(&tomb)),
                ("c", found(&tomb)),
                ("d", ReplicaReply::NotFound),
                ("a", ReplicaReply::Reaped(true)),
                ("b", ReplicaReply::Reaped(true)),
                ("c", ReplicaReply::Reaped(true)),
            ],
            vec!["reap a", "reap b", "reap c", "reap Reaped"],
        ),
        (
            // Riak's anomaly: reaped while a fallback held a hint of the old value, which its
            // delivery brought back. The hint keeps the tombstone.
            "a fallback still holds a hint of the key",
            1_000,
            vec![
                ("d", found(&live)),
                ("a", found(&tomb)),
                ("b", found(&tomb)),
                ("c", found(&tomb)),
            ],
            vec![
                "reap Kept(\"d still holds versions of the key (a hint or a copy not handed off yet)\")",
            ],
        ),
        (
            "another node cannot say what it holds",
            1_000,
            vec![
                ("a", found(&tomb)),
                ("b", found(&tomb)),
                ("c", found(&tomb)),
                ("d", failed("unreachable")),
            ],
            vec!["reap Kept(\"d failed: unreachable\")"],
        ),
        (
            "the primaries agree but another node has not answered yet",
            1_000,
            vec![
                ("a", found(&tomb)),
                ("b", found(&tomb)),
                ("c", found(&tomb)),
            ],
            vec![],
        ),
        (
            "a write raced the reap on one primary",
            1_000,
            vec![
                ("a", found(&tomb)),
                ("b", found(&tomb)),
                ("c", found(&tomb)),
                ("d", ReplicaReply::NotFound),
                ("a", ReplicaReply::Reaped(true)),
                ("b", ReplicaReply::Reaped(false)),
                ("c", ReplicaReply::Reaped(true)),
            ],
            vec![
                "reap a",
                "reap b",
                "reap c",
                "reap Kept(\"a write raced the reap on some primary\")",
            ],
        ),
        (
            "a primary without the tombstone",
            1_000,
            vec![("a", found(&tomb)), ("b", ReplicaReply::NotFound)],
            vec!["reap Kept(\"b does not hold the tombstone\")"],
        ),
        (
            "primaries disagree",
            1_000,
            vec![
                ("a", found(&tomb)),
                ("b", found(&other_tomb)),
                ("c", found(&tomb)),
                ("d", ReplicaReply::NotFound),
            ],
            vec!["reap Kept(\"primaries hold different versions\")"],
        ),
        (
            "a live value",
            1_000,
            vec![
                ("a", found(&live)),
                ("b", found(&live)),
                ("c", found(&live)),
                ("d", ReplicaReply::NotFound),
            ],
            vec!["reap Kept(\"the key has live values\")"],
        ),
        (
            "a young tombstone",
            50,
            vec![
                ("a", found(&tomb)),
                ("b", found(&tomb)),
                ("c", found(&tomb)),
                ("d", ReplicaReply::NotFound),
            ],
            vec!["reap Kept(\"the tombstone is younger than the grace period\")"],
        ),
        (
            "a failing primary",
            1_000,
            vec![("a", found(&tomb)), ("c", failed("unreachable"))],
            vec!["reap Kept(\"c failed: unreachable\")"],
        ),
    ];
    for (name, now, replies, expected) in cases {
        let mut reap = ReapCoordinator::new(
            0,
            ReapRequest {
                key: b"cart".to_vec(),
                primaries: vec!["a".into(), "b".into(), "c".into()],
                others: vec!["d".into()],
                grace_ms: 100,
                timeout_ms: 10_000,
            },
        );
        assert_eq!(
            drain(|| reap.poll_command()),
            [
                "read-synced a",
                "read-synced b",
                "read-synced c",
                "holdings d"
            ]
        );
        let mut got = Vec::new();
        for (from, reply) in replies {
            reap.handle_reply(now, &from.into(), reply);
            got.extend(drain(|| reap.poll_command()));
        }
        assert_eq!(got, expected, "{name}");
        assert_eq!(reap.is_finished(), !expected.is_empty(), "{name}");
    }
}

/// A delete is a put of a tombstone with the read's context: it supersedes what was read, and
/// a get afterwards says "not found" but still returns the tombstone's context.
#[test]
fn delete_is_a_tombstone_that_supersedes_what_was_read() {
    let v1 = written(&Object::empty(), "a#1", data("v1"), 1);
    let request = PutRequest {
        key: b"cart".to_vec(),
        context: Some(ClientContext::new(b"cart", v1.context())),
        value: Value::Tombstone,
        coordinator: "a".into(),
        actor: Actor::new("a#1"),
        targets: targets("a b c"),
        stand_ins: StandIns::default(),
        quorum: Quorum::new(3, 2, 2),
        timeout_ms: 100,
        supersede_local: false,
    };
    let mut delete = PutCoordinator::new(0, request).unwrap();
    assert_eq!(drain(|| delete.poll_command()), ["read-local"]);
    delete.handle_local_read(1, Ok(Some(v1.clone())));
    let Some(Command::WriteLocal { context, value, .. }) = delete.poll_command() else {
        panic!("expected the local write");
    };
    let mut stored = v1.clone();
    stored.update(&context, &Actor::new("a#1"), value, 2);
    assert_eq!(describe_object(&stored), "[<tombstone>]");
    delete.handle_local_write(2, Ok(stored.clone()));
    delete.handle_reply(3, &"b".into(), ReplicaReply::Written);
    let commands = drain(|| delete.poll_command());
    assert_eq!(commands.last().map(String::as_str), Some("put ok acks=2"));

    let mut get = GetCoordinator::new(
        0,
        GetRequest {
            key: b"cart".to_vec(),
            targets: targets("a b c"),
            stand_ins: StandIns::default(),
            quorum: Quorum::new(3, 2, 2),
            timeout_ms: 100,
        },
    )
    .unwrap();
    drain(|| get.poll_command());
    get.handle_reply(1, &"a".into(), ReplicaReply::Found(stored.clone()));
    get.handle_reply(1, &"b".into(), ReplicaReply::Found(stored.clone()));
    let Some(Command::Respond(Response::Get(Ok(ok)))) = get.poll_command() else {
        panic!("expected an answer");
    };
    assert!(!ok.found());
    assert!(ok.values().is_empty());
    assert_eq!(ok.context(), stored.context());
}

/// Issue 11, retried writes: a write carries a write id kept by its retries. A coordinator that
/// already holds the write makes no new version; a read shows a write once however many dots
/// it got; and a write whose context saw one copy of a write supersedes its other copies too,
/// unless that would also cover a different value of the same actor.
#[test]
fn retried_writes_are_one_write() {
    let retried = |text: &str| Value::data(text.as_bytes().to_vec(), Some(WriteId(7)));
    // The first attempt coordinated by x, the retry by y: two dots of one write.
    let first = written(&Object::empty(), "x#1", retried("book"), 1);
    let both = first.sync(&written(&Object::empty(), "y#1", retried("book"), 2));
    // x also coordinated a concurrent blind write of another value after the first attempt.
    let mut with_other = both.clone();
    with_other.update(&VClock::new(), &Actor::new("x#1"), data("pen"), 3);
    assert_eq!(describe_object(&with_other), "[book#7,book#7,pen]");
    let put = |value: Value, context: Option<&Object>| {
        PutCoordinator::new(
            0,
            PutRequest {
                key: b"cart".to_vec(),
                context: context.map(|o| ClientContext::new(b"cart", o.context())),
                value,
                coordinator: "a".into(),
                actor: Actor::new("a#1"),
                targets: targets("a b c"),
                stand_ins: StandIns::default(),
                quorum: Quorum::new(3, 2, 2),
                timeout_ms: 100,
                supersede_local: false,
            },
        )
        .unwrap()
    };

    // A retry reaching a coordinator that holds the write: no new version; the held set is
    // made durable (it may be a buffered replica copy), then sent.
    let mut retry = put(retried("book"), None);
    drain(|| retry.poll_command());
    retry.handle_local_read(1, Ok(Some(first.clone())));
    assert_eq!(drain(|| retry.poll_command()), ["sync-local [book#7]"]);
    retry.handle_local_write(1, Ok(first.clone()));
    assert_eq!(
        drain(|| retry.poll_command()),
        ["write b [book#7]", "write c [book#7]"]
    );

    // Readers see it once.
    assert_eq!(dynamo_quorum::live_values(&both), vec![b"book".as_slice()]);

    // (stored, what the client's context saw, whether x's copy must be covered)
    let y_only = written(&Object::empty(), "y#1", retried("book"), 2);
    let cases = [
        ("the other copy is covered", &both, &y_only, true),
        ("x also holds another value", &with_other, &y_only, false),
    ];
    for (name, stored, seen, covered) in cases {
        let mut next = put(data("lamp"), Some(seen));
        drain(|| next.poll_command());
        next.handle_local_read(1, Ok(Some(stored.clone())));
        let Some(Command::WriteLocal { context, .. }) = next.poll_command() else {
            panic!("{name}: expected the local write");
        };
        let x = Actor::new("x#1");
        assert_eq!(
            context.get(&x) >= stored.context().get(&x),
            covered,
            "{name}"
        );
    }
}

/// Issue 25's checker found deletes undone: a put the client gave up on (its node was slow
/// and the retry elsewhere was acknowledged) reached its coordinator after the delete, and came
/// back as a sibling of the tombstone. A delete names the writes it superseded; a late copy of
/// one is no new version where the delete is held, and reads as deleted beside it elsewhere.
#[test]
fn a_late_copy_of_a_deleted_write_stays_deleted() {
    let retried = |text: &str| Value::data(text.as_bytes().to_vec(), Some(WriteId(7)));
    let request = |value: Value, context: Option<&Object>| PutRequest {
        key: b"cart".to_vec(),
        context: context.map(|o| ClientContext::new(b"cart", o.context())),
        value,
        coordinator: "a".into(),
        actor: Actor::new("a#1"),
        targets: targets("a b c"),
        stand_ins: StandIns::default(),
        quorum: Quorum::new(3, 2, 2),
        timeout_ms: 100,
        supersede_local: false,
    };
    let put = written(&Object::empty(), "y#1", retried("book"), 1);

    // The delete of what the put's context covers names the put's write.
    let mut delete = PutCoordinator::new(0, request(Value::Tombstone, Some(&put))).unwrap();
    drain(|| delete.poll_command());
    delete.handle_local_read(1, Ok(Some(put.clone())));
    assert_eq!(
        drain(|| delete.poll_command()),
        ["write-local <deleted #7>"]
    );
    let deleted = written(
        &put,
        "a#1",
        Value::Deleted {
            superseded: vec![WriteId(7)],
        },
        2,
    );

    // A blind delete of something written without an id stays a plain tombstone.
    let plain = written(&Object::empty(), "y#1", data("pen"), 1);
    let mut blind = PutCoordinator::new(0, request(Value::Tombstone, Some(&plain))).unwrap();
    drain(|| blind.poll_command());
    blind.handle_local_read(1, Ok(Some(plain)));
    assert_eq!(drain(|| blind.poll_command()), ["write-local <tombstone>"]);

    // The late copy, where the delete is held: no new version; the delete goes out again.
    let mut late = PutCoordinator::new(0, request(retried("book"), None)).unwrap();
    drain(|| late.poll_command());
    late.handle_local_read(3, Ok(Some(deleted.clone())));
    assert_eq!(drain(|| late.poll_command()), ["sync-local [<deleted #7>]"]);
    late.handle_local_write(3, Ok(deleted.clone()));
    assert_eq!(
        drain(|| late.poll_command()),
        ["write b [<deleted #7>]", "write c [<deleted #7>]"]
    );

    // The late copy coordinated where the delete had not arrived yet: a concurrent sibling,
    // which reads as deleted once the two meet; another write stays.
    let elsewhere = written(&Object::empty(), "z#1", retried("book"), 3);
    let met = deleted.sync(&elsewhere);
    assert_eq!(describe_object(&met), "[<deleted #7>,book#7]");
    assert!(dynamo_quorum::is_deleted(&met));
    assert!(dynamo_quorum::live_values(&met).is_empty());
    let other = written(&Object::empty(), "z#1", data("pen"), 3);
    let with_other = deleted.sync(&other);
    assert!(!dynamo_quorum::is_deleted(&with_other));
    assert_eq!(
        dynamo_quorum::live_values(&with_other),
        vec![b"pen".as_slice()]
    );

    // `cargo xtask chaos`, one-way loss: the client sent the write to two coordinators (y and
    // a), y answered first, and the delete with y's context reached a, which holds only its own
    // copy. The token names the write, so a's copy is superseded and the delete names it.
    let own_copy = written(&Object::empty(), "a#1", retried("book"), 1);
    let token = ClientContext::of_object(b"cart", &put);
    assert_eq!(token.writes, vec![WriteId(7)]);
    let mut with_token = request(Value::Tombstone, None);
    with_token.context = Some(token);
    let mut delete = PutCoordinator::new(0, with_token).unwrap();
    drain(|| delete.poll_command());
    delete.handle_local_read(1, Ok(Some(own_copy.clone())));
    let Some(Command::WriteLocal { context, value, .. }) = delete.poll_command() else {
        panic!("the delete goes ahead");
    };
    assert_eq!(
        value,
        Value::Deleted {
            superseded: vec![WriteId(7)]
        }
    );
    let mut after = own_copy;
    after.update(&context, &Actor::new("a#1"), value, 2);
    assert_eq!(describe_object(&after), "[<deleted #7>]");
}
