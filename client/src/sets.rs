//! Typed operations on set buckets (issue 14): `add`, `remove` and `show` on a `cart` bucket
//! (an observed-remove set) or a `union` bucket (the paper's cart). Each reads the key's
//! resolved value, applies the operation to it and writes the result with the read's context,
//! so the write supersedes every sibling it merged.
//!
//! A cart add draws a fresh random tag, so adds from any number of clients never collide and a
//! remove takes away exactly the adds its read saw (add wins over a concurrent remove). This
//! module must not know how requests travel or how nodes resolve.

use dynamo_resolve::{Cart, ItemSet, Resolution, Resolver};

use crate::client::{Client, ClientError, GetOutcome};
use dynamo_protocol::RequestOptions;

/// A change to a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// Put an item in.
    Add(Vec<u8>),
    /// Take an item out.
    Remove(Vec<u8>),
}

/// A set as a read (and a write, if any) left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetView {
    /// The bucket's resolver (`cart` or `union`).
    pub resolver: Resolver,
    /// The items, in byte order.
    pub items: Vec<Vec<u8>>,
    /// How many versions the read merged.
    pub merged: usize,
    /// What the merge did that a person should know.
    pub notes: Vec<String>,
    /// Whether the operation changed the items (false for a show, an add of an item already
    /// in, or a remove of an item not in).
    pub changed: bool,
}

/// A set's state as its resolver keeps it.
enum State {
    Cart(Cart),
    Union(ItemSet),
}

impl State {
    fn items(&self) -> Vec<Vec<u8>> {
        match self {
            State::Cart(cart) => cart.items().map(<[u8]>::to_vec).collect(),
            State::Union(set) => set.0.iter().cloned().collect(),
        }
    }

    /// Applies `op`: whether the items changed, and whether the state did (a cart add of an
    /// item already in still adds a tag, so a remove that did not see this add cannot take the
    /// item out: add wins).
    fn apply(&mut self, op: &SetOp) -> Result<(bool, bool), ClientError> {
        Ok(match (self, op) {
            (State::Cart(cart), SetOp::Add(item)) => {
                let new = !cart.contains(item);
                (new, cart.add(item, random_tag()?))
            }
            (State::Cart(cart), SetOp::Remove(item)) => {
                let removed = cart.remove(item);
                (removed, removed)
            }
            (State::Union(set), SetOp::Add(item)) => {
                let new = set.0.insert(item.clone());
                (new, new)
            }
            (State::Union(set), SetOp::Remove(item)) => {
                let removed = set.0.remove(item);
                (removed, removed)
            }
        })
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            State::Cart(cart) => cart.encode(),
            State::Union(set) => set.encode(),
        }
    }
}

/// A tag no other add uses: 64 random bits.
fn random_tag() -> Result<u64, ClientError> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ClientError::Unexpected("the system gave no randomness for a tag".into()))?;
    Ok(u64::from_le_bytes(bytes))
}

fn not_a_set(bucket: &str, resolver: Resolver) -> ClientError {
    ClientError::WrongBucket(format!(
        "bucket {bucket} resolves by {resolver}; set operations need a bucket created with \
         --resolver cart (or union)"
    ))
}

/// The state a resolution describes, empty for a key not found.
fn state_of(
    bucket: &str,
    resolver: Resolver,
    resolution: Option<&Resolution>,
) -> Result<State, ClientError> {
    let bytes = resolution.and_then(|r| r.value.as_deref());
    let unreadable = |e: postcard::Error| {
        ClientError::Unexpected(format!(
            "bucket {bucket}: the resolved set does not decode: {e}"
        ))
    };
    Ok(match resolver {
        Resolver::Cart => State::Cart(
            bytes
                .map_or(Ok(Cart::default()), Cart::decode)
                .map_err(unreadable)?,
        ),
        Resolver::Union => State::Union(
            bytes
                .map_or(Ok(ItemSet::default()), ItemSet::decode)
                .map_err(unreadable)?,
        ),
        other => return Err(not_a_set(bucket, other)),
    })
}

impl Client {
    /// Reads a set; `op`, if any, is applied and written with the read's context.
    pub async fn update_set(
        &self,
        bucket: &str,
        key: &[u8],
        op: Option<SetOp>,
        options: RequestOptions,
    ) -> Result<SetView, ClientError> {
        let (resolver, resolution, context) = match self.get(bucket, key, options).await? {
            GetOutcome::Found(reply) => match reply.resolution {
                Some(resolution) => (resolution.resolver, Some(resolution), reply.context),
                None => return Err(not_a_set(bucket, Resolver::Siblings)),
            },
            // A key never written says nothing of its bucket: ask the bucket table.
            GetOutcome::NotFound { context } => {
                let buckets = self.list_buckets().await?;
                let resolver = buckets
                    .iter()
                    .find(|b| b.name == bucket)
                    .map_or(Resolver::Siblings, |b| b.resolver);
                (resolver, None, context)
            }
        };
        let mut state = state_of(bucket, resolver, resolution.as_deref())?;
        let (changed, state_changed) = match &op {
            Some(op) => state.apply(op)?,
            None => (false, false),
        };
        // A read that merged versions is written back too, so the siblings collapse.
        let merged = resolution.as_ref().map_or(0, |r| r.merged);
        if op.is_some() && (state_changed || merged > 1) {
            self.put(bucket, key, state.encode(), Some(context), options)
                .await?;
        }
        Ok(SetView {
            resolver,
            items: state.items(),
            merged,
            notes: resolution.map(|r| r.notes).unwrap_or_default(),
            changed,
        })
    }
}
