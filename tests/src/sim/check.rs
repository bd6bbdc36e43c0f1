//! What the simulator remembers for the invariant checks, and the run's trace.
//!
//! [`History`] records every write attempt (its unique value, the context it was written with,
//! whether it was acknowledged), the dot each coordinated write got (seen on the coordinator's
//! store result), and every read a client completed. [`Trace`] hashes every event and keeps the
//! last ones for a failure report. This module must not decide what is a violation; the
//! [`super::invariants`] modules do.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use dynamo_protocol::{BucketProps, Response};
use dynamo_quorum::{ClientContext, Object, Value};
use dynamo_vclock::{Actor, VClock};

/// Events kept for a failure report.
const TRACE_TAIL: usize = 120;

/// A dot: the actor that coordinated a write and its counter.
pub type Dot = (Actor, u64);

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (its module's name).
    pub invariant: &'static str,
    /// The user key concerned, if any.
    pub key: Option<String>,
    /// What was wrong.
    pub message: String,
}

impl Violation {
    /// A violation of `invariant` on `key`.
    pub fn on_key(invariant: &'static str, key: &[u8], message: String) -> Violation {
        Violation {
            invariant,
            key: Some(String::from_utf8_lossy(key).into_owned()),
            message,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "[{}] key {key}: {}", self.invariant, self.message),
            None => write!(f, "[{}] {}", self.invariant, self.message),
        }
    }
}

/// One write attempt.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    /// The user key.
    pub key: Vec<u8>,
    /// The value; `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// The context it was written with (empty for a blind write).
    pub context: VClock,
    /// Whether a node acknowledged it.
    pub acknowledged: bool,
    /// The dots it got (more than one if a retry or a duplicated message made two coordinators
    /// write it).
    pub dots: Vec<Dot>,
    /// The dot(s) of the coordination whose acknowledgement reached the client; the others
    /// are unacknowledged duplicates, which may be lost.
    pub acked_dots: Vec<Dot>,
    /// The set the coordinator stored with it, the first time.
    pub stored: Option<Object>,
    /// What the sets its coordinators stored with it had seen, joined over every coordination
    /// (a retry may be coordinated elsewhere).
    pub stored_seen: VClock,
}

impl WriteRecord {
    /// Whether `clock` has seen this write (any of its dots).
    pub fn seen_by(&self, clock: &VClock) -> bool {
        self.dots.iter().any(|(actor, n)| clock.get(actor) >= *n)
    }

    /// Whether `clock` has seen every dot of this write.
    pub fn fully_seen_by(&self, clock: &VClock) -> bool {
        !self.dots.is_empty() && self.dots.iter().all(|(actor, n)| clock.get(actor) >= *n)
    }

    /// Whether `clock` has seen this write as a client was told of it: every dot of its
    /// acknowledged coordination (a duplicate coordinated elsewhere being superseded says
    /// nothing of the acknowledged one), or any dot of a write never acknowledged.
    pub fn acknowledged_seen_by(&self, clock: &VClock) -> bool {
        if self.acked_dots.is_empty() {
            return self.seen_by(clock);
        }
        self.acked_dots
            .iter()
            .all(|(actor, n)| clock.get(actor) >= *n)
    }
}

/// A completed read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Data values returned.
    pub values: Vec<Vec<u8>>,
    /// The causal context returned.
    pub clock: VClock,
    /// The context token, to write with.
    pub token: Option<String>,
    /// The bucket's resolution of the values.
    pub resolved: Resolved,
}

/// What a bucket's resolver made of a read's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// No resolution: a `siblings` bucket, or nothing found.
    Nothing,
    /// A delete won (`lww`).
    Delete,
    /// The value it resolved to.
    Value(Vec<u8>),
}

impl ReadResult {
    /// The read in a get's answer (found or not found); `None` for an error.
    pub fn from_response(_key: &[u8], response: &Response) -> Option<ReadResult> {
        let (values, token, resolved) = match response {
            Response::Get(reply) => (
                reply.values.clone(),
                reply.context.clone(),
                match reply.resolution.as_ref().map(|r| r.value.clone()) {
                    None => Resolved::Nothing,
                    Some(None) => Resolved::Delete,
                    Some(Some(value)) => Resolved::Value(value),
                },
            ),
            Response::NotFound { context } => (Vec::new(), context.clone(), Resolved::Nothing),
            _ => return None,
        };
        let clock = ClientContext::from_text(&token)
            .map(|c| c.clock)
            .unwrap_or_default();
        let token = (!token.is_empty()).then_some(token);
        Some(ReadResult {
            values,
            clock,
            token,
            resolved,
        })
    }
}

