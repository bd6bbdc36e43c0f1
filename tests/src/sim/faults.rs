//! Faults applied to the simulated world: crashes and restarts, retired nodes and their
//! removal, the network's faults, and the store's (full disks, failing fsyncs, clock offsets).
//!
//! This module must not check invariants or drive clients.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use dynamo_core::{DiskSpace, StoreOp};
use dynamo_protocol::{Request, Response};
use dynamo_storage::StoreOptions;

use super::{Event, Sim, network};

impl Sim {
    /// Stops node `index` abruptly: buffered writes are lost; with `wipe`, the whole disk.
    pub(super) fn crash_node(&mut self, index: usize, wipe: bool) {
        let node = &mut self.nodes[index];
        if let Some(core) = node.core.take() {
            self.stand_ins_of_stopped += core.counters().stand_ins;
        }
        let options = StoreOptions::new(node.name.clone(), self.now);
        node.store = node.store.take().and_then(|store| {
            if wipe {
                store.wipe(&options).ok()
            } else {
                store.crash(&options).ok()
            }
        });
        let name = node.name.clone();
        self.trace.record(self.now, || {
            format!(
                "{name} crashed{}",
                if wipe { " and lost its disk" } else { "" }
            )
        });
    }

    /// Makes sure every retired node is removed (its removal may have been asked for while it
    /// still looked up, or been lost): an administrator retries until a removal is answered and
    /// no ring has it any more. A retired node that was leaving is out of the ring already and
    /// is removed all the same (`dynamo node remove` of a node that died while leaving).
    pub(super) fn remove_retired_nodes(&mut self) {
        for node in self.network.retired() {
            let name = self.nodes[node].name.clone();
            let mut removed = false;
            for attempt in 0..20 {
                let in_ring = self.nodes.iter().any(|n| {
                    n.core.as_ref().is_some_and(|c| {
                        c.ring().is_some_and(|r| {
                            r.member(&dynamo_ring::NodeId::from(name.as_str()))
                                .is_some()
                        })
                    })
                });
                if removed && !in_ring {
                    break;
                }
                let running: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].core.is_some())
                    .collect();
                let Some(&target) = running.get(attempt % running.len().max(1)) else {
                    break;
                };
                let request = Request::RemoveNode { name: name.clone() };
                match self.admin_request(target, request) {
                    Some(Response::Ring(_)) => removed = true,
                    // Neither in the ring nor known (it left, or was removed already).
                    Some(Response::Error(e)) if e.message.contains("not a member") => {
                        removed = true;
                    }
                    _ => self.run_until(self.now + 2_000),
                }
            }
        }
    }

    pub(super) fn apply_fault(&mut self, fault: network::Fault) {
        self.trace.record(self.now, || format!("fault {fault:?}"));

        match fault {
            network::Fault::Crash { node } => {
                if self.nodes.get(node).is_some_and(|n| n.core.is_some()) {
                    self.crash_node(node, false);
                }
            }
            network::Fault::Wipe { node } => {
                if self.nodes.get(node).is_some_and(|n| n.core.is_some()) {
                    self.crash_node(node, true);
                    // A node that lost its disk forgot that it left; it comes back as new.
                    self.leaves.retain(|(_, left)| *left != node);
                }
            }
            network::Fault::Restart { node } => {
                if self.nodes.get(node).is_some_and(|n| n.core.is_none())
                    && !self.network.is_removed(node)
                {
                    self.start_node(node, false);
                }
            }
            network::Fault::CrashAll => {
                for node in 0..self.nodes.len() {
                    if self.nodes[node].core.is_some() {
                        self.crash_node(node, false);
                    }
                }
                self.network.note_restart_all();
            }
            network::Fault::RestartAll => {
                for node in 0..self.nodes.len() {
                    if self.nodes[node].core.is_none() && !self.network.is_removed(node) {
                        self.start_node(node, false);
                    }
                }
            }
            network::Fault::Join => {
                self.add_node();
            }
            network::Fault::Retire { node } => {
                if self.nodes.get(node).is_some_and(|n| n.core.is_some()) {
                    self.crash_node(node, false);
                }
                self.network.retire(node);
            }
            network::Fault::Replace { node } => {
                let dead = self.nodes[node].name.clone();
                self.add_node_replacing(Some(dead));
            }
            network::Fault::Remove { node } => {
                let name = self.nodes[node].name.clone();
                if let Some(target) = (0..self.nodes.len()).find(|&i| self.nodes[i].core.is_some())
                {
                    let client = self.clients.admin_slot();
                    let attempt = self.clients.begin_admin();
                    self.send_client_request(client, attempt, target, Request::RemoveNode { name });
                }
            }
            network::Fault::Leave { node } => {
                let running: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].core.is_some())
                    .collect();
                if running.len() > 3
                    && let Some(&target) = running.get(node % running.len())
                {
                    let client = self.clients.admin_slot();
                    let attempt = self.clients.begin_admin();
                    self.send_client_request(client, attempt, target, Request::Leave);
                    self.leaves.push((attempt, target));
                }
            }
            network::Fault::DiskFull { node } => self.set_disk_full(node, true),
            network::Fault::DiskRoom { node } => self.set_disk_full(node, false),
            network::Fault::FsyncFails { node } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.fail_next_flush = true;
                }
            }
            network::Fault::CancelHandoff { node } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.cancel_next_handoff = true;
                }
            }
            other => self.network.apply(other),
        }
    }

    /// An administrator cancels node `index`'s handoff (`dynamo handoff cancel`), which just
    /// started: what it would have copied is left to anti-entropy.
    pub(super) fn cancel_handoff(&mut self, index: usize) {
        let client = self.clients.admin_slot();
        let attempt = self.clients.begin_admin();
        self.send_client_request(client, attempt, index, Request::CancelHandoff);
    }

    /// Node `index`'s disk fills up (`full`) or has room again.
    pub(super) fn set_disk_full(&mut self, index: usize, full: bool) {
        if let Some(node) = self.nodes.get_mut(index) {
            node.disk_full = full;
            self.tell_disk(index);
        }
    }

    /// What node `index`'s disk measures now.
    pub(super) fn disk_space(&self, index: usize) -> DiskSpace {
        let free = if self.nodes[index].disk_full {
            0
        } else {
            1 << 34
        };
        DiskSpace {
            free,
            reserve: 1 << 28,
        }
    }

    /// Tells a running node what its disk's free space is now.
    pub(super) fn tell_disk(&mut self, index: usize) {
        let space = self.disk_space(index);
        let local = self.clock_of(index);
        if let Some(core) = &mut self.nodes[index].core {
            core.handle_disk_space(local, space);
        }
        self.drain(index);
    }

    /// A node's fsync failed: its core stops serving; a supervisor restarts the process a
    /// little later (a crash, which loses what was not yet durable).
    pub(super) fn supervise_after_fsync_failure(&mut self, index: usize) {
        self.schedule(
            self.now + 2_000,
            Event::Fault(network::Fault::Crash { node: index }),
        );
        self.schedule(
            self.now + 5_000,
            Event::Fault(network::Fault::Restart { node: index }),
        );
    }
}

/// Whether a store operation adds data (what a full disk refuses, as the store's guard does).
pub(super) fn adds_data(op: &StoreOp) -> bool {
    matches!(
        op,
        StoreOp::Update { .. }
            | StoreOp::Apply { .. }
            | StoreOp::ApplyBatch { .. }
            | StoreOp::PutHint { .. }
    )
}

/// The most a node's clock runs ahead of the simulation's ([`clock_offset`]).
pub(super) const MAX_CLOCK_OFFSET_MS: u64 = 10_000;

/// How far node `index`'s clock runs ahead in a run: in half the seeds every node's clock is
/// off by up to 10 s (from an RNG of its own, so the run's other draws stay as they were).
pub(super) fn clock_offset(seed: u64, index: usize) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC10C_0FF5 ^ (index as u64).rotate_left(40));
    if seed % 4 < 2 {
        rng.random_range(0..=MAX_CLOCK_OFFSET_MS)
    } else {
        0
    }
}
