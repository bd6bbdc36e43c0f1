//! Dotted version vector sets: one key's sibling values with their causal history.
//!
//! Based on Preguiça, Baquero, Almeida et al., "Dotted Version Vectors: Logical Clocks for
//! Optimistic Replication" (2012), in the compact "set" form Riak uses (`dvvset`). Each value
//! carries a *dot* `(actor, counter)`: the single write event that created it. Per actor the set
//! stores the counter of the latest event seen and the still-live values, newest first; value
//! `k` (0-based) of an entry with counter `n` has dot `(actor, n - k)`. The live dots of an actor
//! are always a contiguous suffix `n - len + 1 ..= n`.
//!
//! Why dots: with a plain vector clock per object, two clients doing read-modify-write through
//! the same coordinator with stale contexts make siblings pile up without bound; with dots a
//! write discards exactly the values its context has seen, so the sibling count stays at the
//! number of truly concurrent writers (paper §4.4 "the client must perform the reconciliation").
//!
//! This module must NOT know the network, storage or the wall clock: `now` is an argument and
//! actors are the coordinating replicas, never clients. Tombstones are just values: make `V` an
//! enum with a deleted variant.

use std::cmp::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::vclock::{Actor, Causality, Entry, VClock, merge_by_actor};

/// One actor's part of a [`DvvSet`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct DvvEntry<V> {
    actor: Actor,
    /// Latest event of `actor` this set has seen (>= 1, >= `values.len()`).
    counter: u64,
    /// Caller-supplied time of the latest event (for pruning the derived context).
    timestamp: u64,
    /// Live values, newest first: `values[k]` has dot `(actor, counter - k)`.
    values: Vec<V>,
}

impl<V> DvvEntry<V> {
    fn clock_entry(&self) -> Entry {
        Entry {
            counter: self.counter,
            timestamp: self.timestamp,
        }
    }

    /// Drops the values whose dots `seen` (a counter for this actor) covers and raises the
    /// counter to `seen`.
    fn discard(&mut self, seen: Entry) {
        let live = self.counter.saturating_sub(seen.counter);
        if (self.values.len() as u64) > live {
            self.values.truncate(live as usize);
        }
        let joined = self.clock_entry().join(seen);
        self.counter = joined.counter;
        self.timestamp = joined.timestamp;
    }
}

/// Why a [`DvvSet`] received from a peer or storage is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DvvSetError {
    /// Actors must be strictly increasing (sorted, no duplicates).
    #[error("dvvset actors are not sorted and unique at `{actor}`")]
    UnsortedActors {
        /// The first out-of-order or repeated actor.
        actor: Actor,
    },
    /// An entry must have a counter >= 1 and at least as many events as live values.
    #[error("dvvset entry for `{actor}` has counter {counter} but {values} values")]
    BadCounter {
        /// The offending actor.
        actor: Actor,
        /// Its counter.
        counter: u64,
        /// How many values it holds.
        values: usize,
    },
}

/// A dotted version vector set: the sibling values of one key and their causal context.
///
/// Laws (checked by the tests against a model): [`DvvSet::sync`] is commutative, associative
/// and idempotent; [`DvvSet::update`] removes exactly the values whose dots its context covers
/// and adds one value with a fresh dot of the coordinating actor.
///
/// Precondition for the laws: a dot names one value (honest replicas never reuse a dot). If two
/// sets disagree on the value of a dot, `sync` keeps one of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DvvSet<V> {
    entries: Vec<DvvEntry<V>>,
}

impl<V> Default for DvvSet<V> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<V> DvvSet<V> {
    /// A set with no values and no history (a key never written).
    pub fn empty() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// A set holding a first `value` written by coordinator `actor` at `now` (dot `(actor, 1)`).
    ///
    /// Every stored value needs a dot, so unlike Riak's client-side `new/1` the coordinating
    /// actor is required here.
    pub fn new(actor: &Actor, value: V, now: u64) -> Self {
        let mut set = Self::empty();
        set.update(&VClock::new(), actor, value, now);
        set
    }