/// Everything the checks need to know about a run.
#[derive(Debug, Default)]
pub struct History {
    writes: Vec<WriteRecord>,
    by_value: BTreeMap<Vec<u8>, usize>,
    /// Tombstone dots per key, from coordinated deletes.
    tombstones: BTreeMap<Vec<u8>, Vec<Dot>>,
    /// Per key, what the set stored with each coordinated delete had seen.
    tombstones_seen: BTreeMap<Vec<u8>, Vec<VClock>>,
    /// Per key, the clocks of the tombstone sets reaped from some replica.
    reaped: BTreeMap<Vec<u8>, Vec<VClock>>,
    reads: Vec<(Vec<u8>, ReadResult)>,
    keys: BTreeSet<Vec<u8>>,
    buckets: Vec<BucketProps>,
    problems: Vec<String>,
    /// What listings clients completed during the run found wrong, by key.
    listing_findings: Vec<(Vec<u8>, String)>,
    /// Listings clients completed during the run.
    listings: usize,
    /// See [`History::set_last_write_wins`].
    last_write_wins: bool,
}

impl History {
    /// A write attempt starts; returns its index.
    pub fn begin_write(
        &mut self,
        key: &[u8],
        value: Option<Vec<u8>>,
        context: Option<VClock>,
    ) -> usize {
        let index = self.writes.len();
        if let Some(value) = &value {
            self.by_value.insert(value.clone(), index);
        }
        self.keys.insert(key.to_vec());
        self.writes.push(WriteRecord {
            key: key.to_vec(),
            value,
            context: context.unwrap_or_default(),
            acknowledged: false,
            dots: Vec::new(),
            acked_dots: Vec::new(),
            stored: None,
            stored_seen: VClock::default(),
        });
        index
    }

    /// The value of write `index`.
    pub fn value_of(&self, index: usize) -> Option<Vec<u8>> {
        self.writes.get(index).and_then(|w| w.value.clone())
    }

    /// A coordinator stored `value` for storage key `skey` under the dot `(actor, counter)`
    /// (`stored` is the set after the write).
    pub fn observe_coordinated_write(
        &mut self,
        skey: &[u8],
        (actor, counter): (&Actor, u64),
        value: &Value,
        stored: &Object,
    ) {
        let key = user_key(skey);
        if let Some(bytes) = value.bytes() {
            if let Some(&index) = self.by_value.get(bytes)
                && let Some(write) = self.writes.get_mut(index)
            {
                write.dots.push((actor.clone(), counter));
                write.stored_seen.merge(&stored.context());
                if write.stored.is_none() {
                    write.stored = Some(stored.clone());
                }
            }
        } else {
            self.tombstones
                .entry(key.to_vec())
                .or_default()
                .push((actor.clone(), counter));
            self.tombstones_seen
                .entry(key.to_vec())
                .or_default()
                .push(stored.context());
        }
    }

    /// Write `index` was acknowledged with context `clock`.
    pub fn acknowledge(&mut self, index: usize, clock: &VClock) {
        let tombstones = self.tombstones.clone();
        let Some(write) = self.writes.get_mut(index) else {
            return;
        };
        write.acknowledged = true;
        if write.value.is_none() && write.dots.is_empty() {
            // A delete: its dot is the tombstone dot the acknowledged context names exactly.
            if let Some(dots) = tombstones.get(&write.key) {
                write.dots = dots
                    .iter()
                    .filter(|(actor, n)| clock.get(actor) == *n)
                    .cloned()
                    .collect();
            }
        }
        // The acknowledged coordination made the dot the acknowledged context names exactly.
        write.acked_dots = write
            .dots
            .iter()
            .filter(|(actor, n)| clock.get(actor) == *n)
            .cloned()
            .collect();
        if write.acked_dots.is_empty() {
            write.acked_dots.clone_from(&write.dots);
        }
    }

    /// A client completed a read.
    pub fn record_read(&mut self, key: &[u8], read: ReadResult) {
        self.reads.push((key.to_vec(), read));
    }

