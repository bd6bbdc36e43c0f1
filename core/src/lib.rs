//! The node's decisions as a sans-IO state machine (shaped like quinn-proto's `Endpoint`).
//!
//! [`NodeCore`] owns everything one node decides: gossip membership and failure detection, the
//! ring and which ring to adopt, the claimant's changes to it, the bucket table, placement and
//! put forwarding (paper 4.5), the quorum coordinators, hint delivery (4.6), handoff after ring
//! changes, Merkle anti-entropy (4.7), node removal, and what must be remembered across
//! restarts. It is driven by calls that carry `now`
//! (milliseconds on a clock that never goes back) and produces [`Output`]s drained with
//! [`NodeCore::poll_output`]:
//!
//! | input | output |
//! |---|---|
//! | [`NodeCore::handle_request`]: a client or peer request arrived | [`Output::Respond`] exactly once per request |
//! | [`NodeCore::handle_call_result`]: a peer answered (or did not) | [`Output::Call`]: send a request to a peer |
//! | [`NodeCore::handle_store_result`]: a store operation finished | [`Output::Store`]: run a [`StoreOp`] |
//! | [`NodeCore::handle_timeout`]: the time [`NodeCore::poll_timeout`] named came | [`Output::Event`]: for logs and metrics |
//!
//! The async runtime (`dynamo-node`) and the whole-cluster simulator (`dynamo-tests`) are
//! two drivers of the same core. This module must not know tokio, quinn, TLS handshakes,
//! fjall, the wall clock or a thread RNG: randomness comes from the seed given to
//! [`NodeCore::new`], time from the callers, and the store only through [`StoreOp`]s.

mod admin;
mod admission;
mod anti_entropy;
mod client;
mod context_key;
mod continuation;
mod coordinate;
mod disk;
mod dispatch;
mod handoff;
mod hints;
mod listing;
mod membership;
mod reaper;
mod removal;
mod serve;
mod store_ops;
mod time;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use dynamo_gossip::{Config as GossipConfig, Gossip, Identity as GossipIdentity, Status};
use dynamo_quorum::ReplicaReply;
use dynamo_ring::{Member, NodeId, Ring};
use dynamo_storage::Durability;
use dynamo_vclock::Actor;

pub use disk::DiskSpace;
pub use removal::{MAX_REMOVALS, Removal};
pub use store_ops::{
    GET_MANY_MAX_BYTES, StoreError, StoreErrorKind, StoreOp, StoreResult, execute, load_saved_state,
};
pub use time::Time;

use anti_entropy::AntiEntropy;
use continuation::{CallFor, StoreFor};
use coordinate::Coordinator;
use dynamo_protocol::PeerIdentity;
use dynamo_protocol::{BucketEntry, BucketProps, Request, Response};
use handoff::Handoffs;
use hints::HintDelivery;

// A key the protocol accepts, with its longest bucket prefix, is never too long for the store.
const _: () = assert!(
    dynamo_protocol::MAX_KEY_BYTES + dynamo_protocol::MAX_BUCKET_NAME + 1
        == dynamo_storage::MAX_KEY_BYTES
);

/// Node-state name of the adopted ring (postcard of [`Ring`]).
pub const STATE_RING: &str = "ring";
/// Node-state name of the bucket table (postcard of `Vec<BucketEntry>`).
pub const STATE_BUCKETS: &str = "buckets";
/// Node-state name of this node's own membership status (`joining`, `alive`, `leaving`, `left`).
pub const STATE_STATUS: &str = "status";
/// Node-state name of the members removed for good (postcard of `Vec<Removal>`).
pub const STATE_REMOVED: &str = "removed";
/// Node-state name of the cluster's context key (32 bytes).
pub const STATE_CONTEXT_KEY: &str = "context_key";