    /// A coordinator's write: discards every value whose dot `context` covers (what the client
    /// read), then adds `value` with the dot `(actor, n + 1)` where `n` is the highest counter of
    /// `actor` known to this set or to `context`. Returns the new dot's counter.
    ///
    /// Values the client did not see stay as siblings. `context` entries unknown to the set are
    /// recorded so that later syncs discard the overwritten values elsewhere too.
    pub fn update(&mut self, context: &VClock, actor: &Actor, value: V, now: u64) -> u64 {
        let mut merged: Vec<DvvEntry<V>> =
            Vec::with_capacity(self.entries.len().max(context.len()) + 1);
        let mut mine = std::mem::take(&mut self.entries).into_iter().peekable();
        let mut theirs = context.iter().peekable();
        loop {
            let order = match (mine.peek(), theirs.peek()) {
                (Some(m), Some((t, _))) => m.actor.cmp(t),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => break,
            };
            match order {
                Ordering::Less => merged.extend(mine.next()),
                Ordering::Greater => {
                    if let Some((t, seen)) = theirs.next() {
                        merged.push(DvvEntry {
                            actor: t.clone(),
                            counter: seen.counter,
                            timestamp: seen.timestamp,
                            values: Vec::new(),
                        });
                    }
                }
                Ordering::Equal => {
                    if let (Some(mut entry), Some((_, seen))) = (mine.next(), theirs.next()) {
                        entry.discard(seen);
                        merged.push(entry);
                    }
                }
            }
        }
        let counter = match merged.binary_search_by(|e| e.actor.cmp(actor)) {
            Ok(i) => {
                let entry = &mut merged[i];
                entry.counter = entry.counter.saturating_add(1);
                entry.timestamp = now;
                entry.values.insert(0, value);
                entry.counter
            }
            Err(i) => {
                merged.insert(
                    i,
                    DvvEntry {
                        actor: actor.clone(),
                        counter: 1,
                        timestamp: now,
                        values: vec![value],
                    },
                );
                1
            }
        };
        self.entries = merged;
        counter
    }

    /// Consuming form of [`DvvSet::update`].
    #[must_use]
    pub fn updated(mut self, context: &VClock, actor: &Actor, value: V, now: u64) -> Self {
        self.update(context, actor, value, now);
        self
    }

    /// The causal context clients read and send back: the join of all dots this set has seen.
    pub fn context(&self) -> VClock {
        self.entries
            .iter()
            .map(|e| (e.actor.clone(), e.clock_entry()))
            .collect()
    }

    /// The live values (siblings), by actor then newest first.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.entries.iter().flat_map(|e| e.values.iter())
    }

    /// The live values with their dots `(actor, counter)`, by actor then newest first.
    pub fn iter(&self) -> impl Iterator<Item = (&Actor, u64, &V)> + '_ {
        self.entries.iter().flat_map(|e| {
            e.values
                .iter()
                .zip(0..)
                .map(move |(v, k)| (&e.actor, e.counter - k, v))
        })
    }

    /// Each actor's newest live value with its dot `(actor, counter)` and the time its
    /// coordinator wrote it (the `now` given to [`DvvSet::update`]); actors whose values were
    /// all superseded are left out. Older live values of an actor were written no later, so
    /// the value with the largest time here is the newest write of the whole set.
    pub fn newest_per_actor(&self) -> impl Iterator<Item = (&Actor, u64, u64, &V)> + '_ {
        self.entries.iter().filter_map(|e| {
            e.values
                .first()
                .map(|v| (&e.actor, e.counter, e.timestamp, v))
        })
    }

    /// Takes the live values out, by actor then newest first.
    pub fn into_values(self) -> Vec<V> {
        self.entries.into_iter().flat_map(|e| e.values).collect()
    }

    /// Number of live values (siblings).
    pub fn len(&self) -> usize {
        self.entries.iter().map(|e| e.values.len()).sum()
    }

    /// True when there is no live value. A set that has been written always keeps at least the
    /// values of its causally maximal writes, so this means "never written".
    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(|e| e.values.is_empty())
    }

    /// Causal relation of the two sets' histories (their contexts).
    pub fn compare(&self, other: &Self) -> Causality {
        self.context().compare(&other.context())
    }

    /// True when `self` has seen everything `other` has (read repair can skip `other`).
    pub fn descends(&self, other: &Self) -> bool {
        self.context().descends(&other.context())
    }

    /// True when `self` is strictly older than `other` (read repair must update `self`).
    pub fn less(&self, other: &Self) -> bool {
        self.compare(other) == Causality::Before
    }
}

