//! The claim algorithm for strategy 3 (paper section 6.2): which node owns each of the `Q`
//! equal partitions.
//!
//! Three properties are kept, in this order of priority:
//!
//! 1. **Balance**: every node owns its capacity-weighted share of the partitions, rounded to a
//!    neighbouring integer (largest remainder; ties go to nodes that already hold more, so a
//!    change moves as little as possible).
//! 2. **Spread**: any `N` consecutive partitions sit on `N` distinct nodes, and on `N` distinct
//!    zones when there are at least `N` zones (a breach is a "tail violation" in Riak's words).
//!    This is not always possible: on a cycle of `Q` partitions it needs `S > N` nodes or `N`
//!    dividing `Q` (and the same for zones), so the claim minimises breaches and
//!    [`crate::Ring::violations`] reports what is left.
//! 3. **Minimal movement**: on a change, a partition only changes hands if its owner left, or if
//!    its owner holds more than its new share and the receiver holds less. A join therefore moves
//!    partitions only to the newcomer, and a leave moves only the leaver's partitions.
//!
//! Rules 2 and 3 can conflict: when a node leaves a ring laid out round-robin, each hole is
//! surrounded by every remaining node, so no filler keeps the spread without moving other
//! partitions too. A membership change keeps rule 3 and reports the breaches left;
//! [`crate::Ring::respread`] is the explicit operator step that trades movement for spread.
//!
//! A fresh claim walks the ring once with a smooth weighted round-robin restricted to valid
//! choices; an incremental claim fills the holes of leavers, lets nodes below their share take
//! from nodes above it, and finally repairs remaining breaches with count-preserving swaps that
//! respect rule 3. Everything is integer arithmetic over members sorted by id, so every machine
//! computes the same owners.
//!
//! This module must not know about keys, hashing, versions or transfers: it maps partitions to
//! member indices and nothing else.

use crate::member::Member;

/// Owner value of a partition that has no owner yet.
pub(crate) const HOLE: u32 = u32::MAX;

/// Bound on repair passes; each pass strictly lowers the breach count, so this only caps work.
const MAX_REPAIR_PASSES: usize = 8;

/// The spreading rules for one ring: how far apart the same node (or zone) must stay.
pub(crate) struct Spacing {
    /// Any `node_window` consecutive partitions should be on distinct nodes: `min(N, S)`.
    node_window: usize,
    /// Any `zone_window` consecutive partitions should be on distinct zones: `N` when there are
    /// at least `N` zones, otherwise 0 (zones are not considered).
    zone_window: usize,
    /// Zone index of every member.
    zone_of: Vec<u32>,
}

impl Spacing {
    pub(crate) fn new(target_n: u32, members: &[Member]) -> Self {
        let mut zones: Vec<&str> = members.iter().map(|m| m.zone.as_str()).collect();
        zones.sort_unstable();
        zones.dedup();
        let zone_of = members
            .iter()
            .map(|m| zones.binary_search(&m.zone.as_str()).unwrap_or(0) as u32)
            .collect();
        let n = target_n as usize;
        Self {
            node_window: n.min(members.len()),
            zone_window: if zones.len() >= n { n } else { 0 },
            zone_of,
        }
    }

    /// Whether zones are part of the spreading rule.
    pub(crate) fn zone_aware(&self) -> bool {
        self.zone_window > 0
    }

    pub(crate) fn node_window(&self) -> usize {
        self.node_window
    }

    pub(crate) fn zone_window(&self) -> usize {
        self.zone_window
    }

    pub(crate) fn zone_of(&self, member: u32) -> u32 {
        self.zone_of[member as usize]
    }

    /// `(same-node neighbours, same-zone neighbours)` that `node` would have at partition `p`,
    /// counting partitions closer than the window on either side (holes are ignored).
    fn neighbours(&self, owners: &[u32], p: usize, node: u32) -> (u32, u32) {
        let q = owners.len();
        let reach = self.node_window.max(self.zone_window);
        let mut same_node = 0;
        let mut same_zone = 0;
        // On a ring shorter than two windows both directions can reach the same partition;
        // count each neighbour once, at its shorter distance.
        let may_overlap = 2 * reach.saturating_sub(1) >= q;
        let mut visited = Vec::new();
        for distance in 1..reach.min(q) {
            for other in [(p + distance) % q, (p + q - distance) % q] {
                if may_overlap {
                    if other == p || visited.contains(&other) {
                        continue;
                    }
                    visited.push(other);
                }
                let owner = owners[other];
                if owner == HOLE {
                    continue;
                }
                if distance < self.node_window && owner == node {
                    same_node += 1;
                }
                if distance < self.zone_window && self.zone_of(owner) == self.zone_of(node) {
                    same_zone += 1;
                }
            }
        }
        (same_node, same_zone)
    }

