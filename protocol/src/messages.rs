//! The messages nodes and clients exchange, one request and one response per QUIC stream.
//!
//! Client requests name a bucket and a key; peer requests carry the storage key (bucket and key
//! encoded together, see [`storage_key`]) and its ring partition. This module must not know how
//! messages travel (that is `dynamo-client`'s transport) or how they are served.

use dynamo_merkle::{DiffReply, DiffRequest};
use dynamo_quorum::{Object, ReplicaReply, ReplicaRequest};
use dynamo_resolve::{Resolution, Resolver};
use dynamo_ring::Ring;
use serde::{Deserialize, Serialize};

/// Longest bucket name.
pub const MAX_BUCKET_NAME: usize = 64;
/// Longest user key, in bytes: what the store takes (`dynamo_storage::MAX_KEY_BYTES`, 65,275),
/// less the longest bucket prefix (its length byte and name), so a key the node accepts is never
/// refused by the store. `dynamo-core` checks the sum when it compiles; this crate does not
/// depend on the store.
pub const MAX_KEY_BYTES: usize = 65_275 - MAX_BUCKET_NAME - 1;

/// Per-request overrides of the bucket's quorum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOptions {
    /// Read quorum override.
    pub r: Option<usize>,
    /// Write quorum override.
    pub w: Option<usize>,
    /// Primary read quorum override.
    pub pr: Option<usize>,
    /// Primary write quorum override.
    pub pw: Option<usize>,
    /// Client timeout override, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// A bucket: a namespace with its own replication parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketProps {
    /// The bucket's name: 1 to 64 characters of `[a-z0-9_-]`.
    pub name: String,
    /// Replicas per key.
    pub n: usize,
    /// Default read quorum.
    pub r: usize,
    /// Default write quorum.
    pub w: usize,
    /// Default primary read quorum.
    pub pr: usize,
    /// Default primary write quorum.
    pub pw: usize,
    /// How concurrent versions resolve on read (chosen when the bucket is created).
    pub resolver: Resolver,
}

impl BucketProps {
    /// A bucket `name` with the defaults of `dynamo bucket create`: N = 3, R = 2, W = 2, no
    /// primary quorums, siblings kept. Change fields with struct update syntax.
    ///
    /// ```
    /// use dynamo_protocol::BucketProps;
    /// let single = BucketProps { n: 1, r: 1, w: 1, ..BucketProps::new("single") };
    /// assert_eq!((single.name.as_str(), single.n), ("single", 1));
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            n: 3,
            r: 2,
            w: 2,
            pr: 0,
            pw: 0,
            resolver: Resolver::Siblings,
        }
    }

    /// The bucket every cluster has: (3, 2, 2).
    pub fn default_bucket() -> Self {
        Self::new("default")
    }
}

/// A bucket definition with the stamp that orders concurrent changes (last writer wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEntry {
    /// The bucket.
    pub props: BucketProps,
    /// When it was created or changed (wall-clock milliseconds).
    pub stamp_ms: u64,
    /// The node that recorded the change (breaks ties).
    pub by: String,
}

