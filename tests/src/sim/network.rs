//! The simulated network and the fault schedule: latency with jitter (so messages reorder),
//! loss, duplication, symmetric and one-way partitions, and the node faults a run injects
//! (crashes, restarts, disk wipes, full-cluster restarts, joins and leaves).
//!
//! This module must not know what messages mean; it only decides when, and whether, each one
//! arrives.

use std::collections::BTreeSet;

use rand::Rng;
use rand::rngs::StdRng;

use super::SimConfig;

/// More nodes than any run has (joins included), for cutting every link of a partition.
const MAX_NODES: usize = 64;

/// Network and node faults of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Chance a message is lost.
    pub loss: f64,
    /// Chance a message is delivered twice.
    pub duplicate: f64,
    /// Smallest one-way latency, in milliseconds.
    pub min_latency_ms: u64,
    /// Largest extra random delay, in milliseconds (reorders messages).
    pub jitter_ms: u64,
    /// Partitions to inject.
    pub partitions: usize,
    /// Node crashes to inject (each followed by a restart).
    pub crashes: usize,
    /// Disk wipes to inject (at most one per run keeps acknowledged writes recoverable).
    pub wipes: usize,
    /// Times a node's disk fills up for a while (writes that add data are refused).
    pub disk_fulls: usize,
    /// Times a node's fsync fails: its store can no longer promise durability, it stops
    /// serving, and a supervisor restarts it a little later (after a power-loss-like crash).
    pub fsync_failures: usize,
    /// Times an administrator cancels a node's handoff after a ring change.
    pub handoff_cancels: usize,
}

impl Faults {
    /// No faults at all: a quiet network.
    pub fn none() -> Faults {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            min_latency_ms: 1,
            jitter_ms: 0,
            partitions: 0,
            crashes: 0,
            wipes: 0,
            disk_fulls: 0,
            fsync_failures: 0,
            handoff_cancels: 0,
        }
    }

    /// Faults drawn from `rng`. With buffered replica writes a crash can legitimately lose an
    /// acknowledged write's only copy on a wiped node, so such runs wipe no disk.
    pub fn random(rng: &mut StdRng, buffered: bool) -> Faults {
        Faults {
            loss: [0.0, 0.01, 0.05, 0.1][rng.random_range(0..4)],
            duplicate: [0.0, 0.02, 0.05][rng.random_range(0..3)],
            min_latency_ms: rng.random_range(1..=5),
            jitter_ms: [0, 5, 50, 200][rng.random_range(0..4)],
            partitions: rng.random_range(0..=2),
            crashes: rng.random_range(0..=2),
            wipes: usize::from(!buffered && rng.random_bool(0.2)),
            // Drawn by `SimConfig::random` from an RNG of their own, so the draws above (and
            // the seeds that once failed) stay what they were.
            disk_fulls: 0,
            fsync_failures: 0,
            handoff_cancels: 0,
        }
    }
}

/// Something that happens to the network or a node at a scheduled time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Messages from any node of `side` to any node outside it (and, unless `one_way`, back)
    /// are dropped.
    Partition {
        /// The nodes cut off.
        side: Vec<usize>,
        /// Only messages from `side` are dropped.
        one_way: bool,
    },
    /// Every partition ends.
    HealPartitions,
    /// A node stops abruptly.
    Crash {
        /// Which node.
        node: usize,
    },
    /// A node stops and loses its disk.
    Wipe {
        /// Which node.
        node: usize,
    },
    /// A stopped node starts again on its disk.
    Restart {
        /// Which node.
        node: usize,
    },
    /// Every node stops at once.
    CrashAll,
    /// Every stopped node starts again.
    RestartAll,
    /// A new node joins.
    Join,
    /// A node is gone for good: it stops and never comes back.
    Retire {
        /// Which node.
        node: usize,
    },
    /// An administrator asks a running node to remove a retired node from the ring.
    Remove {
        /// The retired node.
        node: usize,
    },
    /// A new node joins in a retired node's place (`dynamo join --replace`).
    Replace {
        /// The retired node.
        node: usize,
    },
    /// The `node`-th running node is asked to leave.
    Leave {
        /// Which node.
        node: usize,
    },
    /// A node's disk fills up: its store refuses writes that add data.
    DiskFull {
        /// Which node.
        node: usize,
    },
    /// A full disk has room again.
    DiskRoom {
        /// Which node.
        node: usize,
    },
    /// A node's next fsync fails.
    FsyncFails {
        /// Which node.
        node: usize,
    },
    /// An administrator cancels a node's next handoff as soon as it starts (`dynamo handoff
    /// cancel`).
    CancelHandoff {
        /// Which node.
        node: usize,
    },
}

/// The network's state.
pub(super) struct Network {
    faults: Faults,
    /// Directed links that drop everything.
    cut: BTreeSet<(usize, usize)>,
    /// Whether the faults stopped.
    healed: bool,
    restarted_all: bool,
    removed: BTreeSet<usize>,
}

impl Network {
    pub(super) fn new(faults: Faults) -> Network {
        Network {
            faults,
            cut: BTreeSet::new(),
            healed: false,
            restarted_all: false,
            removed: BTreeSet::new(),
        }
    }