    /// How bad it is to put `node` at `p`: 0 is fine, 1 breaks only the zone rule, 2 breaks the
    /// node rule.
    fn level(&self, owners: &[u32], p: usize, node: u32) -> u8 {
        match self.neighbours(owners, p, node) {
            (0, 0) => 0,
            (0, _) => 1,
            _ => 2,
        }
    }

    /// Breach cost of `node` at `p`; a same-node neighbour weighs more than a same-zone one.
    fn cost(&self, owners: &[u32], p: usize, node: u32) -> u32 {
        let (same_node, same_zone) = self.neighbours(owners, p, node);
        same_node * 4 + same_zone
    }
}

/// The number of partitions each member should own: its capacity-weighted share of `q`, at least
/// one, capped so no node is forced to appear twice within one window, with the rounding
/// remainder given first to nodes that already own more than their floor (`counts`).
/// The caller guarantees `members.len() <= q`.
pub(crate) fn quotas(q: u32, members: &[Member], counts: &[u32], window: usize) -> Vec<u32> {
    let s = members.len();
    let cap = q / window.max(1) as u32;
    let mut quota = vec![0u32; s];
    let mut fixed = vec![false; s];
    let mut remaining = q;
    loop {
        let free: Vec<usize> = (0..s).filter(|&i| !fixed[i]).collect();
        let total: u64 = free.iter().map(|&i| u64::from(members[i].capacity)).sum();
        if free.is_empty() || total == 0 {
            break;
        }
        let mut fraction = vec![0u64; s];
        let mut handed_out = 0u32;
        for &i in &free {
            let exact = u64::from(remaining) * u64::from(members[i].capacity);
            quota[i] = (exact / total) as u32;
            fraction[i] = exact % total;
            handed_out += quota[i];
        }
        let mut order = free.clone();
        order.sort_by(|&a, &b| {
            let sticky_a = counts.get(a).is_some_and(|&c| c > quota[a]);
            let sticky_b = counts.get(b).is_some_and(|&c| c > quota[b]);
            sticky_b
                .cmp(&sticky_a)
                .then(fraction[b].cmp(&fraction[a]))
                .then(a.cmp(&b))
        });
        for &i in order.iter().take((remaining - handed_out) as usize) {
            quota[i] += 1;
        }
        // Every member owns at least one partition (there are at least as many partitions as
        // members), or it would never appear in a preference list.
        let starved: Vec<usize> = free.iter().copied().filter(|&i| quota[i] == 0).collect();
        // Capping only where the other free members can absorb the excess.
        let capping_possible = free.len() as u64 * u64::from(cap) >= u64::from(remaining);
        let over: Vec<usize> = free
            .iter()
            .copied()
            .filter(|&i| capping_possible && quota[i] > cap)
            .collect();
        if starved.is_empty() && over.is_empty() {
            break;
        }
        if !starved.is_empty() {
            // Raise the starved first, then look at caps again with what is left.
            for i in starved {
                quota[i] = 1;
                fixed[i] = true;
                remaining -= 1;
            }
            continue;
        }
        for i in over {
            quota[i] = cap;
            fixed[i] = true;
            remaining -= cap;
        }
    }
    quota
}

/// Owners of `q` partitions for `members`, claimed from scratch.
pub(crate) fn fresh(q: u32, spacing: &Spacing, members: &[Member]) -> Vec<u32> {
    let s = members.len();
    let q_len = q as usize;
    let quota = quotas(q, members, &[], spacing.node_window());
    let mut owners = vec![HOLE; q_len];
    let mut assigned = vec![0u32; s];
    let mut last_used: Vec<Option<usize>> = vec![None; s];
    for p in 0..q_len {
        // Smooth weighted round-robin: the node furthest behind its share so far goes next,
        // among those whose placement here breaks no rule (or the fewest rules).
        let mut best: Option<(u8, i128, Option<usize>, usize)> = None;
        for i in 0..s {
            if assigned[i] >= quota[i] {
                continue;
            }
            let level = spacing.level(&owners, p, i as u32);
            let lag =
                i128::from(quota[i]) * (p as i128 + 1) - i128::from(assigned[i]) * i128::from(q);
            let better = match best {
                None => true,
                Some((b_level, b_lag, b_last, _)) => {
                    (level, std::cmp::Reverse(lag), last_used[i])
                        < (b_level, std::cmp::Reverse(b_lag), b_last)
                }
            };
            if better {
                best = Some((level, lag, last_used[i], i));
            }
        }
        if let Some((_, _, _, i)) = best {
            owners[p] = i as u32;
            assigned[i] += 1;
            last_used[i] = Some(p);
        }
    }
    repair(&mut owners, spacing, |_, _| true);
    owners
}