/// Timeout of one peer request (replica operations, gossip, hints), in milliseconds.
pub const PEER_TIMEOUT_MS: u64 = 2_000;
/// Timeout of one handoff batch, in milliseconds.
pub const HANDOFF_TIMEOUT_MS: u64 = 10_000;
/// How often hints are offered to their owners, in milliseconds.
pub const HINT_INTERVAL_MS: u64 = 1_000;
/// The most partitions a ring may have: the ring must fit one gossip value.
pub const MAX_PARTITIONS: u32 = 4096;
/// The longest timeout a client may ask for.
pub const MAX_CLIENT_TIMEOUT_MS: u64 = 60_000;
/// The largest N a bucket may have (preference lists are walked per request).
pub const MAX_BUCKET_N: usize = 16;
/// The most buckets a cluster holds: the table travels in one gossip value (at most about 90
/// bytes an entry, within gossip's 32 KiB messages) and is saved whole.
pub const MAX_BUCKETS: usize = 256;
/// Keys per handoff scan or hint batch.
pub const BATCH: usize = 128;

/// What a core needs to know about its node.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    /// A key made of 32 random bytes: the cluster's context key if this node is the first to
    /// need one (see [`context_key`]). The runtime draws it from the OS; never logged.
    pub secret: dynamo_quorum::ContextKey,
    /// Node id.
    pub name: String,
    /// The address peers reach this node at (opaque to the core; gossip carries it).
    pub address: String,
    /// Failure domain.
    pub zone: String,
    /// Relative capacity.
    pub capacity: u32,
    /// Seed addresses; none, and no saved ring, founds a new cluster.
    pub seeds: Vec<String>,
    /// Gossip cluster name.
    pub cluster: String,
    /// Partitions of a new ring.
    pub partitions: u32,
    /// Replication target of a new ring's claim.
    pub target_n: usize,
    /// Default client request timeout, in milliseconds.
    pub request_timeout_ms: u64,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// Time between gossip rounds, in milliseconds.
    pub gossip_interval_ms: u64,
    /// Durability of replica writes (paper 6.1); coordinators' own writes, delivered hints,
    /// handoff and node state are always synced.
    pub replica_durability: Durability,
    /// Time between anti-entropy sweeps over every (partition, replica) pair, in milliseconds
    /// (paper 4.7); 0 turns anti-entropy off.
    pub anti_entropy_interval_ms: u64,
    /// Anti-entropy exchanges run at once.
    pub anti_entropy_sessions: usize,
    /// Bytes of versions anti-entropy may move per second (fetched and pushed); 0: no limit.
    pub anti_entropy_bytes_per_sec: u64,
    /// Partition transfers handoff runs at once (at least one).
    pub handoff_concurrency: usize,
    /// The operator asked this node to join (again): a node that had left joins anew. Without
    /// it, a node that left stays out when restarted (a process supervisor's restart must not
    /// undo a decommission).
    pub rejoin: bool,
    /// A tombstone older than this (milliseconds) is removed for good once every replica holds
    /// it and no other node holds a version of its key; 0 keeps tombstones forever.
    pub tombstone_grace_ms: u64,
    /// A member that is down for good which this joining node replaces: the claimant removes it
    /// and adds this node in one ring change, so this node takes over its partitions (which
    /// anti-entropy fills from the surviving replicas) instead of a removal and a join each
    /// moving data.
    pub replaces: Option<String>,
    /// Paper 4.6 before failure detection has caught up: a replica that has not answered a
    /// client request's read or write within this many milliseconds (at most a third of the
    /// request's timeout) is stood in for by the next node of the ring that is up; 0 waits for
    /// it until the deadline.
    pub stand_in_after_ms: u64,
}

/// Node state a restarted node reads back from its store before it builds its core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedState {
    /// [`STATE_RING`].
    pub ring: Option<Vec<u8>>,
    /// [`STATE_BUCKETS`].
    pub buckets: Option<Vec<u8>>,
    /// [`STATE_STATUS`].
    pub status: Option<Vec<u8>>,
    /// [`STATE_REMOVED`].
    pub removed: Option<Vec<u8>>,
    /// [`STATE_CONTEXT_KEY`].
    pub context_key: Option<Vec<u8>>,
}

/// Why a core could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Saved node state could not be decoded.
    #[error("saved {name} is unreadable: {reason}")]
    Saved {
        /// Which state.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// Why a call to a peer brought no answer. The driver says which kind; the message is for
/// people (and the logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What went wrong.
    pub kind: CallErrorKind,
    /// The driver's account of it.
    pub message: String,
}

