//! A full disk and a failed one (issue 26).
//!
//! A store that can no longer promise durability (a failed fsync or journal write poisoned the
//! engine, [`StoreErrorKind::Fatal`]) makes the node fail-stop: it stops gossiping (so its
//! peers see it down, hint its writes and stand in for it), answers every request but status
//! with why, and waits for a restart, which recovers the store from its journal. It must not
//! serve reads, Merkle trees or anti-entropy from state that may not be on disk.
//!
//! A node whose store's free space falls below its reserve takes no more data, but stays in the
//! cluster and keeps serving reads.
//!
//! The store refuses a write that adds data below its reserve (`StorageError::DiskFull`, kind
//! [`StoreErrorKind::Full`]), so fjall never meets a failed write, which would poison it until
//! a restart. This module decides what the cluster does about it:
//! - the node announces `disk = full` in gossip as soon as the runtime's measure
//!   ([`NodeCore::handle_disk_space`]) or a refused write says so;
//! - coordinators treat a full node like one that is down for writes: it is no write target,
//!   fallbacks take its writes with hints (paper 4.6), and a full node forwards a client's put
//!   to a replica that takes writes;
//! - hints and handoffs wait for it, and it runs no anti-entropy (which would write);
//! - reads still go to it;
//! - once the free space is back above the reserve by a margin, it announces `disk = ok`, and
//!   hints, handoffs and anti-entropy bring it up to date.
//!
//! This module must not know how the free space is measured.

use dynamo_ring::NodeId;

use super::{CoreEvent, NodeCore, StoreError, StoreErrorKind, Time};

/// Gossip key holding whether a member's disk is full (`full` or `ok`).
pub(super) const DISK_KEY: &str = "disk";

/// The free space of the store's disk, as the runtime measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes free.
    pub free: u64,
    /// Bytes the store keeps free: below this it refuses writes that add data.
    pub reserve: u64,
}

/// What this node knows of its own disk.
#[derive(Debug, Default, Clone)]
pub(super) struct DiskState {
    /// Writes that add data are refused (or would be).
    pub(super) full: bool,
    /// The last measure, if any.
    pub(super) last: Option<DiskSpace>,
    /// Why the store can no longer promise durability: the node stopped serving.
    pub(super) failed: Option<String>,
}

/// Whether a disk measured at `space` counts as full, given whether it did: full below the
/// reserve, and full until the free space is a quarter of the reserve above it again, so a
/// node at the edge does not flap.
fn is_full(space: DiskSpace, was_full: bool) -> bool {
    let margin = if was_full { space.reserve / 4 } else { 0 };
    space.free < space.reserve.saturating_add(margin)
}

impl NodeCore {
    /// The runtime measured the free space of the store's disk.
    pub fn handle_disk_space(&mut self, _now: Time, space: DiskSpace) {
        self.disk.last = Some(space);
        let full = is_full(space, self.disk.full);
        self.set_disk_full(full);
    }

    /// Whether this node's disk is full.
    pub fn disk_full(&self) -> bool {
        self.disk.full
    }

    /// Whether `node` announced a full disk (this node: whether its own is).
    pub(super) fn is_disk_full(&self, node: &NodeId) -> bool {
        if *node == self.me {
            return self.disk.full;
        }
        self.gossip
            .member(&super::membership::gossip_id(node))
            .and_then(|member| member.get(DISK_KEY))
            .is_some_and(|state| state == b"full")
    }

    /// Whether `node` is up and takes writes (its disk is not full): one gossip lookup, on
    /// every write's placement.
    pub(super) fn takes_writes(&self, node: &NodeId) -> bool {
        if *node == self.me {
            return !self.disk.full;
        }
        self.gossip
            .member(&super::membership::gossip_id(node))
            .is_some_and(|member| member.is_live() && member.get(DISK_KEY) != Some(b"full"))
    }

    /// A store operation failed: a refusal for want of space makes this node full at once,
    /// before the runtime's next measure; a store that lost durability stops the node.
    pub(super) fn note_store_error(&mut self, error: &StoreError) {
        match error.kind {
            StoreErrorKind::Full if !self.disk.full => self.set_disk_full(true),
            StoreErrorKind::Fatal if self.disk.failed.is_none() => {
                let message = format!(
                    "{} stopped serving: {}. Restart it: the store recovers from its journal",
                    self.me, error.message
                );
                self.disk.failed = Some(message.clone());
                self.event(CoreEvent::Stopped(message));
            }
            _ => {}
        }
    }

    /// Why this node stopped serving, if it did (see [`StoreErrorKind::Fatal`]).
    pub fn stopped(&self) -> Option<&str> {
        self.disk.failed.as_deref()
    }

    fn set_disk_full(&mut self, full: bool) {
        if full == self.disk.full {
            return;
        }
        self.disk.full = full;
        let state: &[u8] = if full { b"full" } else { b"ok" };
        if let Err(error) = self.gossip.set(DISK_KEY, state.to_vec()) {
            self.problem(format!("could not announce the disk's state: {error}"));
        }
        let measured = self.disk.last.map_or(String::new(), |space| {
            format!(
                " ({} MiB free, reserve {} MiB)",
                space.free >> 20,
                space.reserve >> 20
            )
        });
        let message = if full {
            format!(
                "the disk is full{measured}: {} takes no more writes (they go to other replicas \
                 and to hints) and keeps serving reads until space returns",
                self.me
            )
        } else {
            format!(
                "the disk has room again{measured}: {} takes writes, and hints and anti-entropy \
                 bring it up to date",
                self.me
            )
        };
        self.event(CoreEvent::DiskFull { full, message });
        self.flush_gossip();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full below the reserve; once full, full until a quarter of the reserve above it.
    #[test]
    fn a_disk_is_full_below_its_reserve_with_a_margin_to_recover() {
        let mib = 1 << 20;
        let cases = [
            (300, false, false),
            (255, false, true),
            (300, true, true),
            (319, true, true),
            (320, true, false),
            (0, false, true),
        ];
        for (free_mib, was_full, full) in cases {
            let space = DiskSpace {
                free: free_mib * mib,
                reserve: 256 * mib,
            };
            assert_eq!(
                is_full(space, was_full),
                full,
                "{free_mib} MiB, was {was_full}"
            );
        }
    }
}