impl<V: Clone> DvvSet<V> {
    /// Joins two replicas' sets: a value survives if each side either still holds it or has
    /// never seen its dot. Commutative, associative and idempotent.
    #[must_use]
    pub fn sync(&self, other: &Self) -> Self {
        let entries = merge_by_actor(&self.entries, &other.entries, |e| &e.actor, sync_entry);
        Self { entries }
    }
}

/// Joins one actor's entries. Live dots are `(n - len, n]` on each side; a dot survives unless
/// one side has seen it (`<= n`) and dropped it (`<= n - len`), so the result is
/// `(max(n1 - len1, n2 - len2), max(n1, n2)]`.
fn sync_entry<V: Clone>(x: &DvvEntry<V>, y: &DvvEntry<V>) -> DvvEntry<V> {
    let floor_x = x.counter.saturating_sub(x.values.len() as u64);
    let floor_y = y.counter.saturating_sub(y.values.len() as u64);
    let floor = floor_x.max(floor_y);
    // Take values from the side with the higher counter; on a tie the one with fewer values
    // (its values are the newest prefix of the other's), then `x` for determinism.
    let take_y = match x.counter.cmp(&y.counter) {
        Ordering::Greater => false,
        Ordering::Less => true,
        Ordering::Equal => y.values.len() < x.values.len(),
    };
    let source = if take_y { y } else { x };
    let live = source.counter.saturating_sub(floor) as usize;
    let joined = x.clock_entry().join(y.clock_entry());
    DvvEntry {
        actor: x.actor.clone(),
        counter: joined.counter,
        timestamp: joined.timestamp,
        values: source.values.iter().take(live).cloned().collect(),
    }
}

impl<V> TryFrom<Vec<DvvEntry<V>>> for DvvSet<V> {
    type Error = DvvSetError;

    fn try_from(entries: Vec<DvvEntry<V>>) -> Result<Self, Self::Error> {
        for (i, e) in entries.iter().enumerate() {
            if e.counter == 0 || (e.values.len() as u64) > e.counter {
                return Err(DvvSetError::BadCounter {
                    actor: e.actor.clone(),
                    counter: e.counter,
                    values: e.values.len(),
                });
            }
            if i > 0 && entries[i - 1].actor >= e.actor {
                return Err(DvvSetError::UnsortedActors {
                    actor: e.actor.clone(),
                });
            }
        }
        Ok(Self { entries })
    }
}

impl<V: Serialize> Serialize for DvvSet<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(serializer)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for DvvSet<V> {
    /// Validates what a peer sent: sorted unique actors, `1 <= values <= counter`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<DvvEntry<V>>::deserialize(deserializer)?;
        DvvSet::try_from(entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str) -> Actor {
        Actor::from(name)
    }

    fn vals<V: Clone + Ord>(s: &DvvSet<V>) -> Vec<V> {
        let mut v: Vec<V> = s.values().cloned().collect();
        v.sort();
        v
    }

    /// Paper §4.4 / Figure 3: D1 written by Sx; D2 overwrites it; two concurrent writes D3 (via
    /// Sy) and D4 (via Sz) from context D2 become siblings; D5 (via Sx) with the merged context
    /// replaces both.
    #[test]
    fn paper_figure_3() {
        let (sx, sy, sz) = (a("sx"), a("sy"), a("sz"));
        let d1 = DvvSet::new(&sx, "d1", 1);
        let d2 = d1.clone().updated(&d1.context(), &sx, "d2", 2);
        assert_eq!(vals(&d2), ["d2"]);
        assert_eq!(d2.context().get(&sx), 2);
        let d3 = d2.clone().updated(&d2.context(), &sy, "d3", 3);
        let d4 = d2.clone().updated(&d2.context(), &sz, "d4", 4);
        assert_eq!(d3.compare(&d4), Causality::Concurrent);
        assert!(d2.less(&d3) && d3.descends(&d2));
        let both = d3.sync(&d4);
        assert_eq!(vals(&both), ["d3", "d4"]);
        let d5 = both.clone().updated(&both.context(), &sx, "d5", 5);
        assert_eq!(vals(&d5), ["d5"]);
        assert_eq!(d5.context().get(&sx), 3);
        assert!(d5.descends(&d3) && d5.descends(&d4));
    }

