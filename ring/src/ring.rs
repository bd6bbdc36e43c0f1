//! The ring value: members, their placement on the hash space, and the questions asked of it
//! (who owns a key, who replicates it, who stands in when a replica is down).
//!
//! This module must not know how liveness is decided (callers pass a predicate), nor anything
//! about the network, storage or time.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::claim::{self, Spacing};
use crate::error::RingError;
use crate::hash::{KeyPosition, key_position};
use crate::member::{Member, NodeId};
use crate::plan::{KeyRange, TransferPlan};

/// Index of a partition (strategy 3) or of a token's arc (strategy 1), in ring order.
pub type PartitionId = u32;

/// The default number of equal partitions.
pub const DEFAULT_PARTITIONS: u32 = 1024;

/// How the hash space is cut and who owns each piece. Owners are indices into
/// [`Ring::members`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Layout {
    /// Strategy 3: `owners.len()` equal partitions (a power of two); partition `p` covers the
    /// positions whose top `log2(Q)` bits equal `p`.
    EqualPartitions {
        /// Owner of each partition.
        owners: Vec<u32>,
    },
    /// Strategy 1: random tokens, sorted by position. A key belongs to the first token at or
    /// after its position, wrapping around (paper 4.2).
    RandomTokens {
        /// `(token position, owner)` pairs, sorted.
        tokens: Vec<(u128, u32)>,
    },
}

/// Whether a target of a request is one of the key's N primary replicas or a stand-in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// One of the first N distinct nodes of the preference list.
    Primary,
    /// A node further down the list that holds the replica for a primary that is down, with a
    /// hint naming it (paper 4.6, hinted handoff).
    Fallback {
        /// The primary this node stands in for.
        for_node: NodeId,
    },
}

/// A node to send a replica to, with its role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The node.
    pub node: NodeId,
    /// Primary or fallback.
    pub role: Role,
}

/// A breach of the spreading rule: a window of N consecutive partitions that repeats a node,
/// or a zone when the ring has at least N zones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Violation {
    /// `node` appears twice in the window that starts at `window_start`.
    SameNode {
        /// First partition of the window.
        window_start: PartitionId,
        /// The repeated node.
        node: NodeId,
    },
    /// `zone` appears twice in the window that starts at `window_start`.
    SameZone {
        /// First partition of the window.
        window_start: PartitionId,
        /// The repeated zone.
        zone: String,
    },
}

/// A versioned placement of keys on nodes. Cheap to query, deterministic to build, and a plain
/// value that can be gossiped (serde) and compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RingRepr", into = "RingRepr")]
pub struct Ring {
    version: u64,
    target_n: u32,
    members: Vec<Member>,
    layout: Layout,
}

/// The serialized form, validated on the way in: a ring from a peer is untrusted input.
#[derive(Serialize, Deserialize)]
struct RingRepr {
    version: u64,
    target_n: u32,
    members: Vec<Member>,
    layout: Layout,
}

impl From<Ring> for RingRepr {
    fn from(ring: Ring) -> Self {
        Self {
            version: ring.version,
            target_n: ring.target_n,
            members: ring.members,
            layout: ring.layout,
        }
    }
}

impl TryFrom<RingRepr> for Ring {
    type Error = RingError;

    fn try_from(repr: RingRepr) -> Result<Self, RingError> {
        if repr.target_n == 0 {
            return Err(RingError::ZeroReplicas);
        }
        // Owners are indices into the member list as sent: a list out of order would be sorted
        // below and silently give partitions to other nodes.
        if repr.members.windows(2).any(|w| w[0].id > w[1].id) {
            return Err(RingError::Malformed("members are not sorted by id"));
        }
        let members = validate_members(repr.members)?;
        let member_count = members.len();
        let in_range = |owner: u32| (owner as usize) < member_count;
        match &repr.layout {
            Layout::EqualPartitions { owners } => {
                check_partition_count(owners.len() as u64)?;
                if !owners.iter().all(|&o| in_range(o)) {
                    return Err(RingError::Malformed("partition owner out of range"));
                }
            }
            Layout::RandomTokens { tokens } => {
                if tokens.is_empty() || !tokens.iter().all(|&(_, o)| in_range(o)) {
                    return Err(RingError::Malformed("token owner out of range"));
                }
                if !tokens.windows(2).all(|w| w[0] <= w[1]) {
                    return Err(RingError::Malformed("tokens are not sorted"));
                }
            }
        }
        Ok(Self {
            version: repr.version,
            target_n: repr.target_n,
            members,
            layout: repr.layout,
        })
    }
}

