//! Vector clocks: who has seen which events, per actor (Dynamo paper §4.4).
//!
//! A [`VClock`] maps each [`Actor`] (a replica, never a client) to the number of events it has
//! coordinated and the caller-supplied timestamp of the latest one. Clocks form a join
//! semilattice under [`VClock::merge`]; [`VClock::compare`] tells whether one history contains
//! the other or whether they are concurrent (siblings).
//!
//! This module must NOT know the network, storage or the wall clock: every timestamp is an
//! argument (`now`, e.g. milliseconds since an arbitrary epoch) and is only used by
//! [`VClock::prune`].

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The identity of a replica that coordinates writes (a node or vnode name).
///
/// In Dynamo the actors of a clock are the coordinating replicas, never the clients, so the
/// number of entries stays bounded by the preference-list size in the common case.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(pub String);

impl Actor {
    /// Creates an actor from anything string-like.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The actor's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Actor {
    fn from(name: &str) -> Self {
        Self(name.to_owned())
    }
}

impl From<String> for Actor {
    fn from(name: String) -> Self {
        Self(name)
    }
}

/// One actor's slot in a clock: how many events it coordinated and when the latest happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Number of events coordinated by the actor that this history includes (always >= 1).
    pub counter: u64,
    /// Caller-supplied time of the latest event (e.g. ms since epoch); only used for pruning.
    pub timestamp: u64,
}

impl Entry {
    /// The least upper bound of two entries of the same actor: the higher counter wins, equal
    /// counters keep the later timestamp (deterministic, commutative, associative).
    #[must_use]
    pub fn join(self, other: Self) -> Self {
        match self.counter.cmp(&other.counter) {
            Ordering::Greater => self,
            Ordering::Less => other,
            Ordering::Equal => Self {
                counter: self.counter,
                timestamp: self.timestamp.max(other.timestamp),
            },
        }
    }
}

/// The causal relation between two histories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Causality {
    /// Both histories contain exactly the same events.
    Equal,
    /// The left history is strictly contained in the right one (left happened before).
    Before,
    /// The left history strictly contains the right one (left happened after).
    After,
    /// Each history has events the other lacks: the versions are siblings.
    Concurrent,
}

impl Causality {
    /// The same relation seen from the other side (`Before` <-> `After`).
    #[must_use]
    pub fn reverse(self) -> Self {
        match self {
            Self::Before => Self::After,
            Self::After => Self::Before,
            other => other,
        }
    }
}

/// Why a list of entries is not a valid clock.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// Actors must be strictly increasing (sorted, no duplicates).
    #[error("vector clock actors are not sorted and unique at `{actor}`")]
    UnsortedActors {
        /// The first out-of-order or repeated actor.
        actor: Actor,
    },
    /// A present entry must have a counter of at least 1.
    #[error("vector clock entry for `{actor}` has a zero counter")]
    ZeroCounter {
        /// The offending actor.
        actor: Actor,
    },
}

/// A vector clock: actor -> (counter, timestamp), kept sorted by actor.
///
/// Invariants: actors strictly increasing, every counter >= 1 (an absent actor means 0).
/// `==` compares entries including timestamps; use [`VClock::compare`] for causal equality.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VClock {
    entries: Vec<(Actor, Entry)>,
}

impl VClock {
    /// The empty clock (no events seen).
    pub fn new() -> Self {
        Self::default()
    }

    /// Counter of `actor` (0 when absent).
    pub fn get(&self, actor: &Actor) -> u64 {
        self.entry(actor).map_or(0, |e| e.counter)
    }

    /// The full entry of `actor`, if present.
    pub fn entry(&self, actor: &Actor) -> Option<Entry> {
        self.position(actor).ok().map(|i| self.entries[i].1)
    }

    fn position(&self, actor: &Actor) -> Result<usize, usize> {
        self.entries.binary_search_by(|(a, _)| a.cmp(actor))
    }