/// What kind of failure a call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallErrorKind {
    /// No answer within the call's timeout: the peer may still have acted on it.
    Timeout,
    /// The peer could not be reached (no address, no route, refused, not resolved): it did
    /// not get the request.
    Unreachable,
    /// The exchange broke off or its answer was unusable (a reset stream, a frame that does
    /// not decode): the peer may have acted on it.
    Broken,
}

impl CallError {
    /// A call error of `kind`.
    pub fn new(kind: CallErrorKind, message: impl Into<String>) -> CallError {
        CallError {
            kind,
            message: message.into(),
        }
    }
}

/// Identifies a request the core must answer; chosen by the driver, unique among open ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Identifies a call or store operation the core started; the driver hands it back with the
/// result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Ids of the core's own work, one type per kind, so an id of one kind can never name work of
/// another (they were all bare `u64`s, and a handoff id could look up an exchange).
macro_rules! work_ids {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
            struct $name(u64);
        )+
    };
}

work_ids!(
    /// A running quorum coordinator (drawn from the [`OpId`] counter).
    CoordinatorId,
    /// A bucket table push waiting for peers (drawn from the [`OpId`] counter).
    PushId,
    /// A key listing in progress (drawn from the [`OpId`] counter).
    ListingId,
    /// A partition transfer of handoff.
    TransferId,
    /// A check, after a handoff batch, that every current replica holds what was sent.
    CheckId,
    /// An anti-entropy exchange with one peer over one partition.
    ExchangeId,
);

/// An effect for the driver to carry out.
#[derive(Debug)]
pub enum Output {
    /// Send `request` to the peer at `address`. With an `id`, report the answer (or the
    /// failure to get one within `timeout_ms`) through [`NodeCore::handle_call_result`];
    /// without, the answer is not needed (gossip).
    Call {
        /// The call, if its answer is wanted.
        id: Option<OpId>,
        /// The peer's address.
        address: String,
        /// What to send.
        request: Request,
        /// How long to wait for the answer.
        timeout_ms: u64,
    },
    /// Run `op` on the store and report through [`NodeCore::handle_store_result`].
    Store {
        /// The operation.
        id: OpId,
        /// What to do.
        op: StoreOp,
    },
    /// Answer request `id`.
    Respond {
        /// The request.
        id: RequestId,
        /// The answer.
        response: Response,
    },
    /// Something worth logging or counting.
    Event(CoreEvent),
}

/// What happened inside the core, for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreEvent {
    /// This node adopted a ring.
    RingAdopted {
        /// Its version.
        version: u64,
        /// Its member count.
        members: usize,
    },
    /// This node announced a new membership status.
    StatusChanged(String),
    /// Partitions must be handed to new replicas.
    HandoffStarted {
        /// Partition transfers queued.
        transfers: usize,
    },
    /// Every queued transfer ended.
    HandoffFinished {
        /// Transfers given up after retries.
        failed: usize,
        /// Copies dropped after their new replica acknowledged them, since the node started.
        dropped: u64,
    },
    /// A hint owner refused a hint.
    HintRefused {
        /// The owner.
        owner: String,
        /// Its answer.
        reason: String,
    },
    /// Something went wrong that the core worked around (a warning).
    Problem(String),
    /// An impossible state (a bug of the core or its driver, never a peer's doing): a simulator
    /// run that sees one fails; a node logs it as an error.
    Bug(String),
    /// A detail worth a debug line (a refused peer message, a push gossip will repeat).
    Detail(String),
    /// The store can no longer promise durability: this node stopped serving until it is
    /// restarted (the message says why).
    Stopped(String),
    /// This node's disk became full, or has room again (see [`DiskSpace`]).
    DiskFull {
        /// Whether it is full now.
        full: bool,
        /// What it means, for the log.
        message: String,
    },
}

