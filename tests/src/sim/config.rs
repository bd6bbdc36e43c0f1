//! What one simulator run is: its seed and sizes, the faults drawn from the seed (or a fixed
//! schedule when shrinking), a sabotage that proves a check can fail, and `shrink`, which
//! looks for the smallest run that still fails.
//!
//! This module must not know how a run is carried out.

use dynamo_storage::Durability;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::network::{self, Fault, Faults};
use super::{Sim, SimReport};

/// Something the simulator does on purpose to break the system, to prove an invariant check
/// catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// Nothing: the system as built.
    None,
    /// After healing, one acknowledged write is removed from every store and hint space.
    DropAcknowledgedWrite,
    /// Reads hide one of two concurrent values from the client.
    HideSibling,
    /// After healing, one replica of one key gets an extra version the others lack.
    DivergeReplica,
    /// After healing, a value an acknowledged delete covered is written back to every replica.
    Resurrect,
    /// Reads show one value twice, as if a stale sibling survived.
    StaleSibling,
    /// Every node forgets its saved bucket table at a full-cluster restart.
    ForgetBuckets,
    /// Every replica keeps its tombstones when a reaper asks it to remove them.
    KeepTombstones,
    /// The listing after healing leaves out the first key it names.
    SkipListedKey,
    /// A listing during the run names its first key twice.
    ListTwice,
    /// In a last-write-wins run, one node's answer resolves a key to a value nobody wrote.
    ForgeResolution,
}

/// How one run is set up. [`SimConfig::random`] draws one from a seed.
#[derive(Debug, Clone)]
// Each flag is an independent dimension a seed draws; a state machine would say less.
#[allow(clippy::struct_excessive_bools)]
pub struct SimConfig {
    /// The run's seed.
    pub seed: u64,
    /// Nodes at the start.
    pub nodes: usize,
    /// Nodes that join during the run.
    pub joins: usize,
    /// Nodes asked to leave during the run.
    pub leaves: usize,
    /// Nodes that die for good and are removed from the ring (`dynamo node remove`).
    pub retires: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations each client performs.
    pub ops_per_client: usize,
    /// Distinct keys the clients use.
    pub keys: usize,
    /// Network and node faults.
    pub faults: Faults,
    /// Faults and client operations happen in `[0, fault_window_ms)` after start.
    pub fault_window_ms: u64,
    /// Virtual time given to the cluster after faults stop, before the checks.
    pub heal_ms: u64,
    /// Durability of replica writes.
    pub replica_durability: Durability,
    /// Whether every node is stopped and restarted at once, once, mid-run.
    pub full_restart: bool,
    /// Whether a retired node is replaced by a new one (`join --replace`) instead of removed.
    pub replace_retired: bool,
    /// Whether clients pick a quorum per request (R = 1, W = 1 or W = 3 now and then) instead
    /// of the bucket's. Never with a lost disk: W = 1 leaves one copy of a write for a while.
    pub quorum_mix: bool,
    /// Whether clients now and then list the bucket page by page while the run goes on (and
    /// faults happen), not only after healing.
    pub listing_mix: bool,
    /// Whether the workload's bucket resolves by last write wins (`lww`): every read also
    /// carries the newest sibling by its coordinator's timestamp, which must be the same
    /// whichever node answers, whatever its clock says.
    pub lww_bucket: bool,
    /// Whether clients read as the client library does (issue 28, paper 6.4): R replicas'
    /// copies, asked by the client itself, and a coordinated read only when they differ or
    /// too few answer. Otherwise every read is coordinated by the node it is sent to.
    pub copy_reads: bool,
    /// Whether clients now and then back the bucket up while the run goes on, and merge a
    /// backup they took back in (issue 29).
    pub backup_mix: bool,
    /// Time between anti-entropy sweeps (0: off).
    pub anti_entropy_interval_ms: u64,
    /// What to break on purpose.
    pub sabotage: Sabotage,
    /// The faults to inject, at offsets into the fault window; `None` draws them from the
    /// seed (see [`SimConfig::fault_schedule`]). Shrinking a failure edits this list.
    pub schedule: Option<Vec<(u64, Fault)>>,
}