/// A request to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Read a key.
    Get {
        /// Bucket name.
        bucket: String,
        /// User key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Quorum overrides.
        options: RequestOptions,
    },
    /// Write (or, with `value: None`, delete) a key.
    Put {
        /// Bucket name.
        bucket: String,
        /// User key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The new value; `None` writes a tombstone.
        #[serde(with = "serde_bytes")]
        value: Option<Vec<u8>>,
        /// The context token of the read this write follows.
        context: Option<String>,
        /// Quorum overrides.
        options: RequestOptions,
        /// Set by a node that forwards the request to a replica of the key (paper 4.5); a
        /// forwarded request is never forwarded again.
        forwarded: bool,
        /// The write's identity, the same on every retry of it (the client library picks a
        /// random one): a retry through another node is recognised as the same write, never
        /// shown as a second sibling of the same value.
        write_id: Option<u128>,
    },
    /// Create or change a bucket.
    CreateBucket(BucketProps),
    /// List the buckets.
    ListBuckets,
    /// Cluster members and their state, as this node sees them.
    Status,
    /// The ring this node uses.
    Ring,
    /// Ask this node to leave the cluster (paper 4.8.1).
    Leave,
    /// Peer: a replica operation for a key of `partition`.
    Replica {
        /// Ring partition of the key.
        partition: u32,
        /// The operation.
        request: ReplicaRequest,
    },
    /// Peer: the sender's bucket table, merged by the receiver (sent when a bucket is created
    /// so it is usable at once, before gossip spreads it).
    Buckets(Vec<BucketEntry>),
    /// Peer: a gossip message; replies go to `reply_to`.
    Gossip {
        /// The sender's listen address.
        reply_to: String,
        /// An encoded `dynamo_gossip::Message`.
        message: Vec<u8>,
    },
    /// Peer: versions held as a hint for the receiver (paper 4.6), now delivered.
    DeliverHint {
        /// Ring partition of the key.
        partition: u32,
        /// Storage key.
        key: Vec<u8>,
        /// The versions.
        object: Object,
    },
    /// Peer: keys of a partition the receiver now replicates (handoff after a ring change), or
    /// versions an anti-entropy exchange pushes; the receiver merges them.
    Handoff {
        /// Ring partition.
        partition: u32,
        /// Storage keys and their versions.
        entries: Vec<(Vec<u8>, Object)>,
    },
    /// Peer: one step of an anti-entropy diff of `partition`'s Merkle trees (paper 4.7).
    Diff {
        /// Ring partition.
        partition: u32,
        /// The initiator's request.
        request: DiffRequest,
    },
    /// Peer: the receiver's versions of these keys of `partition` (anti-entropy pulls what
    /// differs); answered with [`Response::Entries`].
    Fetch {
        /// Ring partition.
        partition: u32,
        /// Storage keys.
        keys: Vec<Vec<u8>>,
    },
    /// Take a member that is down for good out of the ring (its partitions get new owners,
    /// which anti-entropy fills from the surviving replicas); answered with the new ring.
    RemoveNode {
        /// The member's node id.
        name: String,
    },
    /// Drop every partition transfer this node has queued or running (anti-entropy copies what
    /// they would have); answered with the number dropped. Refused by a leaving node.
    CancelHandoff,
    /// Answered at once with [`Response::Pong`] carrying the same bytes (at most
    /// [`MAX_PING_BYTES`]): no store, no quorum. `dynamo bench --transport` measures with it
    /// what the QUIC and mTLS path alone allows.
    Ping(#[serde(with = "serde_bytes")] Vec<u8>),
    /// List the keys of a bucket, one page at a time ([`Response::Keys`]): a full scan of every
    /// partition on its replicas, in partition order, then key order within a partition.
    ListKeys {
        /// Bucket name.
        bucket: String,
        /// Where the previous page ended; `None` starts at the first partition.
        cursor: Option<ListCursor>,
        /// Most keys in the page (1 to [`MAX_LIST_KEYS`]).
        limit: u32,
    },
    /// Peer: the live keys of `bucket` this replica holds in `partition`, after `after`
    /// ([`Response::Keys`]; `next` set when the replica holds more).
    ScanKeys {
        /// Ring partition.
        partition: u32,
        /// Bucket name.
        bucket: String,
        /// Continue after this user key.
        after: Option<Vec<u8>>,
        /// Most keys returned.
        limit: u32,
    },
    /// The Merkle root of every partition the node replicates under its ring
    /// ([`Response::Roots`]): replicas that agree on every key have equal roots, so a checker
    /// sees when anti-entropy has converged (paper 4.7).
    PartitionRoots,
    /// This node's own copy of a key it replicates, answered as a get of that one replica
    /// with a digest of the versions it holds ([`Response::Copy`]). A client that reads from
    /// R replicas itself (paper 6.4, client-driven coordination) answers from one copy when
    /// the digests of all R agree, and asks a coordinator (which repairs) when they differ.
    /// Refused with [`ErrorKind::NotReady`] by a node that is not one of the key's replicas
    /// under its ring.
    ReadCopy {
        /// Bucket name.
        bucket: String,
        /// User key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Every key of a bucket with its full version set, one page at a time
    /// ([`Response::Versions`]), for a backup: a scan like [`Request::ListKeys`]'s, in the
    /// same order and with the same cursors, whose entries are the union of the versions every
    /// reachable replica of the partition holds, deleted keys (tombstones) included.
    ExportVersions {
        /// Bucket name.
        bucket: String,
        /// Where the previous page ended; `None` starts at the first partition.
        cursor: Option<ListCursor>,
        /// Most keys in the page (1 to [`MAX_LIST_KEYS`]); a page also stops near
        /// [`MAX_EXPORT_PAGE_BYTES`].
        limit: u32,
    },
    /// Peer: the keys of `bucket` this replica holds in `partition` after `after`, with their
    /// versions, tombstones included ([`Response::Versions`]; `next` set when it holds more).
    ScanVersions {
        /// Ring partition.
        partition: u32,
        /// Bucket name.
        bucket: String,
        /// Continue after this user key.
        after: Option<Vec<u8>>,
        /// Most keys returned.
        limit: u32,
    },
    /// Merge `object` into a key's versions through the write path (a restore): the
    /// coordinator joins it with its own copy and sends the result to the key's replicas,
    /// answered after W of them hold it ([`Response::Put`]). A join never overwrites: a
    /// version the key already supersedes stays superseded, so restoring twice, or into a
    /// cluster that moved on, changes nothing it should not. Needs the admin role, since the
    /// versions carry dots of any actor (once forwarded, the node role of the node that
    /// checked it).
    MergeVersions {
        /// Bucket name.
        bucket: String,
        /// User key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The versions to merge.
        object: Object,
        /// Quorum overrides.
        options: RequestOptions,
        /// Set by a node that forwards the request to a replica of the key, as for a put.
        forwarded: bool,
    },
}

/// Bytes of versions a page of [`Request::ScanVersions`] or [`Request::ExportVersions`]
/// holds at most, unless its one entry alone is larger (a key's versions can be up to what a
/// get answers): the next entry goes to the next page.
pub const MAX_EXPORT_PAGE_BYTES: usize = 1024 * 1024;

/// A page of keys with their versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionPage {
    /// User keys and their versions, in listing order.
    pub entries: Vec<(Vec<u8>, Object)>,
    /// Where the next page starts; `None`: the scan is complete.
    pub next: Option<ListCursor>,
}