/// One node's decisions. See the [module documentation](self).
pub struct NodeCore {
    config: CoreConfig,
    me: NodeId,
    actor: Actor,
    gossip: Gossip,
    ring: Option<Ring>,
    /// `(version, digest)` of `ring`, so a gossiped ring is compared without re-encoding ours.
    ring_rank: Option<(u64, u128)>,
    buckets: BTreeMap<String, BucketEntry>,
    /// Members removed for good (see [`removal`]).
    removals: removal::Removals,
    /// What this node knows of its disk's free space (see [`disk`]).
    disk: disk::DiskState,
    /// The cluster's key for sealing context tokens (see [`context_key`]).
    context_key: Option<dynamo_quorum::ContextKey>,
    /// The status last saved, so it is saved only when it changes.
    saved_status: Option<Status>,
    shutting_down: bool,
    next_op: u64,
    /// Requests not answered yet.
    open_requests: BTreeSet<RequestId>,
    /// What the answer to each call in flight is for.
    calls: BTreeMap<OpId, CallFor>,
    /// What the result of each store operation in flight is for.
    store_ops: BTreeMap<OpId, StoreFor>,
    /// Running coordinators, boxed: each is taken out and put back for every input it gets,
    /// and a box moves in 8 bytes where a coordinator is about 500 (memmove fell from 6.5% to
    /// 5.3% of a node's time in a read load).
    coordinators: BTreeMap<CoordinatorId, Box<Coordinator>>,
    /// `(deadline, coordinator)` for every coordinator waiting on a timeout.
    coordinator_timers: BTreeSet<(Time, CoordinatorId)>,
    /// Bucket pushes waiting for their answers (peers and this node's own save).
    bucket_pushes: BTreeMap<PushId, admin::BucketPush>,
    hints: HintDelivery,
    handoffs: Handoffs,
    reaper: reaper::Reaper,
    anti_entropy: AntiEntropy,
    /// Node-state saves by name: at most one in flight and one waiting (the latest) each.
    saves: BTreeMap<&'static str, SaveSlot>,
    /// Bumped whenever the ring in use changes.
    ring_generation: u64,
    /// Key listings in progress, by id.
    listings: BTreeMap<ListingId, listing::Listing>,
    /// What this node counted since it started.
    counters: dynamo_protocol::NodeCounters,
    outputs: VecDeque<Output>,
}

/// The saves of one piece of node state.
#[derive(Debug, Default)]
struct SaveSlot {
    in_flight: bool,
    /// Told when the save in flight is done.
    in_flight_waiters: Vec<SaveWaiter>,
    /// The latest bytes to save once the one in flight is done.
    next: Option<Vec<u8>>,
    next_waiters: Vec<SaveWaiter>,
}

/// Who waits for a save of node state to be on disk.
#[derive(Debug, Clone, Copy)]
enum SaveWaiter {
    /// A request answered `Ack` (or the save's error) once it is.
    Request(RequestId),
    /// A bucket table push, which counts this node's own save as one of its answers.
    Push(PushId),
}

