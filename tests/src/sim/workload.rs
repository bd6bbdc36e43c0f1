//! The simulated clients: each performs a number of operations one after another, against a
//! node picked at random (clients do not know which nodes are down): read-modify-write with the
//! context it read (paper 4.4), blind writes, deletes after a read, plain reads, and in some
//! runs listings of the bucket, page by page, while faults happen. A write
//! that fails or times out is retried up to twice, as a new attempt with a new value. Every
//! value is unique, so the checks can tell every write apart.
//!
//! This module must not know how nodes serve requests; it sees only answers.

use std::collections::BTreeMap;

use dynamo_protocol::{ListCursor, Request, RequestOptions, Response};
use dynamo_quorum::ClientContext;
use dynamo_vclock::VClock;
use rand::Rng;

use super::check::ReadResult;
use super::{Event, SIM_BUCKET, Sim};

/// How long a client waits for an answer before it gives up.
pub(super) const CLIENT_TIMEOUT_MS: u64 = 5_000;
/// Retries of a failed write.
const WRITE_RETRIES: u32 = 2;

/// What a client does after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Nothing,
    Write,
    Delete,
}

/// The request a client waits on.
#[derive(Debug, Clone)]
enum Step {
    Read {
        key: Vec<u8>,
        then: Then,
    },
    Write {
        key: Vec<u8>,
        delete: bool,
        context: Option<String>,
        retries_left: u32,
        write: usize,
    },
    /// A listing of the bucket, page by page: the keys so far, and where the next page starts.
    List {
        listed: Vec<Vec<u8>>,
        cursor: Option<ListCursor>,
    },
}

#[derive(Debug, Default)]
struct Client {
    ops_left: usize,
    waiting: Option<(u64, Step)>,
    written: u64,
}

/// Every client's state.
pub(super) struct Clients {
    each: Vec<Client>,
    keys: usize,
    next_attempt: u64,
    stopped: bool,
    /// Answers to administrator requests, by attempt.
    admin: BTreeMap<u64, Option<Response>>,
}

impl Clients {
    pub(super) fn new(count: usize, ops: usize, keys: usize) -> Clients {
        Clients {
            each: (0..count)
                .map(|_| Client {
                    ops_left: ops,
                    ..Client::default()
                })
                .collect(),
            keys: keys.max(1),
            next_attempt: 0,
            stopped: false,
            admin: BTreeMap::new(),
        }
    }

    /// The client number administrator requests use.
    pub(super) fn admin_slot(&self) -> usize {
        self.each.len()
    }

    /// A new administrator request; its answer is kept for [`Clients::take_admin_answer`].
    pub(super) fn begin_admin(&mut self) -> u64 {
        let attempt = self.attempt();
        self.admin.insert(attempt, None);
        attempt
    }

    pub(super) fn take_admin_answer(&mut self, attempt: u64) -> Option<Response> {
        match self.admin.get(&attempt) {
            Some(Some(_)) => self.admin.remove(&attempt).flatten(),
            _ => None,
        }
    }

    /// No client starts a new operation from now on.
    pub(super) fn stop_new_operations(&mut self) {
        self.stopped = true;
    }

    fn attempt(&mut self) -> u64 {
        self.next_attempt += 1;
        self.next_attempt
    }
}

fn context_clock(context: Option<&str>) -> VClock {
    context
        .and_then(|token| ClientContext::from_text(token).ok())
        .map(|c| c.clock)
        .unwrap_or_default()
}

impl Sim {
    pub(super) fn client_wake(&mut self, client: usize) {
        let clients = &mut self.clients;
        if clients.stopped || clients.each[client].ops_left == 0 {
            return;
        }
        let key = format!("k{}", self.rng.random_range(0..clients.keys)).into_bytes();
        let roll = self.rng.random_range(0..100);
        let step = match roll {
            0..35 => Step::Read {
                key,
                then: Then::Write,
            },
            35..60 => {
                let value = self.next_value(client);
                let write = self.history.begin_write(&key, Some(value), None);
                Step::Write {
                    key,
                    delete: false,
                    context: None,
                    retries_left: WRITE_RETRIES,
                    write,
                }
            }
            60..75 => Step::Read {
                key,
                then: Then::Delete,
            },
            // Only in runs with listings, so other runs draw as before.
            95.. if self.config.listing_mix => Step::List {
                listed: Vec::new(),
                cursor: None,
            },
            _ => Step::Read {
                key,
                then: Then::Nothing,
            },
        };
        self.send_step(client, step);
    }

    /// A unique value for `client`'s next write.
    fn next_value(&mut self, client: usize) -> Vec<u8> {
        let state = &mut self.clients.each[client];
        state.written += 1;
        format!("c{client}-{}", state.written).into_bytes()
    }