/// Most keys one [`Request::ListKeys`] page holds.
pub const MAX_LIST_KEYS: u32 = 1000;

/// Where a key listing continues: a partition and the last key listed in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCursor {
    /// The partition to continue in.
    pub partition: u32,
    /// The last user key listed in it; `None`: from its first key.
    pub after: Option<Vec<u8>>,
}

/// A page of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPage {
    /// User keys, in listing order.
    #[serde(with = "byte_strings")]
    pub keys: Vec<Vec<u8>>,
    /// Where the next page starts; `None`: the listing is complete.
    pub next: Option<ListCursor>,
}

/// Longest payload a [`Request::Ping`] may carry.
pub const MAX_PING_BYTES: usize = 64 * 1024;

/// What a request asks of the cluster, which decides the certificate roles that may send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads a key or the cluster's state.
    Read,
    /// Writes or deletes a key.
    Write,
    /// Changes membership or bucket properties, or merges versions of any actor (a restore).
    Admin,
    /// Node-to-node traffic: replica operations, gossip, hints, handoff, anti-entropy.
    Peer,
}

impl Access {
    /// What this kind of request does, for error messages ("may not {verb}").
    pub fn describe(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "change membership or buckets, or restore versions",
            Access::Peer => "send node-to-node requests",
        }
    }
}

impl Request {
    /// What this request asks of the cluster.
    pub fn access(&self) -> Access {
        match self {
            Request::Get { .. }
            | Request::ListBuckets
            | Request::Status
            | Request::Ring
            | Request::Ping(_)
            | Request::ListKeys { .. }
            | Request::PartitionRoots
            | Request::ReadCopy { .. }
            | Request::ExportVersions { .. } => Access::Read,
            Request::Put { .. } => Access::Write,
            Request::CreateBucket(_)
            | Request::MergeVersions {
                forwarded: false, ..
            }
            | Request::Leave
            | Request::RemoveNode { .. }
            | Request::CancelHandoff => Access::Admin,
            Request::Replica { .. }
            | Request::Buckets(_)
            | Request::Gossip { .. }
            | Request::DeliverHint { .. }
            | Request::Handoff { .. }
            | Request::Diff { .. }
            | Request::Fetch { .. }
            | Request::ScanKeys { .. }
            | Request::ScanVersions { .. }
            // Passed on by the node that checked the operator's role.
            | Request::MergeVersions {
                forwarded: true, ..
            } => Access::Peer,
        }
    }
}