impl NodeCore {
    /// A core for a node starting at `now`: it resumes the ring, buckets and status it saved,
    /// or founds a cluster (no seeds and no saved ring), or waits to be added through its seeds.
    /// A seed that is this node's own address is no seed: every pod of a Kubernetes
    /// `StatefulSet` can name the first pod as its seed, and the first founds the cluster.
    /// `actor` is the store's vclock actor; `seed` drives every random choice.
    pub fn new(
        mut config: CoreConfig,
        saved: &SavedState,
        actor: Actor,
        now: Time,
        seed: u64,
    ) -> Result<NodeCore, CoreError> {
        if config.name.is_empty() {
            return Err(CoreError::Config("the node name is empty".into()));
        }
        let own_address = config.address.clone();
        config.seeds.retain(|seed| *seed != own_address);
        if config.partitions > MAX_PARTITIONS {
            return Err(CoreError::Config(format!(
                "partitions = {} is more than {MAX_PARTITIONS}",
                config.partitions
            )));
        }
        let me = NodeId::from(config.name.as_str());
        let ring = match &saved.ring {
            Some(bytes) => {
                Some(
                    postcard::from_bytes::<Ring>(bytes).map_err(|e| CoreError::Saved {
                        name: STATE_RING,
                        reason: e.to_string(),
                    })?,
                )
            }
            None if config.seeds.is_empty() => {
                let member = Member::new(me.clone(), config.zone.clone(), config.capacity.max(1));
                let ring = Ring::equal_partitions(config.partitions, config.target_n, vec![member])
                    .map_err(|e| CoreError::Config(e.to_string()))?;
                Some(ring)
            }
            None => None,
        };
        let in_ring = ring.as_ref().is_some_and(|r| r.member(&me).is_some());
        let saved_status = match &saved.status {
            Some(bytes) => Some(decode_status(bytes).ok_or_else(|| CoreError::Saved {
                name: STATE_STATUS,
                reason: format!("{:?} is not a status", String::from_utf8_lossy(bytes)),
            })?),
            None => None,
        };
        // A node that was leaving goes on leaving (what it holds is handed off again below); a
        // node that had left stays out unless asked to join again; otherwise membership of the
        // ring decides.
        let status = match saved_status {
            Some(Status::Leaving | Status::Left) if in_ring => Status::Leaving,
            Some(Status::Leaving) => Status::Leaving,
            Some(Status::Left) if !config.rejoin => Status::Left,
            _ if in_ring => Status::Alive,
            _ => Status::Joining,
        };
        let gossip_config = GossipConfig {
            cluster: config.cluster.clone(),
            seeds: config.seeds.clone(),
            gossip_interval: Duration::from_millis(config.gossip_interval_ms.max(10)),
            ..GossipConfig::default()
        };
        let identity = GossipIdentity::new(
            config.name.as_str(),
            now.as_millis(),
            config.address.clone(),
        )
        .with_zone(config.zone.clone())
        .with_capacity(config.capacity);
        let mut gossip = Gossip::new(
            gossip_config,
            identity,
            status,
            Duration::from_millis(now.as_millis()),
            seed,
        );
        if let Some(dead) = &config.replaces
            && status == Status::Joining
        {
            gossip
                .set(membership::REPLACES_KEY, dead.as_bytes().to_vec())
                .map_err(|e| CoreError::Config(e.to_string()))?;
        }
        let mut buckets = BTreeMap::new();
        let default = BucketProps::default_bucket();
        buckets.insert(
            default.name.clone(),
            BucketEntry {
                props: default,
                stamp_ms: 0,
                by: String::new(),
            },
        );
        if let Some(bytes) = &saved.buckets {
            let entries: Vec<BucketEntry> =
                postcard::from_bytes(bytes).map_err(|e| CoreError::Saved {
                    name: STATE_BUCKETS,
                    reason: e.to_string(),
                })?;
            membership::merge_bucket_entries(&mut buckets, entries);
        }
        let mut removals = removal::Removals::default();
        if let Some(bytes) = &saved.removed {
            let saved = removal::Removals::decode(bytes).map_err(|e| CoreError::Saved {
                name: STATE_REMOVED,
                reason: e.to_string(),
            })?;
            removals.merge(saved);
        }
        gossip
            .set(removal::ACTOR_KEY, actor.to_string().into_bytes())
            .map_err(|e| CoreError::Config(e.to_string()))?;
        let founding = saved.ring.is_none() && ring.is_some();
        let mut core = NodeCore {
            me,
            actor,
            gossip,
            ring: None,
            ring_rank: None,
            buckets,
            removals,
            disk: disk::DiskState::default(),
            context_key: None,
            saved_status,
            shutting_down: false,
            next_op: 0,
            open_requests: BTreeSet::new(),
            calls: BTreeMap::new(),
            store_ops: BTreeMap::new(),
            coordinators: BTreeMap::new(),
            coordinator_timers: BTreeSet::new(),
            bucket_pushes: BTreeMap::new(),
            hints: HintDelivery::new(now),
            handoffs: Handoffs::new(now),
            reaper: reaper::Reaper::new(now, config.tombstone_grace_ms),
            anti_entropy: AntiEntropy::new(
                now,
                config.anti_entropy_interval_ms,
                config.anti_entropy_bytes_per_sec,
                seed.rotate_left(17),
            ),
            saves: BTreeMap::new(),
            ring_generation: 0,
            listings: BTreeMap::new(),
            counters: dynamo_protocol::NodeCounters::default(),
            outputs: VecDeque::new(),
            config,
        };
        if let Some(ring) = ring
            && let Some(bytes) = core.install_ring(ring)
            && founding
        {
            // A founder saves its first ring at once.
            core.save_state(STATE_RING, bytes, None);
        }
        core.publish_buckets(false);
        core.publish_removals(false);
        match saved.context_key.as_deref() {
            Some(bytes) => {
                let key = dynamo_quorum::ContextKey::from_slice(bytes).ok_or_else(|| {
                    CoreError::Saved {
                        name: STATE_CONTEXT_KEY,
                        reason: format!("{} bytes, not 32", bytes.len()),
                    }
                })?;
                core.use_context_key(key, false);
            }
            // A founder makes the cluster's key at once; any other node first listens to gossip
            // for one (see `context_key`).
            None if founding => core.settle_context_key(),
            None => {}
        }
        if saved.ring.is_some() {
            // A restart: handoffs that were running are lost with the process.
            core.hand_off_unowned(now);
        }
        if status == Status::Left {
            core.problem(format!(
                "{} left the cluster; it serves no data until it joins again (`dynamo join`)",
                core.me
            ));
        }
        core.update_own_status(now);
        Ok(core)
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.me
    }