impl SimConfig {
    /// A configuration drawn from `seed`: 3 to 5 nodes, sometimes joins and leaves, a mix of
    /// faults, and sometimes a full-cluster restart.
    pub fn random(seed: u64) -> SimConfig {
        let mut config = Self::draw(seed);
        // Durability is promised unless every copy of a write is gone. A retired node is a lost
        // disk: with a wiped disk too, or with buffered replica writes that a crash drops, it
        // could have held the last durable copy of a write acknowledged by W = 2.
        if config.replica_durability == Durability::Buffered {
            config.retires = 0;
        }
        if config.retires > 0 {
            config.faults.wipes = 0;
        }
        // Issue 26's store faults, from an RNG of their own (the draws above stay as they were).
        let mut store_rng = StdRng::seed_from_u64(seed ^ 0xD15C_F011);
        config.faults.disk_fulls = usize::from(store_rng.random_bool(0.25));
        config.faults.fsync_failures = usize::from(store_rng.random_bool(0.15));
        // A cancel matters after a ring change: a join or a leave.
        let moves = config.joins + config.leaves + config.retires > 0;
        config.faults.handoff_cancels = usize::from(moves && store_rng.random_bool(0.5)) * 2;
        config.quorum_mix =
            store_rng.random_bool(0.25) && config.faults.wipes == 0 && config.retires == 0;
        config.replace_retired = config.retires > 0 && store_rng.random_bool(0.5);
        config.listing_mix = store_rng.random_bool(0.5);
        config.lww_bucket = store_rng.random_bool(0.25);
        config.copy_reads = store_rng.random_bool(0.5);
        config.backup_mix = store_rng.random_bool(0.5);
        config
    }

    fn draw(seed: u64) -> SimConfig {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_CAFE);
        let nodes = rng.random_range(3..=5);
        let buffered = rng.random_bool(0.2);
        SimConfig {
            seed,
            nodes,
            joins: usize::from(rng.random_bool(0.3)),
            leaves: usize::from(nodes > 3 && rng.random_bool(0.3)),
            retires: usize::from(nodes > 3 && rng.random_bool(0.2)),
            clients: rng.random_range(2..=4),
            ops_per_client: rng.random_range(8..=20),
            keys: rng.random_range(3..=12),
            faults: Faults::random(&mut rng, buffered),
            fault_window_ms: 40_000,
            heal_ms: 60_000,
            replica_durability: if buffered {
                Durability::Buffered
            } else {
                Durability::Sync
            },
            full_restart: rng.random_bool(0.15),
            quorum_mix: false,
            listing_mix: false,
            lww_bucket: false,
            copy_reads: false,
            backup_mix: false,
            replace_retired: false,
            anti_entropy_interval_ms: 10_000,
            sabotage: Sabotage::None,
            schedule: None,
        }
    }

    /// The faults this run injects: the explicit schedule, or one drawn from the seed with an
    /// RNG of its own (so removing a fault while shrinking leaves the other draws alone).
    pub fn fault_schedule(&self) -> Vec<(u64, Fault)> {
        if let Some(schedule) = &self.schedule {
            return schedule.clone();
        }
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0xFA17_5EED);
        network::schedule(&mut rng, self, self.nodes, self.fault_window_ms)
    }
}

/// Looks for a smaller run that still breaks an invariant that must hold: faults are removed
/// one at a time, then clients' operations halved, while the failure remains. Returns the
/// smallest configuration found and its report (the original run if it did not fail).
pub fn shrink(config: SimConfig) -> (SimConfig, SimReport) {
    let fails = |config: &SimConfig| {
        let report = Sim::new(config.clone()).run();
        (!report.failures().is_empty()).then_some(report)
    };
    let mut best = config.clone();
    let Some(mut report) = fails(&best) else {
        let report = Sim::new(config.clone()).run();
        return (config, report);
    };
    best.schedule = Some(best.fault_schedule());
    let mut progress = true;
    while progress {
        progress = false;
        let faults = best.fault_schedule();
        for i in 0..faults.len() {
            let mut smaller = best.clone();
            let mut schedule = faults.clone();
            schedule.remove(i);
            smaller.schedule = Some(schedule);
            if let Some(found) = fails(&smaller) {
                (best, report, progress) = (smaller, found, true);
                break;
            }
        }
        if !progress && best.ops_per_client > 1 {
            let smaller = SimConfig {
                ops_per_client: best.ops_per_client / 2,
                ..best.clone()
            };
            if let Some(found) = fails(&smaller) {
                (best, report, progress) = (smaller, found, true);
            }
        }
    }
    (best, report)
}