fn check_partition_count(partitions: u64) -> Result<u32, RingError> {
    match u32::try_from(partitions) {
        Ok(q) if q.is_power_of_two() => Ok(q),
        _ => Err(RingError::PartitionsNotPowerOfTwo(partitions)),
    }
}

/// Sorts members by id and rejects empty lists, duplicates and zero capacities.
fn validate_members(mut members: Vec<Member>) -> Result<Vec<Member>, RingError> {
    if members.is_empty() {
        return Err(RingError::NoMembers);
    }
    members.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(pair) = members.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(RingError::DuplicateMember(pair[0].id.clone()));
    }
    if let Some(member) = members.iter().find(|m| m.capacity == 0) {
        return Err(RingError::ZeroCapacity(member.id.clone()));
    }
    Ok(members)
}

impl Ring {
    /// Strategy 3: `partitions` equal partitions (a power of two) claimed by `members` so that
    /// any `target_n` consecutive partitions are on distinct nodes (and zones) where possible.
    pub fn equal_partitions(
        partitions: u32,
        target_n: usize,
        members: Vec<Member>,
    ) -> Result<Self, RingError> {
        let q = check_partition_count(u64::from(partitions))?;
        let target_n = validate_target_n(target_n)?;
        let members = validate_members(members)?;
        if members.len() > q as usize {
            return Err(RingError::MorePartitionsNeeded {
                members: members.len(),
                partitions: q,
            });
        }
        let spacing = Spacing::new(target_n, &members);
        let owners = claim::fresh(q, &spacing, &members);
        Ok(Self {
            version: 1,
            target_n,
            members,
            layout: Layout::EqualPartitions { owners },
        })
    }

    /// Strategy 1: every member draws `tokens_per_node × capacity` random tokens from `rng`.
    /// Pass a seeded RNG to get the same ring again.
    pub fn random_tokens(
        tokens_per_node: u32,
        target_n: usize,
        members: Vec<Member>,
        rng: &mut impl Rng,
    ) -> Result<Self, RingError> {
        if tokens_per_node == 0 {
            return Err(RingError::ZeroTokens);
        }
        let target_n = validate_target_n(target_n)?;
        let members = validate_members(members)?;
        let mut tokens = Vec::new();
        for (index, member) in members.iter().enumerate() {
            for _ in 0..u64::from(tokens_per_node) * u64::from(member.capacity) {
                tokens.push((rng.random::<u128>(), index as u32));
            }
        }
        tokens.sort_unstable();
        Ok(Self {
            version: 1,
            target_n,
            members,
            layout: Layout::RandomTokens { tokens },
        })
    }

    /// The ring version; every membership change increments it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The replica count the claim spreads for (the largest N of any bucket).
    pub fn target_n(&self) -> usize {
        self.target_n as usize
    }