    /// The ring in use, if any.
    pub fn ring(&self) -> Option<&Ring> {
        self.ring.as_ref()
    }

    /// A number that changes whenever the ring in use changes (also to another ring of the
    /// same version, after two claimants raced).
    pub fn ring_generation(&self) -> u64 {
        self.ring_generation
    }

    /// The bucket table.
    pub fn buckets(&self) -> impl Iterator<Item = &BucketProps> {
        self.buckets.values().map(|e| &e.props)
    }

    /// What this node counted since it started (its status's and `/metrics`' counters).
    pub fn counters(&self) -> dynamo_protocol::NodeCounters {
        self.counters
    }

    /// This node's announced membership status.
    pub fn status(&self) -> Option<Status> {
        self.gossip.member(self.gossip.id()).map(|m| m.status())
    }

    /// Whether this node's failure detector considers `node` up (itself always).
    pub fn is_up(&self, node: &NodeId) -> bool {
        *node == self.me
            || self
                .gossip
                .is_live(&dynamo_gossip::NodeId::new(node.as_str()))
    }

    /// Requests received and not answered yet.
    pub fn open_requests(&self) -> usize {
        self.open_requests.len()
    }

    /// Whether partitions are still being handed off.
    pub fn handoff_pending(&self) -> bool {
        self.handoffs.pending()
    }

    /// From now on client requests are refused with "try another node"; peer requests are
    /// still served so the rest of the cluster is not disturbed while in-flight work ends.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// A request arrived from `from` (whose identity the transport verified).
    pub fn handle_request(
        &mut self,
        now: Time,
        id: RequestId,
        from: &PeerIdentity,
        request: Request,
    ) {
        if !self.open_requests.insert(id) {
            self.bug(format!(
                "the driver reused request id {id:?} while it was open"
            ));
            return;
        }
        self.dispatch(now, id, from, request);
    }

    /// The answer to call `id` (or why there is none).
    pub fn handle_call_result(&mut self, now: Time, id: OpId, result: Result<Response, CallError>) {
        let Some(then) = self.calls.remove(&id) else {
            let kind = if self.store_ops.contains_key(&id) {
                "a store operation"
            } else {
                "nothing in flight"
            };
            return self.bug(format!("the driver answered call {id:?}, which is {kind}"));
        };
        self.on_call_result(now, then, result);
    }

    /// The result of store operation `id`.
    pub fn handle_store_result(
        &mut self,
        now: Time,
        id: OpId,
        result: Result<StoreResult, StoreError>,
    ) {
        let Some(then) = self.store_ops.remove(&id) else {
            let kind = if self.calls.contains_key(&id) {
                "a call"
            } else {
                "nothing in flight"
            };
            return self.bug(format!(
                "the driver reported store operation {id:?}, which is {kind}"
            ));
        };
        if let Err(error) = &result {
            self.note_store_error(error);
        }
        self.on_store_result(now, then, result);
    }