    /// Records a new event coordinated by `actor` at time `now`; returns the new counter.
    ///
    /// The counter saturates at `u64::MAX` (unreachable in practice).
    pub fn increment(&mut self, actor: &Actor, now: u64) -> u64 {
        match self.position(actor) {
            Ok(i) => {
                let entry = &mut self.entries[i].1;
                entry.counter = entry.counter.saturating_add(1);
                entry.timestamp = now;
                entry.counter
            }
            Err(i) => {
                self.entries.insert(
                    i,
                    (
                        actor.clone(),
                        Entry {
                            counter: 1,
                            timestamp: now,
                        },
                    ),
                );
                1
            }
        }
    }

    /// Sets `actor`'s entry to the join of its current entry and `entry` (no-op for counter 0).
    pub fn witness(&mut self, actor: &Actor, entry: Entry) {
        if entry.counter == 0 {
            return;
        }
        match self.position(actor) {
            Ok(i) => self.entries[i].1 = self.entries[i].1.join(entry),
            Err(i) => self.entries.insert(i, (actor.clone(), entry)),
        }
    }

    /// Replaces `self` with the least upper bound of `self` and `other`.
    pub fn merge(&mut self, other: &VClock) {
        *self = self.merged(other);
    }

    /// The least upper bound of two clocks (per actor: the higher counter).
    #[must_use]
    pub fn merged(&self, other: &VClock) -> VClock {
        let entries = merge_by_actor(
            &self.entries,
            &other.entries,
            |(actor, _)| actor,
            |(actor, x), (_, y)| (actor.clone(), x.join(*y)),
        );
        VClock { entries }
    }

    /// The causal relation of `self` to `other` (timestamps are ignored).
    pub fn compare(&self, other: &VClock) -> Causality {
        let (mut self_ahead, mut other_ahead) = (false, false);
        let (mut i, mut j) = (0, 0);
        while i < self.entries.len() || j < other.entries.len() {
            let order = match (self.entries.get(i), other.entries.get(j)) {
                (Some((xa, _)), Some((ya, _))) => xa.cmp(ya),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                // Present only in self (counters are >= 1).
                Ordering::Less => {
                    self_ahead = true;
                    i += 1;
                }
                Ordering::Greater => {
                    other_ahead = true;
                    j += 1;
                }
                Ordering::Equal => {
                    match self.entries[i].1.counter.cmp(&other.entries[j].1.counter) {
                        Ordering::Greater => self_ahead = true,
                        Ordering::Less => other_ahead = true,
                        Ordering::Equal => {}
                    }
                    i += 1;
                    j += 1;
                }
            }
            if self_ahead && other_ahead {
                return Causality::Concurrent;
            }
        }
        match (self_ahead, other_ahead) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (true, true) => Causality::Concurrent,
        }
    }

    /// True when `self` has seen every event `other` has seen (`After` or `Equal`).
    pub fn descends(&self, other: &VClock) -> bool {
        other
            .entries
            .iter()
            .all(|(actor, entry)| self.get(actor) >= entry.counter)
    }

    /// True when `self` descends `other` and has seen strictly more (`After`).
    pub fn dominates(&self, other: &VClock) -> bool {
        self.compare(other) == Causality::After
    }

    /// Number of actors with an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for the empty clock.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (&Actor, Entry)> + '_ {
        self.entries.iter().map(|(a, e)| (a, *e))
    }

    /// Deterministically drops old entries to bound the clock's size (paper §4.4).
    ///
    /// Riak-style rules, applied with entries ordered by oldest timestamp, then actor:
    /// never prune at or below `small_vclock` entries; stop at the first (oldest) entry younger
    /// than `young_vclock_ms`; otherwise drop it while the clock is above `big_vclock` entries or
    /// the entry is older than `old_vclock_ms`. Timestamps in the future count as age 0.
    /// Returns whether anything was dropped.
    ///
    /// Pruning loses history: a pruned clock may later look concurrent with (or older than) a
    /// version it actually descends, which surfaces as extra siblings, as the paper accepts.
    pub fn prune(&mut self, now: u64, config: &PruneConfig) -> bool {
        if self.entries.len() <= config.small_vclock {
            return false;
        }
        let mut by_age: Vec<usize> = (0..self.entries.len()).collect();
        by_age.sort_by(|&x, &y| {
            let (xa, xe) = &self.entries[x];
            let (ya, ye) = &self.entries[y];
            xe.timestamp.cmp(&ye.timestamp).then_with(|| xa.cmp(ya))
        });
        let mut remaining = self.entries.len();
        let mut drop = vec![false; self.entries.len()];
        for index in by_age {
            if remaining <= config.small_vclock {
                break;
            }
            let age = now.saturating_sub(self.entries[index].1.timestamp);
            if age < config.young_vclock_ms {
                break;
            }
            if remaining > config.big_vclock || age > config.old_vclock_ms {
                drop[index] = true;
                remaining -= 1;
            } else {
                break;
            }
        }
        if remaining == self.entries.len() {
            return false;
        }
        let mut index = 0;
        self.entries.retain(|_| {
            let keep = !drop[index];
            index += 1;
            keep
        });
        true
    }
}