    /// A bucket was created.
    pub fn bucket_created(&mut self, props: BucketProps) {
        self.buckets.push(props);
    }

    /// A listing a client completed while the run went on: no key twice, and none that no
    /// client had tried to give a value by then (a listing may miss keys under faults, and may
    /// name one whose write is not acknowledged yet, but never invent one).
    pub fn record_listing(&mut self, listed: &[Vec<u8>]) {
        self.listings += 1;
        let mut seen = BTreeSet::new();
        for key in listed {
            if !seen.insert(key) {
                let message = "a listing during the run named the key twice".to_owned();
                self.listing_findings.push((key.clone(), message));
            }
            let written = self
                .writes
                .iter()
                .any(|w| w.key == *key && w.value.is_some());
            if !written {
                let message =
                    "a listing during the run named a key no client had written".to_owned();
                self.listing_findings.push((key.clone(), message));
            }
        }
    }

    /// A backup's page or a restore's merge that a node refused as malformed or not allowed
    /// (issue 29): faults make them fail, never refused, so it counts against invariant 8.
    pub fn record_backup_refusal(&mut self, key: &[u8], message: String) {
        self.listing_findings.push((key.to_vec(), message));
    }

    /// What listings during the run found wrong, by key.
    pub fn listing_findings(&self) -> &[(Vec<u8>, String)] {
        &self.listing_findings
    }

    /// Listings clients completed during the run.
    pub fn listings(&self) -> usize {
        self.listings
    }

    /// Something that kept the run from doing what it meant to (reported, not a violation).
    pub fn problem(&mut self, message: String) {
        self.problems.push(message);
    }

    /// Every write attempt.
    pub fn writes(&self) -> &[WriteRecord] {
        &self.writes
    }

    /// The write that carried `value`.
    pub fn write_of_value(&self, value: &[u8]) -> Option<&WriteRecord> {
        self.by_value.get(value).and_then(|&i| self.writes.get(i))
    }

    /// Reads clients completed during the run, then the final reads after healing.
    pub fn all_reads<'a>(
        &'a self,
        finals: &'a BTreeMap<Vec<u8>, ReadResult>,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a ReadResult)> + 'a {
        self.reads.iter().map(|(k, r)| (k, r)).chain(finals.iter())
    }

    /// Every key written.
    pub fn keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.keys.iter()
    }

    /// Buckets created.
    pub fn buckets(&self) -> &[BucketProps] {
        &self.buckets
    }

    /// Problems met.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Writes acknowledged.
    pub fn acknowledged(&self) -> usize {
        self.writes.iter().filter(|w| w.acknowledged).count()
    }

    /// A replica removed `skey` whose every version was a tombstone with history `clock`.
    pub fn observe_reap(&mut self, skey: &[u8], clock: VClock) {
        self.reaped
            .entry(user_key(skey).to_vec())
            .or_default()
            .push(clock);
    }

    /// Whether a reaped tombstone had seen every one of `dots`: a delete superseded them and
    /// the reap removed the delete's trace, so a final read cannot show them any more.
    pub fn reaped_dots(&self, write: &WriteRecord, dots: &[Dot]) -> bool {
        !dots.is_empty()
            && self.reaped.get(&write.key).is_some_and(|clocks| {
                clocks
                    .iter()
                    .any(|clock| dots.iter().all(|(actor, n)| clock.get(actor) >= *n))
            })
    }

    /// Whether some write attempt's context has seen `write` (it was overwritten on purpose by
    /// a client that read it). A write retried under its write id is one write however many
    /// dots it got: a client that saw one copy saw the write, and its coordinator supersedes
    /// the copies it holds (`dynamo_quorum::PutCoordinator`).
    pub fn superseded(&self, write: &WriteRecord) -> bool {
        let by_write = self.writes.iter().any(|other| {
            other.key == write.key
                && (write.seen_by(&other.context)
                    || (self.last_write_wins
                        && !std::ptr::eq(other, write)
                        && write.acknowledged_seen_by(&other.stored_seen)))
        });
        let by_delete = self.last_write_wins
            && self
                .tombstones_seen
                .get(&write.key)
                .is_some_and(|seen| seen.iter().any(|clock| write.acknowledged_seen_by(clock)));
        by_write || by_delete
    }

    /// The bucket resolves by last write wins: a write or delete supersedes every version its
    /// coordinator held (`PutRequest::supersede_local`), so what its stored set had seen
    /// counts as overwritten on purpose, as if its context had seen it.
    pub fn set_last_write_wins(&mut self) {
        self.last_write_wins = true;
    }
}

