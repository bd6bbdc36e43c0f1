//! Conflict resolution chosen per bucket (DeCandia et al. 2007, sections 4.4 and 6.1): the
//! application decides what concurrent versions of a key mean. A [`Resolver`] turns a key's
//! siblings into one value plus an account of what was merged.
//!
//! | resolver   | values are                  | concurrent versions resolve to                  |
//! |------------|-----------------------------|-------------------------------------------------|
//! | `siblings` | any bytes                   | nothing: the client gets every sibling (default) |
//! | `lww`      | any bytes                   | the newest coordinator timestamp (a delete too)  |
//! | `max`      | a decimal integer           | the largest (a high-score list)                 |
//! | `union`    | a set of items ([`ItemSet`])| the union (the paper's cart, anomaly included)  |
//! | `cart`     | an OR-Set ([`Cart`])        | the join: removes stay removed, concurrent adds win |
//!
//! Every resolution is a fold of a join (commutative, associative, idempotent) over the
//! siblings, so it does not depend on the order replicas saw versions in; and since replicas
//! converge to the same sibling set (read repair, hinted handoff and anti-entropy all join
//! version sets), they converge to the same resolved value.
//!
//! ```
//! use dynamo_quorum::{Object, Value};
//! use dynamo_resolve::{ItemSet, Resolver, resolve};
//! use dynamo_vclock::{Actor, VClock};
//!
//! // Two coordinators wrote concurrently (neither saw the other).
//! let mut object = Object::new(&Actor::new("a#1"), Value::Data(ItemSet::from(["book"]).encode()), 10);
//! object.update(&VClock::default(), &Actor::new("b#1"), Value::Data(ItemSet::from(["pen"]).encode()), 20);
//! let resolution = resolve(Resolver::Union, &object).expect("union resolves");
//! let items = ItemSet::decode(resolution.value.as_deref().unwrap())?;
//! assert_eq!(items, ItemSet::from(["book", "pen"]));
//! assert_eq!(resolution.merged, 2);
//! # Ok::<(), postcard::Error>(())
//! ```
//!
//! This crate must not know where versions are stored, how they travel, or how a cart's tags
//! are drawn.

mod cart;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use dynamo_quorum::{Object, distinct_writes};
use serde::{Deserialize, Serialize};

pub use cart::Cart;

/// How a bucket resolves concurrent versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Resolver {
    /// Every sibling goes to the client with the context (Dynamo's default).
    #[default]
    Siblings,
    /// Last write wins by the coordinators' timestamps.
    Lww,
    /// Values are decimal integers; the largest wins.
    Max,
    /// Values are item sets; concurrent versions resolve to their union.
    Union,
    /// Values are observed-remove sets: removes stay removed, concurrent adds win.
    Cart,
}

impl Resolver {
    /// Every resolver, in the order `--help` lists them.
    pub const ALL: [Resolver; 5] = [
        Resolver::Siblings,
        Resolver::Lww,
        Resolver::Max,
        Resolver::Union,
        Resolver::Cart,
    ];

    /// The resolver's name, as buckets are created with.
    pub fn name(self) -> &'static str {
        match self {
            Resolver::Siblings => "siblings",
            Resolver::Lww => "lww",
            Resolver::Max => "max",
            Resolver::Union => "union",
            Resolver::Cart => "cart",
        }
    }

    /// Whether a value written to a bucket with this resolver must be in its format (see
    /// [`validate`]).
    pub fn is_structured(self) -> bool {
        matches!(self, Resolver::Max | Resolver::Union | Resolver::Cart)
    }
}