    /// When copies of a message from `from` to `to` sent at `now` arrive: none if it is lost
    /// or the link is cut, two if it is duplicated.
    pub(super) fn deliveries(
        &self,
        rng: &mut StdRng,
        now: u64,
        from: usize,
        to: usize,
    ) -> Vec<u64> {
        if self.cut.contains(&(from, to)) {
            return Vec::new();
        }
        let latency = |rng: &mut StdRng| {
            let jitter = if self.healed || self.faults.jitter_ms == 0 {
                0
            } else {
                rng.random_range(0..=self.faults.jitter_ms)
            };
            now + self.faults.min_latency_ms + jitter
        };
        if !self.healed && self.faults.loss > 0.0 && rng.random_bool(self.faults.loss) {
            return Vec::new();
        }
        let mut at = vec![latency(rng)];
        if !self.healed && self.faults.duplicate > 0.0 && rng.random_bool(self.faults.duplicate) {
            at.push(latency(rng));
        }
        at
    }

    /// One-way latency between a client and a node.
    pub(super) fn client_latency(&self, rng: &mut StdRng) -> u64 {
        self.faults.min_latency_ms + rng.random_range(0..=2)
    }

    /// Ends every fault of the network.
    pub(super) fn heal(&mut self) {
        self.cut.clear();
        self.healed = true;
    }

    pub(super) fn apply(&mut self, fault: Fault) {
        match fault {
            Fault::Partition { side, one_way } => {
                for &a in &side {
                    for b in 0..MAX_NODES {
                        if !side.contains(&b) {
                            self.cut.insert((a, b));
                            if !one_way {
                                self.cut.insert((b, a));
                            }
                        }
                    }
                }
            }
            Fault::HealPartitions => self.cut.clear(),
            _ => {}
        }
    }

    pub(super) fn note_restart_all(&mut self) {
        self.restarted_all = true;
    }

    /// Whether a full-cluster restart happened.
    pub(super) fn restarted_all(&self) -> bool {
        self.restarted_all
    }

    /// Whether `node` was taken out for good (retired: it never restarts).
    pub(super) fn is_removed(&self, node: usize) -> bool {
        self.removed.contains(&node)
    }

    /// `node` is gone for good.
    pub(super) fn retire(&mut self, node: usize) {
        self.removed.insert(node);
    }

    /// Every retired node.
    pub(super) fn retired(&self) -> Vec<usize> {
        self.removed.iter().copied().collect()
    }
}

/// The faults of a run, at offsets into the fault window.
pub(super) fn schedule(
    rng: &mut StdRng,
    config: &SimConfig,
    nodes: usize,
    window: u64,
) -> Vec<(u64, Fault)> {
    let mut faults = Vec::new();
    let at = |rng: &mut StdRng, from: f64, to: f64| {
        rng.random_range((window as f64 * from) as u64..(window as f64 * to) as u64)
    };
    for _ in 0..config.faults.partitions {
        let start = at(rng, 0.05, 0.6);
        let size = rng.random_range(1..nodes.max(2));
        let mut side: Vec<usize> = (0..nodes).collect();
        // A deterministic shuffle: pick `size` nodes.
        for i in (1..side.len()).rev() {
            let j = rng.random_range(0..=i);
            side.swap(i, j);
        }
        side.truncate(size);
        side.sort_unstable();
        let one_way = rng.random_bool(0.3);
        faults.push((start, Fault::Partition { side, one_way }));
        let length = rng.random_range(2_000..15_000);
        faults.push((start + length, Fault::HealPartitions));
    }
    for _ in 0..config.faults.crashes {
        let start = at(rng, 0.05, 0.7);
        let node = rng.random_range(0..nodes);
        faults.push((start, Fault::Crash { node }));
        let down = rng.random_range(1_000..20_000);
        faults.push((start + down, Fault::Restart { node }));
    }
    for _ in 0..config.faults.wipes {
        let start = at(rng, 0.1, 0.6);
        let node = rng.random_range(0..nodes);
        faults.push((start, Fault::Wipe { node }));
        faults.push((
            start + rng.random_range(1_000..10_000),
            Fault::Restart { node },
        ));
    }
    if config.full_restart {
        let start = at(rng, 0.3, 0.7);
        faults.push((start, Fault::CrashAll));
        faults.push((start + rng.random_range(500..5_000), Fault::RestartAll));
    }
    for _ in 0..config.joins {
        faults.push((at(rng, 0.1, 0.5), Fault::Join));
    }
    for _ in 0..config.retires {
        // Never the founder: node 0 is every restart's first seed candidate anyway, but any
        // other node is fair game.
        let node = rng.random_range(1..nodes.max(2));
        let start = at(rng, 0.1, 0.4);
        faults.push((start, Fault::Retire { node }));
        let removal = if config.replace_retired {
            Fault::Replace { node }
        } else {
            Fault::Remove { node }
        };
        faults.push((start + 15_000, removal));
    }
    for _ in 0..config.leaves {
        let node = rng.random_range(0..nodes);
        faults.push((at(rng, 0.2, 0.6), Fault::Leave { node }));
    }
    // Store faults last, so the draws above are what they were before these existed.
    for _ in 0..config.faults.disk_fulls {
        let start = at(rng, 0.05, 0.7);
        let node = rng.random_range(0..nodes);
        faults.push((start, Fault::DiskFull { node }));
        faults.push((
            start + rng.random_range(2_000..15_000),
            Fault::DiskRoom { node },
        ));
    }
    for _ in 0..config.faults.fsync_failures {
        let start = at(rng, 0.05, 0.7);
        let node = rng.random_range(0..nodes);
        faults.push((start, Fault::FsyncFails { node }));
    }
    for _ in 0..config.faults.handoff_cancels {
        let node = rng.random_range(0..nodes);
        faults.push((at(rng, 0.05, 0.5), Fault::CancelHandoff { node }));
    }
    faults.sort_by_key(|(at, _)| *at);
    faults
}
