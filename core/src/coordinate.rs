//! The quorum coordinators the core runs (paper 4.5): a client's get or put, and the reaper's
//! removals, each a `dynamo-quorum` machine whose commands become store operations here and
//! calls to the key's other replicas, until it answers.
//!
//! This module must not know how a coordinator decides (that is `dynamo-quorum`'s) nor how its
//! commands are carried out.

use dynamo_quorum::{
    ClientContext, Command, Coordinate, GetCoordinator, Object, PutCoordinator, QuorumError,
    ReapCoordinator, ReplicaReply, ReplicaRequest,
};
use dynamo_resolve::Resolver;
use dynamo_ring::NodeId;
use dynamo_storage::Durability;

use dynamo_protocol::{ErrorKind, GetReply, PutReply, Request, Response};

use super::serve::replica_op;
use super::{
    CallError, CoordinatorId, NodeCore, PEER_TIMEOUT_MS, RequestId, StoreError, StoreOp,
    StoreResult, Time, failed, internal,
};

/// What a coordinator's call to a replica answers.
#[derive(Debug)]
pub(super) enum AfterCall {
    /// A replica request sent to the peer `from`.
    Reply {
        coordinator: CoordinatorId,
        from: NodeId,
    },
}

/// What a coordinator's store operation answers.
#[derive(Debug)]
pub(super) enum AfterStore {
    /// Its `ReadLocal`.
    Read(CoordinatorId),
    /// Its `WriteLocal`.
    Write(CoordinatorId),
    /// A fallback coordinator's copy of its write, kept as a hint for the primary it stands in
    /// for; the write is reported to the coordinator once the hint is stored.
    Hint {
        coordinator: CoordinatorId,
        written: Object,
    },
    /// A replica request to this node (`from` is this node).
    Reply {
        coordinator: CoordinatorId,
        from: NodeId,
    },
}

/// A quorum machine the core runs.
pub(super) enum Machine {
    Put(PutCoordinator),
    Get(GetCoordinator),
    /// A tombstone reap the core started itself (no client waits for it).
    Reap(ReapCoordinator),
}

impl Machine {
    /// The coordinator behind the variant, for the inputs and outputs all three share.
    fn coordinator(&mut self) -> &mut dyn Coordinate {
        match self {
            Machine::Put(m) => m,
            Machine::Get(m) => m,
            Machine::Reap(m) => m,
        }
    }
}

/// A running coordinator and whom it answers.
pub(super) struct Coordinator {
    pub(super) machine: Machine,
    pub(super) partition: u32,
    /// The client's request; read repair goes on after it is answered.
    pub(super) request: RequestId,
    /// The storage key (contexts are bound to it).
    pub(super) key: Vec<u8>,
    /// Primaries that were down when it started, named in availability errors.
    pub(super) down: Vec<NodeId>,
    /// Its deadline in `coordinator_timers`.
    pub(super) deadline: Option<Time>,
    /// When it started, to measure foreground latency.
    pub(super) started: Time,
    /// Set when this node coordinates a put as a fallback: the primary it stands in for, whose
    /// hint must hold the coordinator's own copy (else that copy would stay in this node's
    /// main store, where no read or handoff looks for it).
    pub(super) hint_for: Option<NodeId>,
    /// How the bucket resolves a get's siblings for the client.
    pub(super) resolver: Resolver,
    /// Whether its client was answered (a reap has none: it counts as answered).
    pub(super) answered: bool,
}

impl Coordinator {
    /// A coordinator of the core's own (a reap): nobody waits for its answer.
    pub(super) fn background(machine: Machine, partition: u32, key: Vec<u8>, now: Time) -> Self {
        Self {
            machine,
            partition,
            request: RequestId(u64::MAX),
            key,
            down: Vec::new(),
            deadline: None,
            started: now,
            hint_for: None,
            resolver: Resolver::Siblings,
            answered: true,
        }
    }
}

/// The error reply for a failed quorum operation; availability errors name the primaries down.
pub(super) fn quorum_error(error: &QuorumError, down: &[NodeId]) -> Response {
    let kind = match error {
        QuorumError::NotEnoughReplicas { .. } | QuorumError::Unavailable { .. } => {
            ErrorKind::Unavailable
        }
        QuorumError::Timeout { .. } => ErrorKind::Timeout,
        QuorumError::Config(_)
        | QuorumError::ContextForAnotherKey
        | QuorumError::TooManySiblings { .. } => ErrorKind::BadRequest,
        QuorumError::NotACoordinator { .. } | QuorumError::Local(_) => ErrorKind::Internal,
    };
    let mut message = error.to_string();
    if matches!(kind, ErrorKind::Unavailable | ErrorKind::Timeout) && !down.is_empty() {
        let names: Vec<&str> = down.iter().map(NodeId::as_str).collect();
        message.push_str("; down: ");
        message.push_str(&names.join(", "));
    }
    Response::error(kind, message)
}

