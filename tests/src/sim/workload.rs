//! The simulated clients: each performs a number of operations one after another, against a
//! node picked at random (clients do not know which nodes are down): read-modify-write with the
//! context it read (paper 4.4), blind writes, deletes after a read, plain reads, and in some
//! runs listings of the bucket, page by page, while faults happen. In runs with client-side
//! reads, a read asks R of the key's replicas for their copies, as the client library does
//! (its [`CopyQuorum`] decides), with the ring and the members up as one node sees them. A write
//! that fails or times out is retried up to twice, as a new attempt with a new value. Every
//! value is unique, so the checks can tell every write apart.
//!
//! This module must not know how nodes serve requests; it sees only answers.

use std::collections::BTreeMap;

use dynamo_protocol::{ListCursor, Request, RequestOptions, Response, storage_key};
use dynamo_quorum::{ClientContext, CopyQuorum, Fallback, Verdict};
use dynamo_vclock::VClock;
use rand::Rng;

use super::backups::BackupStep;
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
    /// A client-side read (issue 28): the copies of the key's replicas, gathered until R agree;
    /// a coordinated read when they cannot.
    CopyRead {
        key: Vec<u8>,
        then: Then,
        quorum: Box<CopyQuorum<Response>>,
        /// Replicas not asked yet (sim node indexes), the next one last.
        pending: Vec<usize>,
        /// Attempts asked and not answered yet.
        asked: Vec<u64>,
        options: RequestOptions,
    },
    /// A listing of the bucket, page by page: the keys so far, and where the next page starts.
    List {
        listed: Vec<Vec<u8>>,
        cursor: Option<ListCursor>,
    },
    /// A backup or a restore (issue 29, see [`super::backups`]).
    Backup(BackupStep),
}

#[derive(Debug, Default)]
struct Client {
    ops_left: usize,
    waiting: Option<(u64, Step)>,
    written: u64,
}

/// How client-side reads ended (issue 28).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReads {
    /// Answered from R equal copies.
    pub answered: u64,
    /// Sent to a coordinator because two copies differed.
    pub diverged: u64,
    /// Sent to a coordinator because fewer than R replicas could answer (or the client's view
    /// had too few up).
    pub too_few: u64,
}