/// Owners after a membership change. `previous[p]` is the index (in `members`) of the current
/// owner of partition `p`, or `None` when that owner is leaving.
pub(crate) fn rebalance(
    q: u32,
    spacing: &Spacing,
    members: &[Member],
    previous: &[Option<u32>],
) -> Vec<u32> {
    if previous.iter().all(Option::is_none) {
        return fresh(q, spacing, members);
    }
    let s = members.len();
    let original: Vec<u32> = previous.iter().map(|o| o.unwrap_or(HOLE)).collect();
    let mut counts = vec![0u32; s];
    for &owner in &original {
        if owner != HOLE {
            counts[owner as usize] += 1;
        }
    }
    let quota = quotas(q, members, &counts, spacing.node_window());
    let donor: Vec<bool> = (0..s).map(|i| counts[i] > quota[i]).collect();
    let taker: Vec<bool> = (0..s).map(|i| counts[i] < quota[i]).collect();

    let mut owners = original.clone();
    fill_holes(&mut owners, &mut counts, &quota, spacing);
    take_from_donors(&mut owners, &mut counts, &quota, spacing);

    // A partition may end up with its original owner, or with anyone if its owner left, or with
    // a node below its share if its original owner was above its share. Nothing else moves.
    let may_own = |p: usize, node: u32| {
        let before = original[p];
        node == before || before == HOLE || (donor[before as usize] && taker[node as usize])
    };
    repair(&mut owners, spacing, may_own);
    owners
}

/// Owners that clear as many breaches as possible from `current`, moving partitions between any
/// nodes if needed (the operator's explicit "re-spread"; Riak calls it a claim rebalance).
/// Tries count-preserving swaps first and a fresh claim second, and keeps whichever leaves
/// fewer breaches, then moves fewer partitions.
pub(crate) fn respread(q: u32, spacing: &Spacing, members: &[Member], current: &[u32]) -> Vec<u32> {
    let mut swapped = current.to_vec();
    repair(&mut swapped, spacing, |_, _| true);
    let fresh = fresh(q, spacing, members);
    let score = |owners: &[u32]| {
        let breaches = (0..owners.len())
            .filter(|&p| spacing.cost(owners, p, owners[p]) > 0)
            .count();
        let moved = owners.iter().zip(current).filter(|(a, b)| a != b).count();
        (breaches, moved)
    };
    if score(&fresh) < score(&swapped) {
        fresh
    } else {
        swapped
    }
}