/// The answer to a get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetReply {
    /// Data siblings (empty when not found or deleted).
    #[serde(with = "byte_strings")]
    pub values: Vec<Vec<u8>>,
    /// The context token to write with.
    pub context: String,
    /// Whether every sibling is a tombstone (the key was deleted).
    pub deleted: bool,
    /// The bucket's resolution of the siblings; `None` in a `siblings` bucket.
    pub resolution: Option<Box<Resolution>>,
}

/// The answer to a put or delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutReply {
    /// The context token of the version written.
    pub context: String,
    /// Acknowledgements received.
    pub acknowledged: usize,
    /// Warnings (for example many siblings).
    pub warnings: Vec<String>,
}

/// One member as a node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: String,
    /// Listen address.
    pub address: String,
    /// Zone.
    pub zone: String,
    /// Capacity weight.
    pub capacity: u32,
    /// Joining, alive, leaving or left; `removed` for a member removed for good.
    pub status: String,
    /// Whether the failure detector considers it up.
    pub up: bool,
    /// Whether it is in the ring.
    pub in_ring: bool,
    /// Partitions it owns as first replica.
    pub partitions: u32,
    /// Share of the key space it replicates, in percent of one full copy.
    pub ownership_percent: f64,
    /// Hints the answering node holds for it.
    pub pending_hints: usize,
    /// The failure detector's suspicion of it (phi accrual); `None` for the answering node and
    /// members it has not heard from.
    pub phi: Option<f64>,
    /// Its disk is full: it serves reads and takes no writes until space returns.
    pub disk_full: bool,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node.
    pub node: String,
    /// Its ring version (0 if it has none yet).
    pub ring_version: u64,
    /// Members, sorted by id.
    pub members: Vec<MemberStatus>,
    /// Anti-entropy as the answering node runs it (boxed: it keeps `Response` small).
    pub anti_entropy: Box<AntiEntropyStatus>,
    /// Partitions the answering node is handing to other nodes.
    pub handoff: HandoffStatus,
    /// Tombstones the answering node reaped (it sweeps the partitions it is first replica of;
    /// boxed like `anti_entropy`).
    pub reaper: Box<ReaperStatus>,
    /// What the answering node counted since it started (boxed like `anti_entropy`).
    pub counters: Box<NodeCounters>,
}

/// Events one node counted since it started (its `/metrics` counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounters {
    /// Stale or missing replicas a read repaired (paper 4.5).
    pub read_repairs: u64,
    /// Writes this node kept as hints for an unreachable primary (paper 4.6).
    pub hints_stored: u64,
    /// Hints this node delivered to their owner (or a current replica).
    pub hints_delivered: u64,
    /// Client requests coordinated here that failed for want of replies (unavailable or
    /// timed out).
    pub quorum_failures: u64,
    /// Replica requests of client reads and writes coordinated here that went to a spare node
    /// because a replica failed or stayed silent (paper 4.6, before failure detection).
    pub stand_ins: u64,
}

/// Tombstone reaping as one node runs it, since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaperStatus {
    /// How old a tombstone must be to be reaped, in milliseconds; 0: never reaped.
    pub grace_ms: u64,
    /// Keys removed for good.
    pub reaped: u64,
    /// Attempts that kept the tombstone (a node down, a hint held, replicas not in agreement).
    pub kept: u64,
}

/// Handoff as one node runs it: partitions it must give to other replicas after ring changes
/// (or, after a restart, everything it no longer replicates).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffStatus {
    /// Transfers waiting to start.
    pub queued: usize,
    /// The transfers running now (at most `handoff_concurrency`): partition, destination, and
    /// keys acknowledged so far.
    pub running: Vec<(u32, String, u64)>,
    /// Transfers given up since the last time the queue emptied (anti-entropy covers them).
    pub failed: usize,
}