/// Every client's state.
pub(super) struct Clients {
    each: Vec<Client>,
    /// How client-side reads ended.
    pub(super) copy_reads: CopyReads,
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
            copy_reads: CopyReads::default(),
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
            // Only in runs with backups, so other runs draw as before.
            90..95 if self.config.backup_mix => Step::Backup(self.backup_or_restore()),
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
        match step {
            Step::Read { key, then } if self.config.copy_reads => {
                self.start_copy_read(client, key, then);
            }
            step => self.send_step(client, step),
        }
    }

    /// Starts a client-side read with the routing view of a node drawn at random (a real
    /// client refreshes its view from a seed now and then, so it may be stale or wrong): the
    /// key's extended preference list among the members that node sees up. A view with fewer
    /// than R candidates (or a stopped node's) sends the read to a coordinator.
    fn start_copy_read(&mut self, client: usize, key: Vec<u8>, then: Then) {
        let options = self.request_options(false);
        let view = self.rng.random_range(0..self.nodes.len());
        let props = self
            .history
            .buckets()
            .iter()
            .find(|props| props.name == SIM_BUCKET);
        let plan = self.nodes[view]
            .core
            .as_ref()
            .zip(props)
            .and_then(|(core, props)| {
                let ring = core.ring()?;
                let skey = storage_key(SIM_BUCKET, &key);
                let candidates: Vec<usize> = ring
                    .extended_preference_list(&skey, props.n, |node| core.is_up(node))
                    .iter()
                    .filter_map(|target| {
                        self.nodes
                            .iter()
                            .position(|node| node.name == target.node.as_str())
                    })
                    .collect();
                Some((options.r.unwrap_or(props.r), candidates))
            });
        let Some((r, mut candidates)) = plan.filter(|(r, c)| c.len() >= *r) else {
            self.clients.copy_reads.too_few += 1;
            return self.send_step(client, Step::Read { key, then });
        };
        candidates.reverse();
        let mut step = Step::CopyRead {
            key,
            then,
            quorum: Box::new(CopyQuorum::new(r, candidates.len())),
            pending: candidates,
            asked: Vec::new(),
            options,
        };
        for _ in 0..r {
            self.ask_next_copy(client, &mut step);
        }
        self.clients.each[client].waiting = Some((0, step));
    }

    /// Asks the next replica of a client-side read for its copy, if one is left.
    fn ask_next_copy(&mut self, client: usize, step: &mut Step) {
        let Step::CopyRead {
            key,
            pending,
            asked,
            ..
        } = step
        else {
            return;
        };
        let Some(target) = pending.pop() else { return };
        let attempt = self.clients.attempt();
        asked.push(attempt);
        let request = Request::ReadCopy {
            bucket: SIM_BUCKET.into(),
            key: key.clone(),
        };
        self.send_client_request(client, attempt, target, request);
    }

    /// A replica's copy (or its failure) reaches a client-side read.
    fn copy_reply(
        &mut self,
        client: usize,
        attempt: u64,
        mut step: Step,
        response: Option<Response>,
    ) {
        let Step::CopyRead { quorum, asked, .. } = &mut step else {
            return;
        };
        asked.retain(|a| *a != attempt);
        let verdict = match response {
            Some(Response::Copy(copy))
                if matches!(copy.answer, Response::Get(_) | Response::NotFound { .. }) =>
            {
                quorum.answered(copy.digest, copy.answer)
            }
            _ => {
                let verdict = quorum.failed();
                if verdict.is_none() {
                    self.ask_next_copy(client, &mut step);
                }
                verdict
            }
        };
        let Some(verdict) = verdict else {
            self.clients.each[client].waiting = Some((0, step));
            return;
        };
        let Step::CopyRead {
            key, then, options, ..
        } = step
        else {
            return;
        };
        match verdict {
            Verdict::Answer(answer) => {
                self.clients.copy_reads.answered += 1;
                self.read_done(client, key, then, Some(&answer));
            }
            Verdict::AskCoordinator(why) => {
                match why {
                    Fallback::Diverged => self.clients.copy_reads.diverged += 1,
                    Fallback::TooFewCopies => self.clients.copy_reads.too_few += 1,
                }
                // The coordinated read keeps the quorum the copies were read with.
                self.send_read(client, key, then, options);
            }
        }
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

    /// A coordinated read with `options`, sent to a node picked at random.
    fn send_read(&mut self, client: usize, key: Vec<u8>, then: Then, options: RequestOptions) {
        let request = Request::Get {
            bucket: SIM_BUCKET.into(),
            key: key.clone(),
            options,
        };
        let attempt = self.clients.attempt();
        self.clients.each[client].waiting = Some((attempt, Step::Read { key, then }));
        let target = self.rng.random_range(0..self.nodes.len());
        self.send_client_request(client, attempt, target, request);
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
            Step::Backup(backup) => match Self::backup_request(backup) {
                Some(request) => request,
                None => return self.operation_done(client),
            },
            // Sent as a plain step, a client-side read is a coordinated one.
            Step::CopyRead {
                key, then, options, ..
            } => {
                let (key, then, options) = (key.clone(), *then, *options);
                return self.send_read(client, key, then, options);
            }
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
        let expected = match waiting {
            Some((_, Step::CopyRead { asked, .. })) => asked.contains(&attempt),
            Some((a, _)) => *a == attempt,
            None => false,
        };
        if !expected {
            return; // a late answer, or the timeout of an answered request
        }
        let Some((_, step)) = waiting.take() else {
            return;
        };
        match step {
            Step::Read { key, then } => self.read_done(client, key, then, response.as_ref()),
            step @ Step::CopyRead { .. } => self.copy_reply(client, attempt, step, response),
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
            Step::Backup(backup) => match self.backup_answered(backup, response) {
                Some(next) => self.send_step(client, Step::Backup(next)),
                None => self.operation_done(client),
            },
        }
    }

    /// A read answered (`None`: it failed): recorded, then the write that follows it, if any.
    fn read_done(&mut self, client: usize, key: Vec<u8>, then: Then, response: Option<&Response>) {
        let Some(read) = response.and_then(|r| ReadResult::from_response(&key, r)) else {
            return self.operation_done(client);
        };
        let context = read.token.clone();
        self.history.record_read(&key, read);
        if then == Then::Nothing {
            return self.operation_done(client);
        }
        let step = self.write_step(client, key, then == Then::Delete, context, WRITE_RETRIES);
        self.send_step(client, step);
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