impl NodeCore {
    pub(super) fn start_coordinator(&mut self, now: Time, coordinator: Coordinator) {
        let id = CoordinatorId(self.next_id().0);
        self.coordinators.insert(id, Box::new(coordinator));
        self.with_coordinator(now, id, |_| {});
    }

    /// Feeds a replica's reply to a coordinator.
    pub(super) fn coordinator_reply(
        &mut self,
        now: Time,
        id: CoordinatorId,
        from: &NodeId,
        reply: ReplicaReply,
    ) {
        self.with_coordinator(now, id, |machine| {
            machine
                .coordinator()
                .handle_reply(now.as_millis(), from, reply);
        });
    }

    pub(super) fn coordinator_timeout(&mut self, now: Time, id: CoordinatorId) {
        self.with_coordinator(now, id, |machine| {
            machine.coordinator().handle_timeout(now.as_millis());
        });
    }

    /// Gives coordinator `id` an input, then carries out its commands until it waits again.
    pub(super) fn with_coordinator(
        &mut self,
        now: Time,
        id: CoordinatorId,
        input: impl FnOnce(&mut Machine),
    ) {
        let Some(mut coordinator) = self.coordinators.remove(&id) else {
            return; // finished already: a late reply
        };
        if let Some(deadline) = coordinator.deadline.take() {
            self.coordinator_timers.remove(&(deadline, id));
        }
        input(&mut coordinator.machine);
        while let Some(command) = coordinator.machine.coordinator().poll_command() {
            match command {
                Command::ReadLocal { key } => {
                    let op = StoreOp::Get {
                        partition: coordinator.partition,
                        key,
                    };
                    self.store(op, AfterStore::Read(id));
                }
                Command::WriteLocal {
                    key,
                    context,
                    value,
                } => {
                    // The coordinator's copy is the durable one (paper 6.1).
                    let op = StoreOp::Update {
                        partition: coordinator.partition,
                        key,
                        context,
                        value,
                        now,
                        durability: Durability::Sync,
                    };
                    self.store(op, AfterStore::Write(id));
                }
                Command::SyncLocal { key, object } => {
                    // A retry found its write here: merging the held set back with an fsync
                    // makes it durable before it is acknowledged (it may have come buffered).
                    let op = StoreOp::Apply {
                        partition: coordinator.partition,
                        key,
                        object,
                        durability: Durability::Sync,
                    };
                    self.store(op, AfterStore::Write(id));
                }
                Command::Send { to, request } => {
                    if matches!(coordinator.machine, Machine::Get(_))
                        && matches!(request, ReplicaRequest::Write { .. })
                    {
                        self.counters.read_repairs += 1;
                    }
                    let partition = coordinator.partition;
                    if to == self.me {
                        let fallback = self.is_fallback_for(partition);
                        let op = replica_op(
                            partition,
                            request,
                            self.config.replica_durability,
                            fallback,
                        );
                        let then = AfterStore::Reply {
                            coordinator: id,
                            from: to,
                        };
                        self.store(op, then);
                    } else if let Some(address) = self.address_of(&to) {
                        // Not `self.call`: an unknown address must fail here, while this
                        // coordinator is out of the table, not through a re-entrant answer.
                        let call = self.next_id();
                        let then = AfterCall::Reply {
                            coordinator: id,
                            from: to,
                        };
                        self.await_call(call, then.into());
                        self.outputs.push_back(super::Output::Call {
                            id: Some(call),
                            address,
                            request: Request::Replica { partition, request },
                            timeout_ms: PEER_TIMEOUT_MS,
                        });
                    } else {
                        let reply = failed(format!("the address of {to} is unknown"));
                        coordinator
                            .machine
                            .coordinator()
                            .handle_reply(now.as_millis(), &to, reply);
                    }
                }
                Command::Respond(dynamo_quorum::Response::Reap(outcome)) => {
                    self.reap_finished(now, outcome);
                }
                Command::Respond(response) => {
                    // Stand-ins happen only before the client is answered.
                    self.counters.stand_ins += coordinator.machine.coordinator().stand_ins() as u64;
                    let latency = now.saturating_since(coordinator.started);
                    self.anti_entropy.observe_client(now, latency);
                    let answer = self.client_answer(&coordinator, response);
                    if let Response::Error(error) = &answer
                        && matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
                    {
                        self.counters.quorum_failures += 1;
                    }
                    coordinator.answered = true;
                    self.respond(coordinator.request, answer);
                }
            }
        }
        if coordinator.machine.coordinator().is_finished() {
            // A coordinator answers before it finishes (a reap reports its outcome). Should one
            // not, that is a bug of the quorum machine, and its client still gets an answer.
            if !coordinator.answered {
                let message = "the coordinator stopped without an answer";
                self.bug(format!("{message} (request {:?})", coordinator.request));
                self.respond(coordinator.request, internal(message));
            }
            return;
        }
        coordinator.deadline = coordinator
            .machine
            .coordinator()
            .poll_timeout()
            .map(Time::from_millis);
        if let Some(deadline) = coordinator.deadline {
            self.coordinator_timers.insert((deadline, id));
        }
        self.coordinators.insert(id, coordinator);
    }