    /// The quorum a request asks for: the bucket's, or in a run with a quorum mix, now and
    /// then R = 1, W = 1 or W = 3 (drawn only in such runs, so other runs draw as before).
    fn request_options(&mut self, write: bool) -> RequestOptions {
        let mut options = RequestOptions::default();
        if !self.config.quorum_mix {
            return options;
        }
        match (write, self.rng.random_range(0..4)) {
            (false, 0) => options.r = Some(1),
            (true, 0) => options.w = Some(1),
            (true, 1) => options.w = Some(3),
            _ => {}
        }
        options
    }

    fn send_step(&mut self, client: usize, step: Step) {
        let options = self.request_options(matches!(step, Step::Write { .. }));
        let request = match &step {
            Step::Read { key, .. } => Request::Get {
                bucket: SIM_BUCKET.into(),
                key: key.clone(),
                options,
            },
            Step::Write {
                key,
                delete,
                context,
                write,
                ..
            } => Request::Put {
                bucket: SIM_BUCKET.into(),
                key: key.clone(),
                value: if *delete {
                    None
                } else {
                    self.history.value_of(*write)
                },
                context: context.clone(),
                options,
                forwarded: false,
                // One id per write, kept by its retries (as the client library does).
                write_id: Some(*write as u128 + 1),
            },
            Step::List { cursor, .. } => Request::ListKeys {
                bucket: SIM_BUCKET.into(),
                cursor: cursor.clone(),
                limit: 3,
            },
        };
        let attempt = self.clients.attempt();
        self.clients.each[client].waiting = Some((attempt, step));
        let target = self.rng.random_range(0..self.nodes.len());
        self.send_client_request(client, attempt, target, request);
    }

    pub(super) fn client_reply(&mut self, client: usize, attempt: u64, response: Option<Response>) {
        if client == self.clients.admin_slot() {
            if let (Some(slot), Some(response)) = (self.clients.admin.get_mut(&attempt), response)
                && slot.is_none()
            {
                *slot = Some(response);
            }
            return;
        }
        let waiting = &mut self.clients.each[client].waiting;
        if waiting.as_ref().is_none_or(|(a, _)| *a != attempt) {
            return; // a late answer, or the timeout of an answered request
        }
        let Some((_, step)) = waiting.take() else {
            return;
        };
        match step {
            Step::Read { key, then } => {
                let read = response
                    .as_ref()
                    .and_then(|r| ReadResult::from_response(&key, r));
                let Some(read) = read else {
                    return self.operation_done(client);
                };
                let context = read.token.clone();
                self.history.record_read(&key, read);
                if then == Then::Nothing {
                    return self.operation_done(client);
                }
                let step =
                    self.write_step(client, key, then == Then::Delete, context, WRITE_RETRIES);
                self.send_step(client, step);
            }
            Step::Write {
                key,
                delete,
                context,
                retries_left,
                write,
            } => match response {
                Some(Response::Put(reply)) => {
                    self.history
                        .acknowledge(write, &context_clock(Some(&reply.context)));
                    self.operation_done(client);
                }
                _ if retries_left > 0 => {
                    // The same write again, through whichever node the retry picks: it may
                    // have been coordinated already (the reply was lost or late).
                    let step = Step::Write {
                        key,
                        delete,
                        context,
                        retries_left: retries_left - 1,
                        write,
                    };
                    self.send_step(client, step);
                }
                _ => self.operation_done(client),
            },
            Step::List { mut listed, .. } => match response {
                Some(Response::Keys(page)) => {
                    listed.extend(page.keys);
                    if let Some(next) = page.next {
                        let step = Step::List {
                            listed,
                            cursor: Some(next),
                        };
                        return self.send_step(client, step);
                    }
                    if self.config.sabotage == super::config::Sabotage::ListTwice
                        && let Some(first) = listed.first().cloned()
                    {
                        listed.push(first);
                    }
                    self.history.record_listing(&listed);
                    self.operation_done(client);
                }
                // A page failed (a node down, a partition): the listing ends unfinished.
                _ => self.operation_done(client),
            },
        }
    }

    /// A new write attempt (a new unique value, or a delete) with the context read before.
    fn write_step(
        &mut self,
        client: usize,
        key: Vec<u8>,
        delete: bool,
        context: Option<String>,
        retries_left: u32,
    ) -> Step {
        let value = (!delete).then(|| self.next_value(client));
        let clock = context_clock(context.as_deref());
        let write = self.history.begin_write(&key, value, Some(clock));
        Step::Write {
            key,
            delete,
            context,
            retries_left,
            write,
        }
    }

    fn operation_done(&mut self, client: usize) {
        let state = &mut self.clients.each[client];
        state.ops_left = state.ops_left.saturating_sub(1);
        let think = self.rng.random_range(50..1_500);
        self.schedule(self.now + think, Event::ClientWake { client });
    }
}