impl fmt::Display for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A resolver name that is not one of [`Resolver::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown resolver `{0}`: choose one of siblings, lww, max, union, cart")]
pub struct UnknownResolver(pub String);

impl FromStr for Resolver {
    type Err = UnknownResolver;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Resolver::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| UnknownResolver(name.to_string()))
    }
}

/// A value that is not in its bucket's format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A `max` bucket holds decimal integers.
    #[error("a `max` bucket holds decimal integers (like 42 or -7), not {0:?}")]
    NotAnInteger(String),
    /// A `union` or `cart` bucket holds its encoded set.
    #[error("a `{0}` bucket holds its encoded set ({1}); write it with `dynamo cart add`")]
    NotASet(Resolver, String),
}

/// Checks that `value` is in `resolver`'s format, so a bucket never stores what it cannot
/// resolve.
pub fn validate(resolver: Resolver, value: &[u8]) -> Result<(), FormatError> {
    match resolver {
        Resolver::Siblings | Resolver::Lww => Ok(()),
        Resolver::Max => parse_integer(value).map(|_| ()),
        Resolver::Union => ItemSet::decode(value)
            .map(|_| ())
            .map_err(|e| FormatError::NotASet(resolver, e.to_string())),
        Resolver::Cart => Cart::decode(value)
            .map(|_| ())
            .map_err(|e| FormatError::NotASet(resolver, e.to_string())),
    }
}

fn parse_integer(value: &[u8]) -> Result<i64, FormatError> {
    let text = String::from_utf8_lossy(value);
    text.trim()
        .parse()
        .map_err(|_| FormatError::NotAnInteger(text.chars().take(40).collect()))
}

/// A set of items: the value of a `union` bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ItemSet(pub BTreeSet<Vec<u8>>);

impl ItemSet {
    /// The bytes stored for this set.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding a set of byte strings into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// A set from stored bytes.
    pub fn decode(bytes: &[u8]) -> Result<ItemSet, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

impl<const K: usize> From<[&str; K]> for ItemSet {
    fn from(items: [&str; K]) -> Self {
        ItemSet(items.iter().map(|i| i.as_bytes().to_vec()).collect())
    }
}

/// What a resolver made of a key's siblings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The bucket's resolver.
    pub resolver: Resolver,
    /// The resolved value; `None` when a delete won (`lww`) or no sibling was in the bucket's
    /// format.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    /// How many versions were joined (1: there was nothing to resolve).
    pub merged: usize,
    /// What a person should know about the merge beyond its count, one sentence each (for
    /// example "a concurrent remove of kibble was overridden by an add").
    pub notes: Vec<String>,
    /// Versions that lost (`lww`) or could not be read in the bucket's format.
    pub discarded: Vec<Vec<u8>>,
}

/// One sibling as the resolvers see it: the newest write of its coordinator first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    /// When its coordinator wrote it (only the newest sibling of each coordinator has one).
    pub timestamp: Option<u64>,
    /// Its dot, for deterministic ties.
    pub actor: &'a str,
    /// Its dot's counter.
    pub counter: u64,
    /// The bytes, or `None` for a delete.
    pub bytes: Option<&'a [u8]>,
}

/// The siblings of `object` as [`Version`]s, each client write once (two siblings with one
/// write id are one write coordinated twice).
pub fn versions(object: &Object) -> Vec<Version<'_>> {
    let stamps: BTreeMap<(&str, u64), u64> = object
        .newest_per_actor()
        .map(|(actor, counter, stamp, _)| ((actor.as_str(), counter), stamp))
        .collect();
    distinct_writes(object)
        .map(|(actor, counter, value)| Version {
            timestamp: stamps.get(&(actor.as_str(), counter)).copied(),
            actor: actor.as_str(),
            counter,
            bytes: value.bytes(),
        })
        .collect()
}

/// Resolves `object`'s siblings by `resolver`; `None` for [`Resolver::Siblings`] and for a key
/// with no version.
pub fn resolve(resolver: Resolver, object: &Object) -> Option<Resolution> {
    resolve_versions(resolver, &versions(object))
}

/// [`resolve`] over versions given in any order: the result does not depend on it.
pub fn resolve_versions(resolver: Resolver, versions: &[Version<'_>]) -> Option<Resolution> {
    if versions.is_empty() {
        return None;
    }
    // One set and nothing to merge: its bytes are the answer (no decode, join and encode).
    if let ([only], Resolver::Union | Resolver::Cart) = (versions, resolver)
        && let Some(bytes) = only.bytes
        && validate(resolver, bytes).is_ok()
    {
        let mut resolution = empty(resolver, 1);
        resolution.value = Some(bytes.to_vec());
        return Some(resolution);
    }
    let mut resolution = match resolver {
        Resolver::Siblings => return None,
        Resolver::Lww => lww(versions),
        Resolver::Max => max(versions),
        Resolver::Union => union(versions),
        Resolver::Cart => cart(versions),
    };
    resolution.notes.sort();
    resolution.notes.dedup();
    resolution.discarded.sort();
    Some(resolution)
}

fn empty(resolver: Resolver, merged: usize) -> Resolution {
    Resolution {
        resolver,
        value: None,
        merged,
        notes: Vec::new(),
        discarded: Vec::new(),
    }
}

/// Last write wins: the largest (timestamp, actor, counter); a sibling with no timestamp of its
/// own (an older write of a coordinator that also wrote a newer sibling) never wins.
fn lww(versions: &[Version<'_>]) -> Resolution {
    let mut resolution = empty(Resolver::Lww, versions.len());
    let winner = versions
        .iter()
        .max_by_key(|v| (v.timestamp, v.actor, v.counter))
        .map(|v| (v.actor, v.counter));
    for version in versions {
        if Some((version.actor, version.counter)) == winner {
            resolution.value = version.bytes.map(<[u8]>::to_vec);
        } else if let Some(bytes) = version.bytes {
            resolution.discarded.push(bytes.to_vec());
        }
    }
    let lost = versions.len() - 1;
    if lost > 0 {
        resolution.notes.push(format!(
            "the newest write won; {lost} older concurrent {} discarded",
            if lost == 1 {
                "write was"
            } else {
                "writes were"
            },
        ));
    }
    if resolution.value.is_none() {
        resolution
            .notes
            .push("the newest write was a delete".to_string());
    }
    resolution
}

/// Notes shared by the structured resolvers: versions that were unreadable, a concurrent
/// delete. (How many versions merged is [`Resolution::merged`].)
fn merge_notes(resolution: &mut Resolution, deletes: usize) {
    if !resolution.discarded.is_empty() {
        resolution.notes.push(format!(
            "{} versions were not in the `{}` format and were left out",
            resolution.discarded.len(),
            resolution.resolver
        ));
    }
    if deletes > 0 && resolution.merged > deletes {
        resolution
            .notes
            .push("a delete of the key was concurrent with a write, which was kept".to_string());
    }
}

/// Decodes every sibling with `decode`; deletes count as `None`.
fn decoded<'a, T>(
    resolution: &mut Resolution,
    versions: &'a [Version<'a>],
    decode: impl Fn(&[u8]) -> Option<T>,
) -> (Vec<T>, usize) {
    let mut states = Vec::new();
    let mut deletes = 0;
    for version in versions {
        match version.bytes {
            None => deletes += 1,
            Some(bytes) => match decode(bytes) {
                Some(state) => states.push(state),
                None => resolution.discarded.push(bytes.to_vec()),
            },
        }
    }
    (states, deletes)
}

fn max(versions: &[Version<'_>]) -> Resolution {
    let mut resolution = empty(Resolver::Max, versions.len());
    let (numbers, deletes) = decoded(&mut resolution, versions, |b| parse_integer(b).ok());
    resolution.value = numbers
        .into_iter()
        .max()
        .map(|n| n.to_string().into_bytes());
    merge_notes(&mut resolution, deletes);
    resolution
}

fn union(versions: &[Version<'_>]) -> Resolution {
    let mut resolution = empty(Resolver::Union, versions.len());
    let (sets, deletes) = decoded(&mut resolution, versions, |b| ItemSet::decode(b).ok());
    if !sets.is_empty() || deletes > 0 {
        let mut all = ItemSet::default();
        for set in sets {
            all.0.extend(set.0);
        }
        resolution.value = Some(all.encode());
    }
    merge_notes(&mut resolution, deletes);
    resolution
}

fn cart(versions: &[Version<'_>]) -> Resolution {
    let mut resolution = empty(Resolver::Cart, versions.len());
    let (carts, deletes) = decoded(&mut resolution, versions, |b| Cart::decode(b).ok());
    let joined = carts.iter().fold(Cart::default(), |all, c| all.join(c));
    // Add-wins: an item in the join that some version removed without seeing one of the adds
    // keeping it was removed concurrently with that add.
    for item in joined.items() {
        let overridden = joined
            .live_tags(item)
            .any(|tag| carts.iter().any(|c| c.removed_without_seeing(item, tag)));
        if overridden {
            resolution.notes.push(format!(
                "a concurrent remove of {} was overridden by an add",
                String::from_utf8_lossy(item)
            ));
        }
    }
    if !carts.is_empty() || deletes > 0 {
        resolution.value = Some(joined.encode());
    }
    merge_notes(&mut resolution, deletes);
    resolution
}