/// Gives every partition whose owner left to a node below its share, in partition order,
/// choosing the placement that breaks the fewest rules, then the node furthest below its share.
fn fill_holes(owners: &mut [u32], counts: &mut [u32], quota: &[u32], spacing: &Spacing) {
    for p in 0..owners.len() {
        if owners[p] != HOLE {
            continue;
        }
        let mut best: Option<(u8, std::cmp::Reverse<u32>, usize)> = None;
        for i in 0..counts.len() {
            if counts[i] >= quota[i] {
                continue;
            }
            let key = (
                spacing.level(owners, p, i as u32),
                std::cmp::Reverse(quota[i] - counts[i]),
                i,
            );
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        if let Some((_, _, i)) = best {
            owners[p] = i as u32;
            counts[i] += 1;
        }
    }
}

/// Lets each node below its share take partitions, one at a time, from nodes above theirs:
/// valid placements first, then the partition furthest from what the taker already owns, then
/// the donor with the largest surplus.
fn take_from_donors(owners: &mut [u32], counts: &mut [u32], quota: &[u32], spacing: &Spacing) {
    let q = owners.len();
    loop {
        let taker = (0..counts.len())
            .filter(|&i| counts[i] < quota[i])
            .max_by_key(|&i| (quota[i] - counts[i], std::cmp::Reverse(i)));
        let Some(taker) = taker else { return };
        let distance = distance_to_nearest(owners, taker as u32);
        let mut best: Option<(u8, std::cmp::Reverse<usize>, std::cmp::Reverse<u32>, usize)> = None;
        for p in 0..q {
            let donor = owners[p] as usize;
            if donor == taker || counts[donor] <= quota[donor] {
                continue;
            }
            let key = (
                spacing.level(owners, p, taker as u32),
                std::cmp::Reverse(distance[p]),
                std::cmp::Reverse(counts[donor] - quota[donor]),
                p,
            );
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        let Some((_, _, _, p)) = best else { return };
        counts[owners[p] as usize] -= 1;
        owners[p] = taker as u32;
        counts[taker] += 1;
    }
}

/// For every partition, the ring distance to the nearest partition owned by `node` (or `q` if it
/// owns none).
fn distance_to_nearest(owners: &[u32], node: u32) -> Vec<usize> {
    let q = owners.len();
    let mut distance = vec![q; q];
    let Some(anchor) = owners.iter().position(|&o| o == node) else {
        return distance;
    };
    // Two sweeps around the cycle from a partition the node owns, one in each direction.
    let mut since = 0;
    for step in 0..q {
        let p = (anchor + step) % q;
        since = if owners[p] == node { 0 } else { since + 1 };
        distance[p] = since;
    }
    since = 0;
    for step in 0..q {
        let p = (anchor + q - step) % q;
        since = if owners[p] == node { 0 } else { since + 1 };
        distance[p] = distance[p].min(since);
    }
    distance
}

/// Lowers the breach count by swapping the owners of two partitions (which keeps every node's
/// count), as long as `may_own` allows both new owners and the swap strictly helps.
fn repair(owners: &mut [u32], spacing: &Spacing, may_own: impl Fn(usize, u32) -> bool) {
    let q = owners.len();
    for _ in 0..MAX_REPAIR_PASSES {
        let mut improved = false;
        for p in 0..q {
            if owners[p] == HOLE || spacing.cost(owners, p, owners[p]) == 0 {
                continue;
            }
            let mut best: Option<(i64, usize)> = None;
            for j in 0..q {
                let (a, b) = (owners[p], owners[j]);
                if a == b || b == HOLE || !may_own(p, b) || !may_own(j, a) {
                    continue;
                }
                let before = spacing.cost(owners, p, a) + spacing.cost(owners, j, b);
                owners.swap(p, j);
                let after = spacing.cost(owners, p, b) + spacing.cost(owners, j, a);
                owners.swap(p, j);
                let delta = i64::from(after) - i64::from(before);
                if delta < 0 && best.is_none_or(|(d, _)| delta < d) {
                    best = Some((delta, j));
                }
            }
            if let Some((_, j)) = best {
                owners.swap(p, j);
                improved = true;
            }
        }
        if !improved {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(caps: &[u32]) -> Vec<Member> {
        caps.iter()
            .enumerate()
            .map(|(i, &c)| Member::new(format!("n{i:03}"), format!("z{i}"), c))
            .collect()
    }

    /// Paper 6.2, strategy 3: "about Q/S tokens per node", weighted by capacity.
    #[test]
    fn quotas_follow_capacity_and_sum_to_q() {
        let cases: &[(u32, &[u32], &[u32])] = &[
            (8, &[1, 1, 1, 1], &[2, 2, 2, 2]),
            (8, &[1, 1, 1], &[3, 3, 2]),
            (1024, &[1, 1, 2], &[256, 256, 512]),
            // Two nodes must alternate to keep windows of two distinct: capped at Q/2.
            (16, &[1, 3], &[8, 8]),
            (16, &[1, 3, 1, 1, 2], &[2, 5, 2, 2, 5]),
            // Nobody is starved: a tiny capacity still owns one partition.
            (4, &[1, 1, 10, 10], &[1, 1, 1, 1]),
            (8, &[1, 100, 100, 100], &[1, 3, 2, 2]),
            // Capped at Q/N = 5 so the big node is not forced next to itself.
            (16, &[1, 1, 1, 10], &[4, 4, 3, 5]),
        ];
        for (q, caps, expected) in cases {
            let got = quotas(*q, &members(caps), &[], 3.min(caps.len()));
            assert_eq!(&got, expected, "q={q} caps={caps:?}");
            assert_eq!(got.iter().sum::<u32>(), *q);
        }
    }

    /// Rounding prefers nodes that already hold the extra partition, so nothing moves for it.
    #[test]
    fn quota_rounding_is_sticky() {
        let ms = members(&[1, 1, 1]);
        assert_eq!(quotas(8, &ms, &[2, 3, 3], 3), vec![2, 3, 3]);
        assert_eq!(quotas(8, &ms, &[3, 2, 3], 3), vec![3, 2, 3]);
    }

    #[test]
    fn distance_to_nearest_wraps_around() {
        let owners = [0, 1, 1, 1, 1, 1, 0, 1];
        assert_eq!(
            distance_to_nearest(&owners, 0),
            vec![0, 1, 2, 3, 2, 1, 0, 1]
        );
        assert_eq!(distance_to_nearest(&owners, 9), vec![8; 8]);
    }
}
