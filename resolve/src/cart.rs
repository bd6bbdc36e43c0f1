//! The shopping cart as an observed-remove set (add-wins OR-Set, Shapiro et al. 2011, as in
//! Riak's data types): every add carries a unique tag, and a remove takes away exactly the tags
//! it observed. An item removed on one side of a partition therefore stays removed after the
//! heal (the paper's union cart brings it back), and an add the remove did not see survives it.
//!
//! The state keeps, per removed item, the tags its removes observed (tombstones), so that a
//! version that still holds an old add cannot bring the item back. They grow with the number of
//! distinct adds ever removed; a version-vector form (ORSWOT) would bound them and is left for
//! later. This module must not know where carts are stored or how tags are drawn.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A cart's items, as a join-semilattice (see [`Cart::join`]).
///
/// ```
/// use dynamo_resolve::Cart;
///
/// let mut cart = Cart::default();
/// cart.add(b"kibble", 1);
/// let mut left = cart.clone(); // one side of a partition removes kibble...
/// left.remove(b"kibble");
/// let mut right = cart.clone(); // ...the other, with the old version, adds a toy.
/// right.add(b"toy", 2);
/// let healed = left.join(&right);
/// assert_eq!(healed.items().collect::<Vec<_>>(), vec![&b"toy"[..]]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cart {
    /// Items present, each with the tags of its adds that no remove observed (never empty).
    live: BTreeMap<Vec<u8>, BTreeSet<u64>>,
    /// Items removed, each with the tags its removes observed (never empty).
    removed: BTreeMap<Vec<u8>, BTreeSet<u64>>,
}

impl Cart {
    /// Adds `item` under `tag`, a number no other add of any client uses (a random 64-bit
    /// number is enough). Returns false if a remove already observed that tag.
    pub fn add(&mut self, item: &[u8], tag: u64) -> bool {
        if self
            .removed
            .get(item)
            .is_some_and(|tags| tags.contains(&tag))
        {
            return false;
        }
        self.live.entry(item.to_vec()).or_default().insert(tag);
        true
    }

    /// Removes `item`: exactly the adds this version has seen. Returns whether it was present.
    pub fn remove(&mut self, item: &[u8]) -> bool {
        let Some(tags) = self.live.remove(item) else {
            return false;
        };
        self.removed.entry(item.to_vec()).or_default().extend(tags);
        true
    }

    /// Whether `item` is in the cart.
    pub fn contains(&self, item: &[u8]) -> bool {
        self.live.contains_key(item)
    }

    /// The items in the cart, in byte order.
    pub fn items(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.live.keys().map(Vec::as_slice)
    }

    /// Whether this version removed `item` and has not seen `tag` added (so an add it did not
    /// observe overrides its remove).
    pub(crate) fn removed_without_seeing(&self, item: &[u8], tag: u64) -> bool {
        !self.contains(item)
            && self
                .removed
                .get(item)
                .is_some_and(|tags| !tags.contains(&tag))
    }

    /// The tags keeping `item` in the cart.
    pub(crate) fn live_tags(&self, item: &[u8]) -> impl Iterator<Item = u64> + '_ {
        self.live.get(item).into_iter().flatten().copied()
    }

    /// The join of two versions: every add either has seen, less every add either's removes
    /// observed. Commutative, associative and idempotent, so replicas that receive versions
    /// in any order agree.
    #[must_use]
    pub fn join(&self, other: &Cart) -> Cart {
        let mut joined = self.clone();
        for (item, tags) in &other.removed {
            joined.removed.entry(item.clone()).or_default().extend(tags);
        }
        for (item, tags) in &other.live {
            joined.live.entry(item.clone()).or_default().extend(tags);
        }
        joined.normalize();
        joined
    }

    /// Drops live tags a remove observed, and empty entries: one canonical form per state, so
    /// equal states encode to equal bytes.
    fn normalize(&mut self) {
        let removed = &self.removed;
        self.live.retain(|item, tags| {
            if let Some(gone) = removed.get(item) {
                tags.retain(|tag| !gone.contains(tag));
            }
            !tags.is_empty()
        });
        self.removed.retain(|_, tags| !tags.is_empty());
    }

    /// The bytes stored for this cart.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// A cart from stored bytes (in canonical form whatever the bytes said).
    pub fn decode(bytes: &[u8]) -> Result<Cart, postcard::Error> {
        let mut cart: Cart = postcard::from_bytes(bytes)?;
        cart.normalize();
        Ok(cart)
    }
}