/// Anti-entropy (paper 4.7) as one node runs it: when each partition it replicates last agreed
/// with each other replica, and what is in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AntiEntropyStatus {
    /// Whether anti-entropy runs on this node.
    pub enabled: bool,
    /// Time between sweeps, in milliseconds.
    pub interval_ms: u64,
    /// Every (partition, peer) pair, with how long ago it last agreed (or was repaired).
    pub pairs: Vec<PartitionSync>,
    /// Exchanges running now.
    pub in_progress: Vec<PartitionSync>,
    /// Keys repaired since the node started (fetched here or pushed to a peer).
    pub repaired_keys: u64,
    /// Bytes of versions moved since the node started.
    pub bytes_moved: u64,
    /// Whether the admission controller holds anti-entropy under its ceiling because clients
    /// are active (paper 6.5).
    pub throttled: bool,
    /// Bytes per second the admission controller allows anti-entropy now (0: unlimited).
    pub allowed_bytes_per_sec: u64,
}

impl AntiEntropyStatus {
    /// Whether this node has compared every (partition, peer) pair within the last `within_ms`
    /// and runs no exchange now: what it replicates equals its peers' copies as of then (a
    /// wiped node refilled, a fault healed).
    pub fn settled_within(&self, within_ms: u64) -> bool {
        self.in_progress.is_empty()
            && !self.pairs.is_empty()
            && self
                .pairs
                .iter()
                .all(|pair| pair.agreed_ms_ago.is_some_and(|ago| ago < within_ms))
    }
}

/// One partition and one other replica of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSync {
    /// Ring partition.
    pub partition: u32,
    /// The other replica.
    pub peer: String,
    /// Milliseconds since the two last agreed; `None`: not since this node started.
    pub agreed_ms_ago: Option<u64>,
}

/// What kind of failure an error reply reports, so clients can react.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request is malformed (bad bucket, key, context or quorum).
    BadRequest,
    /// Not enough replicas answered.
    Unavailable,
    /// The deadline passed.
    Timeout,
    /// The node has no ring yet or is not serving.
    NotReady,
    /// Anything else.
    Internal,
    /// The caller's certificate role does not allow this request; the message names the role
    /// it needs.
    Forbidden,
    /// The node has as many requests in flight as it takes; retry later or ask another node.
    Overloaded,
}

impl ErrorKind {
    /// The kind's name in metrics labels and the HTTP API's JSON errors.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::Internal => "internal",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Overloaded => "overloaded",
        }
    }
}

/// An error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// A message a person can act on.
    pub message: String,
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The answer to a get.
    Get(GetReply),
    /// The key does not exist (never written, or deleted); the context token lets a write
    /// supersede a tombstone.
    NotFound {
        /// Context token (of a tombstone, or empty).
        context: String,
    },
    /// The answer to a put or delete.
    Put(PutReply),
    /// The buckets.
    Buckets(Vec<BucketProps>),
    /// The cluster status.
    Status(ClusterStatus),
    /// The ring.
    Ring(Option<Box<Ring>>),
    /// A replica's answer.
    Replica(ReplicaReply),
    /// The versions the receiver stores after applying a delivered hint.
    Stored(Object),
    /// Done.
    Ack,
    /// The request failed.
    Error(ErrorReply),
    // New variants go last: postcard numbers variants by position.
    /// The answer to a [`Request::Diff`] step.
    Diff(DiffReply),
    /// The answer to a [`Request::Fetch`]: the keys the receiver holds, with their versions
    /// (keys it lacks are left out; a long answer stops early and the rest waits for the next
    /// exchange).
    Entries(Vec<(Vec<u8>, Object)>),
    /// The answer to a [`Request::CancelHandoff`]: how many transfers were dropped.
    Cancelled(usize),
    /// The answer to a [`Request::Ping`]: its bytes.
    Pong(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The answer to a [`Request::ListKeys`] or [`Request::ScanKeys`].
    Keys(KeyPage),
    /// The answer to a [`Request::PartitionRoots`].
    Roots(Vec<PartitionRoot>),
    /// The answer to a [`Request::ReadCopy`] (boxed: it keeps `Response` small).
    Copy(Box<CopyReply>),
    /// The answer to a [`Request::ExportVersions`] or [`Request::ScanVersions`].
    Versions(VersionPage),
}