    /// The members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with this id, if any.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.index_of(id).map(|i| &self.members[i])
    }

    /// How the hash space is cut.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of partitions (strategy 3) or tokens (strategy 1).
    pub fn partition_count(&self) -> u32 {
        match &self.layout {
            Layout::EqualPartitions { owners } => owners.len() as u32,
            Layout::RandomTokens { tokens } => tokens.len() as u32,
        }
    }

    /// The partition a position falls in.
    pub fn partition_of(&self, position: KeyPosition) -> PartitionId {
        match &self.layout {
            Layout::EqualPartitions { owners } => {
                let bits = owners.len().trailing_zeros();
                position.checked_shr(128 - bits).unwrap_or(0) as PartitionId
            }
            Layout::RandomTokens { tokens } => {
                let index = tokens.partition_point(|&(token, _)| token < position);
                (index % tokens.len()) as PartitionId
            }
        }
    }

    /// The partition a key falls in.
    pub fn partition_of_key(&self, key: &[u8]) -> PartitionId {
        self.partition_of(key_position(key))
    }

    /// The positions covered by partition `p` (taken modulo the partition count).
    pub fn partition_range(&self, partition: PartitionId) -> KeyRange {
        match &self.layout {
            Layout::EqualPartitions { owners } => {
                let q = owners.len() as u128;
                let p = u128::from(partition) % q;
                let size = if q == 1 {
                    0
                } else {
                    1u128 << (128 - q.trailing_zeros())
                };
                let start = p * size;
                KeyRange {
                    start,
                    end: start.wrapping_add(size).wrapping_sub(1),
                }
            }
            Layout::RandomTokens { tokens } => {
                let i = partition as usize % tokens.len();
                let previous = tokens[(i + tokens.len() - 1) % tokens.len()].0;
                KeyRange {
                    start: previous.wrapping_add(1),
                    end: tokens[i].0,
                }
            }
        }
    }

    /// The node that owns partition `p` (the first replica of its keys).
    pub fn partition_owner(&self, partition: PartitionId) -> &NodeId {
        let owner = match &self.layout {
            Layout::EqualPartitions { owners } => owners[partition as usize % owners.len()],
            Layout::RandomTokens { tokens } => tokens[partition as usize % tokens.len()].1,
        };
        &self.members[owner as usize].id
    }

    /// Paper 4.3: the first `n` distinct nodes met walking clockwise from the key's position.
    /// Fewer when the ring has fewer than `n` members.
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<&NodeId> {
        self.replicas_of_partition(self.partition_of_key(key), n)
    }

    /// The first `n` distinct nodes walking clockwise from partition `p`: the replicas of every
    /// key in it.
    pub fn replicas_of_partition(&self, partition: PartitionId, n: usize) -> Vec<&NodeId> {
        // The hot path of every request: one allocation, members compared by address.
        let mut found: Vec<&NodeId> = Vec::with_capacity(n.min(self.members.len()));
        self.walk_owners(partition, |index| {
            let node = &self.members[index as usize].id;
            if !found.iter().any(|seen| std::ptr::eq(*seen, node)) {
                found.push(node);
            }
            found.len() < n && found.len() < self.members.len()
        });
        found
    }

    /// Paper 4.6: the `n` primaries of the key that `is_up` accepts, followed by one fallback
    /// (the next distinct node further clockwise that is up) for each primary that is down,
    /// tagged with the primary it stands in for. Fewer targets when not enough nodes are up.
    pub fn extended_preference_list(
        &self,
        key: &[u8],
        n: usize,
        mut is_up: impl FnMut(&NodeId) -> bool,
    ) -> Vec<Target> {
        let mut targets = Vec::with_capacity(n.min(self.members.len()));
        let mut primaries_seen = 0;
        let mut down: std::collections::VecDeque<NodeId> = std::collections::VecDeque::new();
        self.walk_distinct(self.partition_of_key(key), |index| {
            let node = &self.members[index as usize].id;
            if primaries_seen < n {
                primaries_seen += 1;
                if is_up(node) {
                    targets.push(Target {
                        node: node.clone(),
                        role: Role::Primary,
                    });
                } else {
                    down.push_back(node.clone());
                }
            } else if is_up(node)
                && let Some(for_node) = down.pop_front()
            {
                targets.push(Target {
                    node: node.clone(),
                    role: Role::Fallback { for_node },
                });
            }
            primaries_seen < n || !down.is_empty()
        });
        targets
    }

    /// Every window of `target_n` consecutive partitions that repeats a node (or a zone, when
    /// there are at least `target_n` zones). Empty for a well-spread ring; some configurations
    /// cannot avoid breaches (see the `claim` module docs), and preference lists stay correct
    /// regardless because they skip repeated nodes.
    pub fn violations(&self) -> Vec<Violation> {
        let owners = self.owner_sequence();
        let q = owners.len();
        let spacing = Spacing::new(self.target_n, &self.members);
        let mut found = Vec::new();
        for start in 0..q {
            let window: Vec<u32> = (0..spacing.node_window().min(q))
                .map(|i| owners[(start + i) % q])
                .collect();
            if let Some(node) = first_repeat(&window) {
                found.push(Violation::SameNode {
                    window_start: start as PartitionId,
                    node: self.members[node as usize].id.clone(),
                });
            }
            if spacing.zone_aware() {
                let zones: Vec<u32> = (0..spacing.zone_window().min(q))
                    .map(|i| spacing.zone_of(owners[(start + i) % q]))
                    .collect();
                if let Some(zone) = first_repeat(&zones) {
                    let member = self
                        .members
                        .iter()
                        .enumerate()
                        .find(|(i, _)| spacing.zone_of(*i as u32) == zone);
                    if let Some((_, member)) = member {
                        found.push(Violation::SameZone {
                            window_start: start as PartitionId,
                            zone: member.zone.clone(),
                        });
                    }
                }
            }
        }
        found
    }

    /// How many partitions (or tokens) each member owns as first replica, in member order.
    pub fn partition_counts(&self) -> Vec<(&NodeId, u32)> {
        let mut counts = vec![0u32; self.members.len()];
        for &owner in self.owner_sequence().iter() {
            counts[owner as usize] += 1;
        }
        self.members.iter().map(|m| &m.id).zip(counts).collect()
    }

    /// For every member (in member order), the fraction of the hash space for which it is one of
    /// the first `n` replicas. The fractions sum to `min(n, members)`.
    pub fn replica_shares(&self, n: usize) -> Vec<(&NodeId, f64)> {
        let mut shares = vec![0f64; self.members.len()];
        for partition in 0..self.partition_count() {
            let range = self.partition_range(partition);
            let width = range.len_fraction();
            self.walk_distinct(partition, {
                let mut taken = 0;
                let shares = &mut shares;
                move |index| {
                    shares[index as usize] += width;
                    taken += 1;
                    taken < n
                }
            });
        }
        self.members.iter().map(|m| &m.id).zip(shares).collect()
    }

    /// A new ring for a new member list (joins, leaves and capacity changes at once), with the
    /// transfers that carry the data there. Strategy 3 only.
    pub fn with_members(&self, members: Vec<Member>) -> Result<(Ring, TransferPlan), RingError> {
        let Layout::EqualPartitions { owners } = &self.layout else {
            return Err(RingError::NotEqualPartitions);
        };
        let members = validate_members(members)?;
        let q = owners.len() as u32;
        if members.len() > q as usize {
            return Err(RingError::MorePartitionsNeeded {
                members: members.len(),
                partitions: q,
            });
        }
        let previous: Vec<Option<u32>> = owners
            .iter()
            .map(|&o| {
                let id = &self.members[o as usize].id;
                members
                    .binary_search_by(|m| m.id.cmp(id))
                    .ok()
                    .map(|i| i as u32)
            })
            .collect();
        let spacing = Spacing::new(self.target_n, &members);
        let owners = claim::rebalance(q, &spacing, &members, &previous);
        let next = Ring {
            version: self.next_version()?,
            target_n: self.target_n,
            members,
            layout: Layout::EqualPartitions { owners },
        };
        let plan = TransferPlan::between(self, &next);
        Ok((next, plan))
    }

    /// Clears tail violations left by earlier changes, moving partitions between any nodes if
    /// needed (an explicit operator step, since it may move much more than a join or leave).
    /// Returns the ring unchanged (same version, empty plan) when there is nothing to improve.
    pub fn respread(&self) -> Result<(Ring, TransferPlan), RingError> {
        let Layout::EqualPartitions { owners } = &self.layout else {
            return Err(RingError::NotEqualPartitions);
        };
        let spacing = Spacing::new(self.target_n, &self.members);
        let owners = claim::respread(owners.len() as u32, &spacing, &self.members, owners);
        if matches!(&self.layout, Layout::EqualPartitions { owners: current } if *current == owners)
        {
            return Ok((self.clone(), TransferPlan::between(self, self)));
        }
        let next = Ring {
            version: self.next_version()?,
            target_n: self.target_n,
            members: self.members.clone(),
            layout: Layout::EqualPartitions { owners },
        };
        let plan = TransferPlan::between(self, &next);
        Ok((next, plan))
    }

    /// The version of the next ring; a ring at the last version cannot change (a peer could send
    /// one, and an overflow must not panic or wrap to a ring everybody ignores).
    fn next_version(&self) -> Result<u64, RingError> {
        self.version
            .checked_add(1)
            .ok_or(RingError::Malformed("the ring is at the last version"))
    }

    /// Paper 4.8.1: an explicit join. Fails if the id is already a member.
    pub fn add_member(&self, member: Member) -> Result<(Ring, TransferPlan), RingError> {
        if self.index_of(&member.id).is_some() {
            return Err(RingError::DuplicateMember(member.id));
        }
        let mut members = self.members.clone();
        members.push(member);
        self.with_members(members)
    }

    /// Paper 4.8.1: an explicit leave. Fails if the id is not a member or is the last one.
    pub fn remove_member(&self, id: &NodeId) -> Result<(Ring, TransferPlan), RingError> {
        let index = self
            .index_of(id)
            .ok_or_else(|| RingError::UnknownMember(id.clone()))?;
        let mut members = self.members.clone();
        members.remove(index);
        self.with_members(members)
    }

    fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.members.binary_search_by(|m| m.id.cmp(id)).ok()
    }

    /// Owner (member index) of each partition or token, in ring order.
    fn owner_sequence(&self) -> std::borrow::Cow<'_, [u32]> {
        match &self.layout {
            Layout::EqualPartitions { owners } => std::borrow::Cow::Borrowed(owners),
            Layout::RandomTokens { tokens } => tokens.iter().map(|&(_, owner)| owner).collect(),
        }
    }

    /// Calls `visit` with each distinct member met walking clockwise from `partition`, until it
    /// returns false or every member has been met.
    fn walk_distinct(&self, partition: PartitionId, mut visit: impl FnMut(u32) -> bool) {
        let member_count = self.members.len();
        let mut seen: Vec<u32> = Vec::with_capacity(member_count.min(8));
        self.walk_owners(partition, |owner| {
            if seen.contains(&owner) {
                return true;
            }
            seen.push(owner);
            visit(owner) && seen.len() < member_count
        });
    }

    /// Calls `visit` with the owner of each partition (or token) clockwise from `partition`,
    /// once around the ring at most, until it returns false.
    fn walk_owners(&self, partition: PartitionId, mut visit: impl FnMut(u32) -> bool) {
        match &self.layout {
            Layout::EqualPartitions { owners } => {
                let start = partition as usize % owners.len();
                let (head, tail) = owners.split_at(start);
                for &owner in tail.iter().chain(head) {
                    if !visit(owner) {
                        return;
                    }
                }
            }
            Layout::RandomTokens { tokens } => {
                let start = partition as usize % tokens.len();
                let (head, tail) = tokens.split_at(start);
                for &(_, owner) in tail.iter().chain(head) {
                    if !visit(owner) {
                        return;
                    }
                }
            }
        }
    }
}

fn validate_target_n(target_n: usize) -> Result<u32, RingError> {
    match u32::try_from(target_n) {
        Ok(0) => Err(RingError::ZeroReplicas),
        Ok(n) => Ok(n),
        Err(_) => Err(RingError::Malformed("target replica count too large")),
    }
}

/// The first value that appears twice in `values`.
fn first_repeat(values: &[u32]) -> Option<u32> {
    values
        .iter()
        .enumerate()
        .find(|(i, v)| values[..*i].contains(v))
        .map(|(_, &v)| v)
}