/// The user key inside a storage key (bucket length, bucket, key).
fn user_key(skey: &[u8]) -> &[u8] {
    dynamo_protocol::split_storage_key(skey).map_or(&[], |(_, key)| key)
}

/// Every event of a run, hashed, and the last ones kept. With `SIM_TRACE` set in the
/// environment every event is also printed to standard error as it happens.
///
/// A run that tells its story (`Sim::with_story`, what `sim --reproduce` does) also keeps
/// detail lines: each store operation and its result, what each peer answer and each client
/// answer was for. Detail lines are not hashed, so a seed's trace hash is the same either way;
/// following a key keeps every line that names it, from the first event to the last.
#[derive(Debug)]
pub(super) struct Trace {
    hash: u64,
    tail: VecDeque<String>,
    print: bool,
    detail: bool,
    follow: Option<String>,
    followed: Vec<String>,
}

/// Lines kept for a followed key at most.
const MAX_FOLLOWED: usize = 50_000;

impl Trace {
    /// A trace; `detail` keeps detail lines, `follow` every line naming that key.
    pub(super) fn new(detail: bool, follow: Option<String>) -> Trace {
        let print = std::env::var_os("SIM_TRACE").is_some();
        Trace {
            hash: 0xcbf2_9ce4_8422_2325,
            tail: VecDeque::new(),
            print,
            detail: detail || print || follow.is_some(),
            follow,
            followed: Vec::new(),
        }
    }

    /// Whether detail lines are kept (callers skip the work of describing them otherwise).
    pub(super) fn detailed(&self) -> bool {
        self.detail
    }

    /// Records one event at `now`.
    pub(super) fn record(&mut self, now: u64, line: impl FnOnce() -> String) {
        let line = format!("{now:>9} {}", line());
        // FNV-1a: stable across builds and platforms.
        for byte in line.bytes().chain([b'\n']) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.keep(line);
    }

    /// Records a detail line at `now`, when the run tells its story; never hashed.
    pub(super) fn record_detail(&mut self, now: u64, line: impl FnOnce() -> String) {
        if self.detail {
            let line = format!("{now:>9}   {}", line());
            self.keep(line);
        }
    }

    fn keep(&mut self, line: String) {
        if self.print {
            eprintln!("{line}");
        }
        // Gossip chatter is hashed but not kept: the tail is for reading.
        if line.ends_with(" gossip") {
            return;
        }
        if let Some(key) = &self.follow
            && self.followed.len() < MAX_FOLLOWED
            && mentions(&line, key)
        {
            self.followed.push(line.clone());
        }
        if self.tail.len() == TRACE_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// Every line that named the followed key.
    pub(super) fn followed(&self) -> Vec<String> {
        self.followed.clone()
    }

    pub(super) fn hash(&self) -> u64 {
        self.hash
    }

    pub(super) fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// Whether `line` names `key` as a whole word (`k7`, not `k70`).
fn mentions(line: &str, key: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    line.match_indices(key).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + key.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// A storage key (bucket length, bucket, key) as `bucket/key`, the key as text.
pub(super) fn storage_key_text(skey: &[u8]) -> String {
    let (bucket, key) = dynamo_protocol::split_storage_key(skey).unwrap_or((&[], skey));
    format!(
        "{}/{}",
        String::from_utf8_lossy(bucket),
        String::from_utf8_lossy(key)
    )
}

#[cfg(test)]
mod tests {
    use super::mentions;

    /// A followed key is a whole word of a line: `k3` is not `k30` nor `xk3`.
    #[test]
    fn a_key_is_followed_as_a_whole_word() {
        let cases = [
            ("n0 <- client2 get k3", true),
            ("n0 store OpId(1) Get p15 sim/k3 -> absent", true),
            ("n0 <- client2 get k30", false),
            ("n0 <- client2 get xk3", false),
            ("put k3 c1-1", true),
        ];
        for (line, expected) in cases {
            assert_eq!(mentions(line, "k3"), expected, "{line}");
        }
    }
}