    /// What a get answers when the replicas asked hold `object` (`None`: none holds the key):
    /// the data siblings with the bucket's resolution of them, or not found (never written,
    /// or deleted), each with the sealed context of every version read.
    pub(super) fn get_answer(
        &self,
        key: &[u8],
        object: Option<&Object>,
        resolver: Resolver,
    ) -> Response {
        let context = object.map_or_else(
            || ClientContext::new(key, dynamo_vclock::VClock::new()),
            |object| ClientContext::of_object(key, object),
        );
        let context = self.seal(&context);
        match object {
            Some(object) if !dynamo_quorum::is_deleted(object) => Response::Get(GetReply {
                values: dynamo_quorum::live_values(object)
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect(),
                context,
                deleted: false,
                resolution: dynamo_resolve::resolve(resolver, object).map(Box::new),
            }),
            _ => Response::NotFound { context },
        }
    }

    /// The protocol answer for a coordinator's response.
    fn client_answer(
        &self,
        coordinator: &Coordinator,
        response: dynamo_quorum::Response,
    ) -> Response {
        let key = &coordinator.key;
        match response {
            dynamo_quorum::Response::Get(Ok(ok)) => {
                self.get_answer(key, ok.object.as_ref(), coordinator.resolver)
            }
            dynamo_quorum::Response::Put(Ok(ok)) => Response::Put(PutReply {
                context: self.seal(&ClientContext::of_object(key, &ok.object)),
                acknowledged: ok.acknowledged,
                warnings: ok
                    .warnings
                    .iter()
                    .map(|w| match w {
                        dynamo_quorum::Warning::ManySiblings(n) => {
                            format!("the key has {n} siblings; read it and resolve them")
                        }
                    })
                    .collect(),
            }),
            dynamo_quorum::Response::Get(Err(error)) | dynamo_quorum::Response::Put(Err(error)) => {
                quorum_error(&error, &coordinator.down)
            }
            dynamo_quorum::Response::Reap(_) => internal("a reap answered a client request"),
        }
    }
}

impl NodeCore {
    /// A replica's answer to a coordinator's call. Any answer but a replica reply (a peer
    /// of another version, a broken one) counts as that replica failing.
    pub(super) fn coordinator_call_answered(
        &mut self,
        now: Time,
        after: AfterCall,
        result: Result<Response, CallError>,
    ) {
        let AfterCall::Reply { coordinator, from } = after;
        let reply = match result {
            Ok(Response::Replica(reply)) => reply,
            Ok(other) => failed(format!("{from} answered a replica request with {other:?}")),
            Err(error) => failed(error.message),
        };
        self.coordinator_reply(now, coordinator, &from, reply);
    }

    /// A coordinator's store operation finished.
    pub(super) fn coordinator_store_done(
        &mut self,
        now: Time,
        after: AfterStore,
        result: Result<StoreResult, StoreError>,
    ) {
        match after {
            AfterStore::Read(coordinator) => {
                let read = match result {
                    Ok(StoreResult::Found(found)) => Ok(found),
                    Ok(other) => Err(self.wrong_kind("a coordinator's read", &other)),
                    Err(error) => Err(error.to_string()),
                };
                self.with_coordinator(now, coordinator, |machine| {
                    if let Machine::Put(put) = machine {
                        put.handle_local_read(now.as_millis(), read);
                    }
                });
            }
            AfterStore::Write(coordinator) => {
                let hint_for = self
                    .coordinators
                    .get(&coordinator)
                    .and_then(|c| Some((c.hint_for.clone()?, c.partition, c.key.clone())));
                if let (Some((owner, partition, key)), Ok(StoreResult::Stored(written))) =
                    (hint_for, &result)
                {
                    self.hint_stored();
                    let op = StoreOp::PutHint {
                        owner: owner.to_string(),
                        partition,
                        key,
                        object: written.clone(),
                        durability: Durability::Sync,
                    };
                    let then = AfterStore::Hint {
                        coordinator,
                        written: written.clone(),
                    };
                    return self.store(op, then);
                }
                let written = match result {
                    Ok(StoreResult::Stored(object)) => Ok(object),
                    Ok(other) => Err(self.wrong_kind("a coordinator's write", &other)),
                    Err(error) => Err(error.to_string()),
                };
                self.with_coordinator(now, coordinator, |machine| {
                    if let Machine::Put(put) = machine {
                        put.handle_local_write(now.as_millis(), written);
                    }
                });
            }
            AfterStore::Hint {
                coordinator,
                written,
            } => {
                let written = result.map(|_| written).map_err(|e| e.to_string());
                self.with_coordinator(now, coordinator, |machine| {
                    if let Machine::Put(put) = machine {
                        put.handle_local_write(now.as_millis(), written);
                    }
                });
            }
            AfterStore::Reply { coordinator, from } => {
                let reply = self.replica_reply(result);
                self.coordinator_reply(now, coordinator, &from, reply);
            }
        }
    }
}