impl<'a> IntoIterator for &'a VClock {
    type Item = (&'a Actor, Entry);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Actor, Entry)>,
        fn(&'a (Actor, Entry)) -> (&'a Actor, Entry),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(a, e)| (a, *e))
    }
}

impl TryFrom<Vec<(Actor, Entry)>> for VClock {
    type Error = ClockError;

    /// Validates a raw entry list (e.g. from a peer): sorted unique actors, counters >= 1.
    fn try_from(entries: Vec<(Actor, Entry)>) -> Result<Self, Self::Error> {
        for (i, (actor, entry)) in entries.iter().enumerate() {
            if entry.counter == 0 {
                return Err(ClockError::ZeroCounter {
                    actor: actor.clone(),
                });
            }
            if i > 0 && entries[i - 1].0 >= *actor {
                return Err(ClockError::UnsortedActors {
                    actor: actor.clone(),
                });
            }
        }
        Ok(Self { entries })
    }
}

impl<A: Into<Actor>> FromIterator<(A, Entry)> for VClock {
    /// Builds a clock from entries in any order; repeated actors are joined, zero counters
    /// skipped.
    fn from_iter<I: IntoIterator<Item = (A, Entry)>>(iter: I) -> Self {
        let mut clock = VClock::new();
        for (actor, entry) in iter {
            clock.witness(&actor.into(), entry);
        }
        clock
    }
}

impl Serialize for VClock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for VClock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<(Actor, Entry)>::deserialize(deserializer)?;
        VClock::try_from(entries).map_err(serde::de::Error::custom)
    }
}

/// Size thresholds for [`VClock::prune`] (Riak's bucket properties of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PruneConfig {
    /// Never prune a clock with this many entries or fewer.
    pub small_vclock: usize,
    /// Above this many entries, drop the oldest (unless younger than `young_vclock_ms`).
    pub big_vclock: usize,
    /// Entries younger than this (ms, relative to `now`) are never dropped.
    pub young_vclock_ms: u64,
    /// Entries older than this (ms) are dropped while the clock is above `small_vclock`.
    pub old_vclock_ms: u64,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            small_vclock: 10,
            big_vclock: 50,
            young_vclock_ms: 20_000,
            old_vclock_ms: 86_400_000,
        }
    }
}

impl PruneConfig {
    /// The paper's rule (§4.4): truncate to 10 entries, oldest timestamp first, regardless of age.
    pub fn paper() -> Self {
        Self::truncate_to(10)
    }