    /// Table: (description, context spec per actor counter, expected surviving values).
    #[test]
    fn update_discards_exactly_what_context_saw() {
        // Store: actor a has dots a1..a3 live ("a1","a2","a3"), actor b has b1 live.
        let (ra, rb) = (a("a"), a("b"));
        let mut base = DvvSet::empty();
        base.update(&VClock::new(), &ra, "a1", 0);
        base.update(&VClock::new(), &ra, "a2", 0);
        base.update(&VClock::new(), &ra, "a3", 0);
        base.update(&VClock::new(), &rb, "b1", 0);
        assert_eq!(base.len(), 4);
        let cases: [(&str, u64, u64, &[&str]); 5] = [
            (
                "empty context keeps all",
                0,
                0,
                &["a1", "a2", "a3", "b1", "new"],
            ),
            ("a:1 drops a1", 1, 0, &["a2", "a3", "b1", "new"]),
            ("a:3 drops all of a", 3, 0, &["b1", "new"]),
            ("b:1 drops b1", 0, 1, &["a1", "a2", "a3", "new"]),
            ("full context", 3, 1, &["new"]),
        ];
        for (name, ca, cb, want) in cases {
            let ctx: VClock = [(ra.clone(), ca), (rb.clone(), cb)]
                .into_iter()
                .map(|(actor, counter)| {
                    (
                        actor,
                        Entry {
                            counter,
                            timestamp: 0,
                        },
                    )
                })
                .collect();
            let mut s = base.clone();
            let dot = s.update(&ctx, &rb, "new", 9);
            assert_eq!(dot, 2, "{name}: new dot after b's latest");
            assert_eq!(vals(&s), want, "{name}");
        }
    }

    /// A context from a fresher replica (counter above what this coordinator stored) still gets
    /// a dot strictly above every known event of the coordinator.
    #[test]
    fn new_dot_is_above_context_counter() {
        let ra = a("a");
        let stale = DvvSet::new(&ra, 1, 0);
        let ctx: VClock = [(
            "a",
            Entry {
                counter: 7,
                timestamp: 0,
            },
        )]
        .into_iter()
        .collect();
        let mut s = stale.clone();
        assert_eq!(s.update(&ctx, &ra, 2, 1), 8);
        assert_eq!(vals(&s), [2]);
    }

    #[test]
    fn iter_reports_dots_newest_first() {
        let ra = a("a");
        let mut s = DvvSet::new(&ra, 'x', 0);
        s.update(&VClock::new(), &ra, 'y', 1);
        let dots: Vec<_> = s
            .iter()
            .map(|(actor, c, v)| (actor.as_str(), c, *v))
            .collect();
        assert_eq!(dots, [("a", 2, 'y'), ("a", 1, 'x')]);
        assert_eq!(s.into_values(), ['y', 'x']);
    }

    #[test]
    fn try_from_rejects_malformed() {
        let entry = |actor: &str, counter, n: usize| DvvEntry {
            actor: a(actor),
            counter,
            timestamp: 0,
            values: vec![0_u8; n],
        };
        let cases: [(Vec<DvvEntry<u8>>, bool); 5] = [
            (vec![entry("a", 2, 2), entry("b", 1, 0)], true),
            (vec![entry("b", 1, 1), entry("a", 1, 1)], false),
            (vec![entry("a", 1, 1), entry("a", 2, 1)], false),
            (vec![entry("a", 1, 2)], false),
            (vec![entry("a", 0, 0)], false),
        ];
        for (entries, ok) in cases {
            assert_eq!(DvvSet::try_from(entries).is_ok(), ok);
        }
    }
}