/// One replica's copy of a key, for a client-side quorum read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyReply {
    /// A digest of every version the replica holds of the key (0: none): replicas whose
    /// digests are equal hold equal copies, and each gives the answer a coordinator would.
    pub digest: u64,
    /// What a get answers from this copy alone: [`Response::Get`] or [`Response::NotFound`].
    pub answer: Response,
    /// The bucket's N as this node knows it.
    pub n: usize,
    /// The bucket's default R as this node knows it: a client that read with a lower one
    /// missed a change of the bucket, and asks a coordinator.
    pub r: usize,
    /// The bucket's default primary read quorum as this node knows it (a client reads its
    /// copies only when it is 0).
    pub pr: usize,
}

/// One partition's Merkle root on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRoot {
    /// Ring partition.
    pub partition: u32,
    /// The root hash of its Merkle tree (0 for an empty partition).
    pub root: u64,
}

impl Response {
    /// An error response.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Error(ErrorReply {
            kind,
            message: message.into(),
        })
    }
}

/// A list of byte strings encoded as byte strings, not as sequences of numbers: the same bytes
/// in postcard, written and read as one copy each instead of byte by byte.
mod byte_strings {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        values: &[Vec<u8>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let borrowed: Vec<&serde_bytes::Bytes> =
            values.iter().map(|v| serde_bytes::Bytes::new(v)).collect();
        borrowed.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let owned: Vec<serde_bytes::ByteBuf> = Vec::deserialize(deserializer)?;
        Ok(owned
            .into_iter()
            .map(serde_bytes::ByteBuf::into_vec)
            .collect())
    }
}

/// Checks a bucket name: 1 to 64 characters of `[a-z0-9_-]`.
pub fn valid_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_BUCKET_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The key the ring and the store see: the bucket name's length, the name, then the user key,
/// so equal user keys in two buckets are different keys.
pub fn storage_key(bucket: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + bucket.len() + key.len());
    out.push(bucket.len() as u8);
    out.extend_from_slice(bucket.as_bytes());
    out.extend_from_slice(key);
    out
}

/// The bucket name and the user key of a storage key (the inverse of [`storage_key`]); `None`
/// when the bytes are too short to hold the bucket their first byte announces.
///
/// ```
/// use dynamo_protocol::{split_storage_key, storage_key};
/// let key = storage_key("carts", b"alice");
/// assert_eq!(split_storage_key(&key), Some((&b"carts"[..], &b"alice"[..])));
/// assert_eq!(split_storage_key(&[9, b'x']), None);
/// ```
pub fn split_storage_key(skey: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = skey.split_first()?;
    let len = usize::from(len);
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte strings encoded as bytes are the same postcard bytes as sequences of numbers, so
    /// nodes and stored state of either encoding read each other.
    #[test]
    fn byte_strings_keep_the_wire_format() {
        let keys = vec![b"alice".to_vec(), Vec::new(), vec![0, 255, 7]];
        let page = KeyPage {
            keys: keys.clone(),
            next: None,
        };
        let plain: (Vec<Vec<u8>>, Option<ListCursor>) = (keys.clone(), None);
        let encoded = postcard::to_stdvec(&page).expect("encode");
        assert_eq!(encoded, postcard::to_stdvec(&plain).expect("encode"));
        assert_eq!(
            postcard::from_bytes::<KeyPage>(&encoded).expect("decode"),
            page
        );
        let put = Request::Put {
            bucket: "b".into(),
            key: b"k".to_vec(),
            value: Some(vec![1, 2, 3]),
            context: None,
            options: RequestOptions::default(),
            forwarded: false,
            write_id: None,
        };
        let encoded = postcard::to_stdvec(&put).expect("encode");
        assert!(encoded.windows(4).any(|w| w == [3, 1, 2, 3]), "{encoded:?}");
        assert_eq!(
            postcard::from_bytes::<Request>(&encoded).expect("decode"),
            put
        );
    }

    #[test]
    fn bucket_names_and_storage_keys() {
        let cases = [
            ("default", true),
            ("carts_2026-eu", true),
            ("", false),
            ("Carts", false),
            ("a/b", false),
        ];
        for (name, ok) in cases {
            assert_eq!(valid_bucket_name(name), ok, "{name}");
        }
        assert!(!valid_bucket_name(&"x".repeat(65)));
        assert_ne!(storage_key("ab", b"c"), storage_key("a", b"bc"));
        assert_eq!(storage_key("a", b"k"), b"\x01ak".to_vec());
    }
}