    /// Truncate to `max_entries`, oldest timestamp first (then actor), regardless of age.
    pub fn truncate_to(max_entries: usize) -> Self {
        Self {
            small_vclock: max_entries,
            big_vclock: max_entries,
            young_vclock_ms: 0,
            old_vclock_ms: u64::MAX,
        }
    }
}

/// Merges two lists sorted by actor (each actor at most once per list) into one sorted list:
/// an entry found in one list is copied, entries of the same actor are combined with `join`.
/// Shared by [`VClock::merged`] and `DvvSet::sync`.
pub(crate) fn merge_by_actor<T: Clone>(
    a: &[T],
    b: &[T],
    actor: impl Fn(&T) -> &Actor,
    join: impl Fn(&T, &T) -> T,
) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match actor(&a[i]).cmp(actor(&b[j])) {
            Ordering::Less => {
                out.push(a[i].clone());
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j].clone());
                j += 1;
            }
            Ordering::Equal => {
                out.push(join(&a[i], &b[j]));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(counter: u64, timestamp: u64) -> Entry {
        Entry { counter, timestamp }
    }

    /// Builds a clock from `"a:2 b:1"` (timestamps = counter).
    fn vc(spec: &str) -> VClock {
        spec.split_whitespace()
            .map(|part| {
                let (actor, counter) = part.split_once(':').expect("actor:counter");
                let counter: u64 = counter.parse().expect("counter");
                (actor, e(counter, counter))
            })
            .collect()
    }

    /// Paper §4.4: D3 ([Sx,2],[Sy,1]) and D4 ([Sx,2],[Sz,1]) are concurrent; D5 descends both.
    #[test]
    fn compare_table() {
        use Causality::{After, Before, Concurrent, Equal};
        let cases = [
            ("", "", Equal),
            ("a:1", "", After),
            ("", "a:1", Before),
            ("a:1", "a:1", Equal),
            ("a:1", "a:2", Before),
            ("a:3", "a:2", After),
            ("a:1", "b:1", Concurrent),
            ("a:2 b:1", "a:1 b:2", Concurrent),
            ("a:2 b:1", "a:2 b:1 c:1", Before),
            ("sx:2 sy:1", "sx:2 sz:1", Concurrent),
            ("sx:3 sy:1 sz:1", "sx:2 sy:1", After),
            ("sx:3 sy:1 sz:1", "sx:2 sz:1", After),
            ("a:1 c:1", "b:1", Concurrent),
            ("a:5 b:5 c:5", "a:5 b:4 c:5", After),
        ];
        for (left, right, want) in cases {
            let (l, r) = (vc(left), vc(right));
            assert_eq!(l.compare(&r), want, "{left} vs {right}");
            assert_eq!(r.compare(&l), want.reverse(), "{right} vs {left}");
            assert_eq!(
                l.descends(&r),
                matches!(want, Equal | After),
                "{left} descends {right}"
            );
            assert_eq!(l.dominates(&r), want == After, "{left} dominates {right}");
        }
    }

    #[test]
    fn merge_takes_max_counter_and_its_timestamp() {
        let a: VClock = [("a", e(2, 20)), ("b", e(1, 5))].into_iter().collect();
        let b: VClock = [("a", e(1, 99)), ("b", e(1, 7)), ("c", e(4, 1))]
            .into_iter()
            .collect();
        let m = a.merged(&b);
        let got: Vec<_> = m.iter().map(|(a, e)| (a.as_str(), e)).collect();
        assert_eq!(got, vec![("a", e(2, 20)), ("b", e(1, 7)), ("c", e(4, 1))]);
    }

    #[test]
    fn increment_sets_timestamp_and_counts() {
        let mut c = VClock::new();
        let a = Actor::from("a");
        assert_eq!(c.increment(&a, 10), 1);
        assert_eq!(c.increment(&a, 30), 2);
        assert_eq!(c.entry(&a), Some(e(2, 30)));
        assert_eq!(c.get(&Actor::from("zz")), 0);
    }

    #[test]
    fn try_from_rejects_invalid() {
        let ok = vec![(Actor::from("a"), e(1, 0)), (Actor::from("b"), e(2, 0))];
        assert!(VClock::try_from(ok).is_ok());
        let unsorted = vec![(Actor::from("b"), e(1, 0)), (Actor::from("a"), e(2, 0))];
        assert!(matches!(
            VClock::try_from(unsorted),
            Err(ClockError::UnsortedActors { .. })
        ));
        let dup = vec![(Actor::from("a"), e(1, 0)), (Actor::from("a"), e(2, 0))];
        assert!(matches!(
            VClock::try_from(dup),
            Err(ClockError::UnsortedActors { .. })
        ));
        let zero = vec![(Actor::from("a"), e(0, 0))];
        assert!(matches!(
            VClock::try_from(zero),
            Err(ClockError::ZeroCounter { .. })
        ));
    }

    fn clock_of(n: usize, ts: impl Fn(usize) -> u64) -> VClock {
        (0..n).map(|i| (format!("n{i:02}"), e(1, ts(i)))).collect()
    }

    fn actors(c: &VClock) -> Vec<&str> {
        c.iter().map(|(a, _)| a.as_str()).collect()
    }

    /// Paper §4.4: "when the number of (node, counter) pairs reaches a threshold (say 10), the
    /// oldest pair is removed"; ties on timestamp broken by actor id.
    #[test]
    fn paper_prune_truncates_oldest_then_actor() {
        // 12 entries; n00..n03 share timestamp 5, the rest are newer.
        let mut c = clock_of(12, |i| if i < 4 { 5 } else { 100 + i as u64 });
        assert!(c.prune(0, &PruneConfig::paper()));
        assert_eq!(c.len(), 10);
        assert!(!actors(&c).contains(&"n00") && !actors(&c).contains(&"n01"));
        assert!(actors(&c).contains(&"n02"));
        // At the threshold: nothing to do.
        assert!(!c.prune(0, &PruneConfig::paper()));
    }

    /// (name, entries, timestamp of entry i, now, expected len)
    type PruneCase = (&'static str, usize, fn(usize) -> u64, u64, usize);

    /// Riak-style thresholds, table-driven: (entries, ts of entry i, now, expected len).
    #[test]
    fn riak_prune_table() {
        let cfg = PruneConfig::default(); // small 10, big 50, young 20s, old 1 day
        let day = 86_400_000;
        let cases: [PruneCase; 6] = [
            ("at small: never", 10, |_| 0, 10 * day, 10),
            ("above small but all young", 30, |_| 1_000, 2_000, 30),
            (
                "above small, older than young, not old, below big",
                30,
                |_| 0,
                60_000,
                30,
            ),
            ("above small and old: down to small", 30, |_| 0, 2 * day, 10),
            ("above big, not old: down to big", 60, |_| 0, 60_000, 50),
            (
                "old ones dropped, stop at first young",
                30,
                |i| if i < 5 { 0 } else { 2 * 86_400_000 },
                2 * 86_400_000 + 1,
                25,
            ),
        ];
        for (name, n, ts, now, want) in cases {
            let mut c = clock_of(n, ts);
            let changed = c.prune(now, &cfg);
            assert_eq!(c.len(), want, "{name}");
            assert_eq!(changed, want != n, "{name}");
        }
    }

    #[test]
    fn prune_is_deterministic_regardless_of_insertion_order() {
        let forward = clock_of(15, |i| (i % 3) as u64);
        let backward: VClock = forward
            .iter()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|(a, e)| (a.clone(), e))
            .collect();
        let (mut x, mut y) = (forward, backward);
        x.prune(10, &PruneConfig::paper());
        y.prune(10, &PruneConfig::paper());
        assert_eq!(x, y);
        assert_eq!(x.len(), 10);
    }
}