    /// Time passed: run whatever was due by `now` (gossip rounds, coordinator deadlines, hint
    /// rounds, handoff retries, anti-entropy sweeps).
    pub fn handle_timeout(&mut self, now: Time) {
        if self.stopped().is_some() {
            // No gossip either: peers see it down, hint its writes and stand in for it.
            return self.expire_coordinators(now);
        }
        self.gossip
            .handle_timeout(Duration::from_millis(now.as_millis()));
        self.after_gossip(now);
        self.expire_coordinators(now);
        if self.is_removed() {
            return; // it serves nothing: what it holds must not reach the cluster
        }
        self.hints_tick(now);
        self.handoff_tick(now);
        self.anti_entropy_tick(now);
        self.reaper_tick(now);
    }

    /// Ends the coordinators whose deadline passed by `now`.
    fn expire_coordinators(&mut self, now: Time) {
        let due: Vec<CoordinatorId> = self
            .coordinator_timers
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            self.coordinator_timeout(now, id);
        }
    }

    /// The next time [`NodeCore::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        // Rounded up: gossip keeps sub-millisecond phases, and a wake-up before its round would
        // find nothing due and ask for the same instant again.
        let gossip = self.gossip.poll_timeout().map(|at| {
            Time::from_millis(u64::try_from(at.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
        });
        let background = !self.is_removed() && self.stopped().is_none();
        let gossip = gossip.filter(|_| self.stopped().is_none());
        [gossip, self.coordinator_timers.first().map(|(at, _)| *at)]
            .into_iter()
            .chain(
                [
                    self.hints.next_due(),
                    self.handoffs.next_due(),
                    self.anti_entropy.next_due(),
                    self.reaper.next_due(),
                ]
                .into_iter()
                .filter(|_| background),
            )
            .flatten()
            .min()
    }

    /// The next effect to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn next_id(&mut self) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        id
    }

    /// Asks the driver to run `op`; its result goes to `then`.
    fn store(&mut self, op: StoreOp, then: impl Into<StoreFor>) {
        let id = self.next_id();
        let previous = self.store_ops.insert(id, then.into());
        debug_assert!(previous.is_none(), "operation id {id:?} reused");
        self.outputs.push_back(Output::Store { id, op });
    }

    /// Remembers that the answer to call `id` goes to `then`.
    fn await_call(&mut self, id: OpId, then: CallFor) {
        let previous = self.calls.insert(id, then);
        debug_assert!(previous.is_none(), "operation id {id:?} reused");
    }

    /// A call whose answer goes to `then`; an unknown address fails it at once.
    fn call(
        &mut self,
        now: Time,
        to: &NodeId,
        request: Request,
        timeout_ms: u64,
        then: impl Into<CallFor>,
    ) {
        let Some(address) = self.address_of(to) else {
            let error = CallError::new(
                CallErrorKind::Unreachable,
                format!("the address of {to} is unknown"),
            );
            self.on_call_result(now, then.into(), Err(error));
            return;
        };
        let id = self.next_id();
        self.await_call(id, then.into());
        self.outputs.push_back(Output::Call {
            id: Some(id),
            address,
            request,
            timeout_ms,
        });
    }

    /// Answers request `id`: exactly once, so a second answer is a bug (and goes nowhere).
    fn respond(&mut self, id: RequestId, response: Response) {
        if self.open_requests.remove(&id) {
            self.outputs.push_back(Output::Respond { id, response });
        } else {
            self.bug(format!(
                "request {id:?} answered twice (or never asked): {response:?}"
            ));
        }
    }

    fn event(&mut self, event: CoreEvent) {
        self.outputs.push_back(Output::Event(event));
    }

    fn problem(&mut self, message: String) {
        self.event(CoreEvent::Problem(message));
    }

    /// An impossible state: a bug of this code or of its driver, never something a peer or a
    /// client sent. Panics in debug builds (tests, the simulator's test runs); otherwise a
    /// [`CoreEvent::Bug`], which fails a simulator run and is logged as an error by a node.
    fn bug(&mut self, message: String) {
        debug_assert!(false, "dynamo-core bug: {message}");
        self.event(CoreEvent::Bug(message));
    }

    /// A store operation answered with a result of another kind than `asked`: a bug of
    /// [`execute`] or of the driver. Reported as one; the message is the caller's error.
    fn wrong_kind(&mut self, asked: &str, got: &StoreResult) -> String {
        let message = format!("{asked} answered {}", got.kind());
        self.bug(message.clone());
        message
    }

    fn address_of(&self, node: &NodeId) -> Option<String> {
        if *node == self.me {
            return Some(self.config.address.clone());
        }
        self.gossip
            .member(&dynamo_gossip::NodeId::new(node.as_str()))
            .map(|m| m.identity().address.clone())
    }

    /// Saves node state `name`. Saves of one name are carried out in order, one at a time; a
    /// save asked for while one is in flight replaces any other waiting one (only the latest
    /// state matters). `waiter` is answered once these bytes (or later ones) are on disk.
    fn save_state(&mut self, name: &'static str, bytes: Vec<u8>, waiter: Option<RequestId>) {
        let waiter = waiter.map(SaveWaiter::Request);
        let slot = self.saves.entry(name).or_default();
        if slot.in_flight {
            slot.next = Some(bytes);
            slot.next_waiters.extend(waiter);
            return;
        }
        slot.in_flight = true;
        slot.in_flight_waiters.extend(waiter);
        self.store(
            StoreOp::SaveState { name, bytes },
            StoreFor::StateSaved(name),
        );
    }

    /// Tells `waiter` once what node state `name` holds now is on disk: at once when no save of
    /// it is in flight or waiting (what is saved is what this node holds), else with the
    /// latest save.
    fn when_saved(&mut self, name: &'static str, waiter: SaveWaiter) {
        let slot = self.saves.entry(name).or_default();
        if slot.next.is_some() {
            slot.next_waiters.push(waiter);
        } else if slot.in_flight {
            slot.in_flight_waiters.push(waiter);
        } else {
            self.saved(waiter, &Response::Ack, None);
        }
    }

    /// A save `waiter` waited for ended (`failure` says why it failed).
    fn saved(&mut self, waiter: SaveWaiter, response: &Response, failure: Option<&str>) {
        match waiter {
            SaveWaiter::Request(request) => self.respond(request, response.clone()),
            SaveWaiter::Push(push) => self.bucket_push_answered(push, failure),
        }
    }

    /// A save of `name` finished: answer its waiters, then start the waiting save, if any.
    fn state_saved(&mut self, name: &'static str, result: Result<StoreResult, StoreError>) {
        let Some(slot) = self.saves.get_mut(name) else {
            return;
        };
        let waiters = std::mem::take(&mut slot.in_flight_waiters);
        slot.in_flight = false;
        let next = slot.next.take();
        let next_waiters = std::mem::take(&mut slot.next_waiters);
        let response = match &result {
            Ok(_) => Response::Ack,
            Err(error) => Response::error(
                dynamo_protocol::ErrorKind::Internal,
                format!("could not save the {name}: {error}"),
            ),
        };
        let failure = result.as_ref().err().map(ToString::to_string);
        for waiter in waiters {
            self.saved(waiter, &response, failure.as_deref());
        }
        if let Err(error) = result {
            self.problem(format!("could not save the {name}: {error}"));
            if name == STATE_STATUS {
                // Saved again at the next status check.
                self.saved_status = None;
            }
        }
        if let Some(bytes) = next {
            self.save_state(name, bytes, None);
            if let Some(slot) = self.saves.get_mut(name) {
                slot.in_flight_waiters.extend(next_waiters);
            }
        }
    }
}

/// An internal error answer.
fn internal(message: impl Into<String>) -> Response {
    Response::error(dynamo_protocol::ErrorKind::Internal, message)
}

/// A replica reply for a failed store operation.
fn failed(error: impl Into<String>) -> ReplicaReply {
    ReplicaReply::Failed(error.into())
}

fn encode_status(status: Status) -> &'static [u8] {
    match status {
        Status::Joining => b"joining",
        Status::Alive => b"alive",
        Status::Leaving => b"leaving",
        Status::Left => b"left",
    }
}

fn decode_status(bytes: &[u8]) -> Option<Status> {
    match bytes {
        b"joining" => Some(Status::Joining),
        b"alive" => Some(Status::Alive),
        b"leaving" => Some(Status::Leaving),
        b"left" => Some(Status::Left),
        _ => None,
    }
}
