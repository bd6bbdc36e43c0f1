//! A sans-IO diff session between two replicas of one key range (Dynamo paper section 4.7).
//!
//! The *initiator* sends its root hash; if the roots differ the *responder* answers with the
//! hashes of the root's children, the initiator asks only for the children of the nodes that
//! differ, level by level, down to the leaf segments. For each differing segment the responder
//! sends its `(key, hash)` list if the segment is small, or the hashes of `fanout` sub-buckets
//! computed on the fly from the segment's keys; in a last round trip the initiator asks for
//! the entries of the differing sub-buckets only. The initiator ends with the exact set of keys
//! that differ or are missing on either side, in at most `depth + 2` round trips (one when the
//! trees are equal).
//!
//! Messages are plain values ([`DiffRequest`], [`DiffReply`]) with a postcard encoding; both
//! sides count round trips and encoded bytes. This module does no I/O and must not know the
//! transport (the `node` carries messages over QUIC), storage (keys come from a
//! [`SegmentSource`]) or the version-state types.

use serde::{Deserialize, Serialize};

use crate::error::MerkleError;
use crate::hash::{KeyHash, NodeHash, placement_hash};
use crate::shape::TreeShape;
use crate::source::{KeyEntry, SegmentSource};
use crate::tree::{MerkleTree, differing};

/// One sub-bucket of one leaf segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BucketId {
    /// The leaf segment.
    pub segment: u32,
    /// The sub-bucket inside the segment, `0..fanout`.
    pub sub: u8,
}

/// A message from the initiator to the responder. Every request names the tree shape so a
/// responder with a different shape refuses instead of answering nonsense.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiffRequest {
    /// "Here is my root": first message of every session.
    Root {
        /// The initiator's tree shape.
        shape: TreeShape,
        /// The initiator's root hash.
        root: NodeHash,
    },
    /// "Send the children of these nodes of `level`" (nodes whose hashes differed).
    Children {
        /// The initiator's tree shape.
        shape: TreeShape,
        /// The level of `nodes`; their children are on `level + 1`.
        level: u8,
        /// Node indices on `level`, ascending.
        nodes: Vec<u32>,
    },
    /// "Describe these leaf segments" (segments whose hashes differed).
    Segments {
        /// The initiator's tree shape.
        shape: TreeShape,
        /// Leaf segment indices, ascending.
        segments: Vec<u32>,
    },
    /// "Send the entries of these sub-buckets" (sub-buckets whose hashes differed).
    Buckets {
        /// The initiator's tree shape.
        shape: TreeShape,
        /// The sub-buckets, ascending.
        buckets: Vec<BucketId>,
    },
}

/// How the responder describes one requested leaf segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SegmentReply {
    /// The segment's full `(key, hash)` list (sent when it holds at most `fanout` keys).
    Entries(Vec<KeyEntry>),
    /// The hashes of the segment's `fanout` sub-buckets (sent for larger segments).
    SubHashes(Vec<NodeHash>),
}

/// A message from the responder to the initiator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiffReply {
    /// The roots are equal: nothing to repair.
    Equal,
    /// The responder's tree has another shape; the session cannot proceed.
    ShapeMismatch {
        /// The responder's shape.
        shape: TreeShape,
    },
    /// Child hashes: `fanout` per requested node, in request order.
    Hashes(Vec<NodeHash>),
    /// One description per requested segment, in request order.
    Segments(Vec<SegmentReply>),
    /// One entry list per requested sub-bucket, in request order.
    Buckets(Vec<Vec<KeyEntry>>),
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing into a Vec cannot fail for these types (no maps of unknown length).
    postcard::to_stdvec(value).unwrap_or_default()
}

fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(0)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &'static str) -> Result<T, MerkleError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|source| MerkleError::Decode { what, source })?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(MerkleError::TrailingBytes {
            what,
            extra: rest.len(),
        })
    }
}

impl DiffRequest {
    /// The postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a request; truncated or malformed bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, MerkleError> {
        decode(bytes, "diff request")
    }

    /// Size of the postcard encoding in bytes.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self)
    }

    /// The shape the request is for.
    pub fn shape(&self) -> TreeShape {
        match self {
            DiffRequest::Root { shape, .. }
            | DiffRequest::Children { shape, .. }
            | DiffRequest::Segments { shape, .. }
            | DiffRequest::Buckets { shape, .. } => *shape,
        }
    }
}

impl DiffReply {
    /// The postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a reply; truncated or malformed bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, MerkleError> {
        decode(bytes, "diff reply")
    }

    /// Size of the postcard encoding in bytes.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self)
    }

    fn name(&self) -> &'static str {
        match self {
            DiffReply::Equal => "equal reply",
            DiffReply::ShapeMismatch { .. } => "shape mismatch reply",
            DiffReply::Hashes(_) => "hashes reply",
            DiffReply::Segments(_) => "segments reply",
            DiffReply::Buckets(_) => "buckets reply",
        }
    }
}

/// Round trips and bytes (postcard-encoded message sizes) of one side of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Request/reply pairs completed.
    pub round_trips: u32,
    /// Bytes this side sent.
    pub bytes_sent: u64,
    /// Bytes this side received.
    pub bytes_received: u64,
}

impl SessionStats {
    /// Bytes exchanged in both directions.
    pub fn total_bytes(&self) -> u64 {
        self.bytes_sent + self.bytes_received
    }
}

/// One key the two replicas disagree on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyDifference {
    /// The key.
    pub key: Vec<u8>,
    /// Its hash on the initiator (`None`: the initiator lacks the key).
    pub local: Option<KeyHash>,
    /// Its hash on the responder (`None`: the responder lacks the key).
    pub remote: Option<KeyHash>,
}

/// The result of a finished session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffOutcome {
    /// Every key that differs or is missing on one side, sorted by key.
    pub differences: Vec<KeyDifference>,
    /// The initiator's counters.
    pub stats: SessionStats,
}

/// What the initiator does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this request to the responder and feed its reply back.
    Send(DiffRequest),
    /// The session is over.
    Done(DiffOutcome),
}

#[derive(Debug)]
enum Phase {
    AwaitRoot,
    AwaitChildren {
        level: u8,
        nodes: Vec<u32>,
    },
    AwaitSegments {
        segments: Vec<u32>,
    },
    AwaitBuckets {
        buckets: Vec<BucketId>,
        local: Vec<Vec<KeyEntry>>,
    },
    Done,
}

/// The side that starts a diff and learns its result.
///
/// ```
/// use dynamo_merkle::{DiffInitiator, DiffResponder, KeyIndex, MerkleTree, Step, TreeShape, key_hash};
/// let shape = TreeShape::default();
/// let (mut a_index, mut b_index) = (KeyIndex::new(shape), KeyIndex::new(shape));
/// let (mut a, mut b) = (MerkleTree::new(shape), MerkleTree::new(shape));
/// for i in 0..100u32 {
///     let key = i.to_be_bytes();
///     let h = key_hash(&key, b"v1");
///     a.update(&key, a_index.set(&key, Some(h)), Some(h));
///     if i != 7 {
///         b.update(&key, b_index.set(&key, Some(h)), Some(h));
///     }
/// }
/// let mut responder = DiffResponder::new();
/// let (mut session, mut request) = DiffInitiator::start(&a);
/// let outcome = loop {
///     // In the node these bytes travel over the network.
///     let reply = responder.handle_bytes(&b, &b_index, &request.encode()).unwrap();
///     match session.on_reply_bytes(&a, &a_index, &reply).unwrap() {
///         Step::Send(next) => request = next,
///         Step::Done(outcome) => break outcome,
///     }
/// };
/// assert_eq!(outcome.differences.len(), 1);
/// assert_eq!(outcome.differences[0].key, 7u32.to_be_bytes().to_vec());
/// assert_eq!(outcome.differences[0].remote, None);
/// assert!(outcome.stats.round_trips <= u32::from(shape.depth()) + 2);
/// ```
#[derive(Debug)]
pub struct DiffInitiator {
    shape: TreeShape,
    phase: Phase,
    stats: SessionStats,
    found: Vec<KeyDifference>,
}

impl DiffInitiator {
    /// Starts a session on `tree`; returns the session and the first request to send.
    pub fn start(tree: &MerkleTree) -> (Self, DiffRequest) {
        let request = DiffRequest::Root {
            shape: tree.shape(),
            root: tree.root(),
        };
        let mut session = DiffInitiator {
            shape: tree.shape(),
            phase: Phase::AwaitRoot,
            stats: SessionStats::default(),
            found: Vec::new(),
        };
        session.stats.bytes_sent += request.encoded_len() as u64;
        (session, request)
    }

    /// The counters so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// True once the session has produced its outcome.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Feeds the encoded reply to the last request. `tree` and `source` are the initiator's
    /// own tree and keys (the same tree the session started on).
    pub fn on_reply_bytes(
        &mut self,
        tree: &MerkleTree,
        source: &dyn SegmentSource,
        bytes: &[u8],
    ) -> Result<Step, MerkleError> {
        let reply = DiffReply::decode(bytes)?;
        self.handle(tree, source, reply, bytes.len())
    }

    /// Feeds the (already decoded) reply to the last request; bytes are counted as the reply's
    /// postcard-encoded size.
    pub fn on_reply(
        &mut self,
        tree: &MerkleTree,
        source: &dyn SegmentSource,
        reply: DiffReply,
    ) -> Result<Step, MerkleError> {
        let len = reply.encoded_len();
        self.handle(tree, source, reply, len)
    }

    fn handle(
        &mut self,
        tree: &MerkleTree,
        source: &dyn SegmentSource,
        reply: DiffReply,
        reply_len: usize,
    ) -> Result<Step, MerkleError> {
        if matches!(self.phase, Phase::Done) {
            return Err(MerkleError::SessionFinished);
        }
        tree.check_shape(self.shape)?;
        self.stats.round_trips += 1;
        self.stats.bytes_received += reply_len as u64;
        if let DiffReply::ShapeMismatch { shape } = reply {
            self.phase = Phase::Done;
            return Err(MerkleError::ShapeMismatch {
                ours: self.shape,
                theirs: shape,
            });
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        let result = self.advance(phase, tree, source, reply);
        if result.is_err() {
            self.phase = Phase::Done;
        }
        result
    }

    fn advance(
        &mut self,
        phase: Phase,
        tree: &MerkleTree,
        source: &dyn SegmentSource,
        reply: DiffReply,
    ) -> Result<Step, MerkleError> {
        let fanout = self.shape.fanout();
        match (phase, reply) {
            (Phase::AwaitRoot, DiffReply::Equal) => Ok(self.finish()),
            (Phase::AwaitRoot, DiffReply::Hashes(theirs)) => {
                self.descend(tree, 0, &[0], &theirs, fanout)
            }
            (Phase::AwaitChildren { level, nodes }, DiffReply::Hashes(theirs)) => {
                self.descend(tree, level, &nodes, &theirs, fanout)
            }
            (Phase::AwaitSegments { segments }, DiffReply::Segments(replies)) => {
                check_len("segment replies", segments.len(), replies.len())?;
                let mut buckets = Vec::new();
                let mut local_buckets = Vec::new();
                for (&segment, reply) in segments.iter().zip(replies) {
                    let local = source.segment_entries(segment);
                    match reply {
                        SegmentReply::Entries(remote) => {
                            check_owner(self.shape, segment, None, &remote)?;
                            self.compare_entries(segment, local, remote)?;
                        }
                        SegmentReply::SubHashes(theirs) => {
                            check_len("sub-bucket hashes", fanout, theirs.len())?;
                            let mine = sub_bucket_hashes(self.shape, &local);
                            let mut split = split_by_sub_bucket(self.shape, local);
                            for sub in differing(&mine, &theirs, 0) {
                                buckets.push(BucketId {
                                    segment,
                                    sub: sub as u8,
                                });
                                local_buckets.push(std::mem::take(&mut split[sub as usize]));
                            }
                        }
                    }
                }
                if buckets.is_empty() {
                    return Ok(self.finish());
                }
                self.phase = Phase::AwaitBuckets {
                    buckets: buckets.clone(),
                    local: local_buckets,
                };
                Ok(self.send(DiffRequest::Buckets {
                    shape: self.shape,
                    buckets,
                }))
            }
            (Phase::AwaitBuckets { buckets, local }, DiffReply::Buckets(remote)) => {
                check_len("bucket replies", buckets.len(), remote.len())?;
                for ((bucket, local), remote) in buckets.iter().zip(local).zip(remote) {
                    check_owner(self.shape, bucket.segment, Some(bucket.sub), &remote)?;
                    self.compare_entries(bucket.segment, local, remote)?;
                }
                Ok(self.finish())
            }
            (phase, reply) => Err(MerkleError::UnexpectedMessage {
                expected: phase.expects(),
                got: reply.name(),
            }),
        }
    }

    /// `theirs` holds the children of `nodes` (on `level`); compare with ours and ask for the
    /// next level, or for the segments once the children are leaves.
    fn descend(
        &mut self,
        tree: &MerkleTree,
        level: u8,
        nodes: &[u32],
        theirs: &[NodeHash],
        fanout: usize,
    ) -> Result<Step, MerkleError> {
        check_len("child hashes", nodes.len() * fanout, theirs.len())?;
        let mut next = Vec::new();
        for (&node, theirs) in nodes.iter().zip(theirs.chunks_exact(fanout)) {
            let mine = tree.children(level, node).ok_or(MerkleError::OutOfRange {
                what: "node",
                index: u64::from(node),
                limit: self.shape.level_len(level) as u64,
            })?;
            next.extend(differing(mine, theirs, node * fanout as u32));
        }
        if next.is_empty() {
            return Ok(self.finish());
        }
        let child_level = level + 1;
        if child_level == self.shape.depth() {
            self.phase = Phase::AwaitSegments {
                segments: next.clone(),
            };
            Ok(self.send(DiffRequest::Segments {
                shape: self.shape,
                segments: next,
            }))
        } else {
            self.phase = Phase::AwaitChildren {
                level: child_level,
                nodes: next.clone(),
            };
            Ok(self.send(DiffRequest::Children {
                shape: self.shape,
                level: child_level,
                nodes: next,
            }))
        }
    }

    fn send(&mut self, request: DiffRequest) -> Step {
        self.stats.bytes_sent += request.encoded_len() as u64;
        Step::Send(request)
    }

    fn finish(&mut self) -> Step {
        self.phase = Phase::Done;
        let mut differences = std::mem::take(&mut self.found);
        differences.sort();
        Step::Done(DiffOutcome {
            differences,
            stats: self.stats,
        })
    }

    /// Adds the keys on which two complete lists of the same segment (or bucket) disagree.
    fn compare_entries(
        &mut self,
        segment: u32,
        mut local: Vec<KeyEntry>,
        mut remote: Vec<KeyEntry>,
    ) -> Result<(), MerkleError> {
        local.sort_unstable();
        remote.sort_unstable();
        if remote.windows(2).any(|w| w[0].key == w[1].key) {
            return Err(MerkleError::DuplicateKey { segment });
        }
        let mut local = local.into_iter().peekable();
        let mut remote = remote.into_iter().peekable();
        loop {
            let order = match (local.peek(), remote.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(l), Some(r)) => l.key.cmp(&r.key),
            };
            match order {
                std::cmp::Ordering::Less => {
                    if let Some(l) = local.next() {
                        self.found.push(KeyDifference {
                            key: l.key,
                            local: Some(l.hash),
                            remote: None,
                        });
                    }
                }
                std::cmp::Ordering::Greater => {
                    if let Some(r) = remote.next() {
                        self.found.push(KeyDifference {
                            key: r.key,
                            local: None,
                            remote: Some(r.hash),
                        });
                    }
                }
                std::cmp::Ordering::Equal => {
                    if let (Some(l), Some(r)) = (local.next(), remote.next())
                        && l.hash != r.hash
                    {
                        self.found.push(KeyDifference {
                            key: l.key,
                            local: Some(l.hash),
                            remote: Some(r.hash),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl Phase {
    fn expects(&self) -> &'static str {
        match self {
            Phase::AwaitRoot => "equal or hashes reply to the root",
            Phase::AwaitChildren { .. } => "hashes reply",
            Phase::AwaitSegments { .. } => "segments reply",
            Phase::AwaitBuckets { .. } => "buckets reply",
            Phase::Done => "nothing (session finished)",
        }
    }
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), MerkleError> {
    if expected == got {
        Ok(())
    } else {
        Err(MerkleError::WrongLength {
            what,
            expected,
            got,
        })
    }
}

/// Rejects peer entries that do not hash to the segment (and sub-bucket) they were listed in.
fn check_owner(
    shape: TreeShape,
    segment: u32,
    sub: Option<u8>,
    entries: &[KeyEntry],
) -> Result<(), MerkleError> {
    let foreign = entries.iter().any(|e| {
        let p = placement_hash(&e.key);
        shape.segment_of_placement(p) != segment
            || sub.is_some_and(|s| shape.sub_bucket_of_placement(p) != s)
    });
    if foreign {
        Err(MerkleError::ForeignKey { segment })
    } else {
        Ok(())
    }
}

/// The `fanout` sub-bucket hashes of one segment's entries.
fn sub_bucket_hashes(shape: TreeShape, entries: &[KeyEntry]) -> Vec<NodeHash> {
    let mut hashes = vec![NodeHash::EMPTY; shape.fanout()];
    for e in entries {
        hashes[shape.sub_bucket_of_placement(placement_hash(&e.key)) as usize] ^= e.hash;
    }
    hashes
}

fn split_by_sub_bucket(shape: TreeShape, entries: Vec<KeyEntry>) -> Vec<Vec<KeyEntry>> {
    let mut split = vec![Vec::new(); shape.fanout()];
    for e in entries {
        split[shape.sub_bucket_of_placement(placement_hash(&e.key)) as usize].push(e);
    }
    split
}

/// The side that answers a diff session. Stateless apart from its counters: each request is
/// answered from the responder's current tree and keys.
#[derive(Debug, Default)]
pub struct DiffResponder {
    stats: SessionStats,
}

impl DiffResponder {
    /// A responder with zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters so far (bytes received are the requests' encoded sizes).
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Decodes a request, answers it and encodes the reply.
    pub fn handle_bytes(
        &mut self,
        tree: &MerkleTree,
        source: &dyn SegmentSource,
        bytes: &[u8],
    ) -> Result<Vec<u8>, MerkleError> {
        let request = DiffRequest::decode(bytes)?;
        let reply = Self::answer(tree, source, &request)?;
        let out = reply.encode();
        self.stats.round_trips += 1;
        self.stats.bytes_received += bytes.len() as u64;
        self.stats.bytes_sent += out.len() as u64;
        Ok(out)
    }

    /// Answers a decoded request. A request for another tree shape gets
    /// [`DiffReply::ShapeMismatch`]; a request naming nodes that do not exist is an error.
    pub fn handle(
        &mut self,
        tree: &MerkleTree,
        source: &dyn SegmentSource,
        request: &DiffRequest,
    ) -> Result<DiffReply, MerkleError> {
        let reply = Self::answer(tree, source, request)?;
        self.stats.round_trips += 1;
        self.stats.bytes_received += request.encoded_len() as u64;
        self.stats.bytes_sent += reply.encoded_len() as u64;
        Ok(reply)
    }

    fn answer(
        tree: &MerkleTree,
        source: &dyn SegmentSource,
        request: &DiffRequest,
    ) -> Result<DiffReply, MerkleError> {
        let shape = tree.shape();
        if request.shape() != shape {
            return Ok(DiffReply::ShapeMismatch { shape });
        }
        let fanout = shape.fanout();
        match request {
            DiffRequest::Root { root, .. } => Ok(if *root == tree.root() {
                DiffReply::Equal
            } else {
                DiffReply::Hashes(tree.children(0, 0).unwrap_or_default().to_vec())
            }),
            DiffRequest::Children { level, nodes, .. } => {
                if *level >= shape.depth() {
                    return Err(MerkleError::OutOfRange {
                        what: "inner level",
                        index: u64::from(*level),
                        limit: u64::from(shape.depth()),
                    });
                }
                let limit = shape.level_len(*level);
                check_count("nodes", nodes.len(), limit)?;
                let mut hashes = Vec::with_capacity(nodes.len() * fanout);
                for &node in nodes {
                    let children = tree.children(*level, node).ok_or(MerkleError::OutOfRange {
                        what: "node",
                        index: u64::from(node),
                        limit: limit as u64,
                    })?;
                    hashes.extend_from_slice(children);
                }
                Ok(DiffReply::Hashes(hashes))
            }
            DiffRequest::Segments { segments, .. } => {
                check_count("segments", segments.len(), shape.leaves())?;
                let mut replies = Vec::with_capacity(segments.len());
                for &segment in segments {
                    check_segment(shape, segment)?;
                    let entries = source.segment_entries(segment);
                    replies.push(if entries.len() <= fanout {
                        SegmentReply::Entries(entries)
                    } else {
                        SegmentReply::SubHashes(sub_bucket_hashes(shape, &entries))
                    });
                }
                Ok(DiffReply::Segments(replies))
            }
            DiffRequest::Buckets { buckets, .. } => {
                check_count("buckets", buckets.len(), shape.leaves() * fanout)?;
                let mut replies = Vec::with_capacity(buckets.len());
                let mut cached: Option<(u32, Vec<Vec<KeyEntry>>)> = None;
                for bucket in buckets {
                    check_segment(shape, bucket.segment)?;
                    if usize::from(bucket.sub) >= fanout {
                        return Err(MerkleError::OutOfRange {
                            what: "sub-bucket",
                            index: u64::from(bucket.sub),
                            limit: fanout as u64,
                        });
                    }
                    let split = match &mut cached {
                        Some((segment, split)) if *segment == bucket.segment => split,
                        _ => {
                            let split =
                                split_by_sub_bucket(shape, source.segment_entries(bucket.segment));
                            &mut cached.insert((bucket.segment, split)).1
                        }
                    };
                    replies.push(std::mem::take(&mut split[usize::from(bucket.sub)]));
                }
                Ok(DiffReply::Buckets(replies))
            }
        }
    }
}

fn check_count(what: &'static str, got: usize, limit: usize) -> Result<(), MerkleError> {
    if got > limit {
        Err(MerkleError::TooMany { what, got, limit })
    } else {
        Ok(())
    }
}

fn check_segment(shape: TreeShape, segment: u32) -> Result<(), MerkleError> {
    if (segment as usize) < shape.leaves() {
        Ok(())
    } else {
        Err(MerkleError::OutOfRange {
            what: "segment",
            index: u64::from(segment),
            limit: shape.leaves() as u64,
        })
    }
}

/// Runs a whole session between two in-memory replicas, passing encoded bytes both ways
/// (for tests, benchmarks and single-process tools). `a` is the initiator.
pub fn diff_in_memory(
    a: &MerkleTree,
    a_source: &dyn SegmentSource,
    b: &MerkleTree,
    b_source: &dyn SegmentSource,
) -> Result<DiffOutcome, MerkleError> {
    let mut responder = DiffResponder::new();
    let (mut session, mut request) = DiffInitiator::start(a);
    loop {
        let reply = responder.handle_bytes(b, b_source, &request.encode())?;
        match session.on_reply_bytes(a, a_source, &reply)? {
            Step::Send(next) => request = next,
            Step::Done(outcome) => return Ok(outcome),
        }
    }
}

/// The bytes the naive approach spends: one side sends every `(key, hash)` pair it holds,
/// postcard-encoded as one list.
pub fn naive_exchange_bytes<'a>(entries: impl IntoIterator<Item = (&'a [u8], KeyHash)>) -> u64 {
    let mut bytes = 0u64;
    let mut count = 0u64;
    for (key, hash) in entries {
        let entry_len = encoded_len(&(key, hash));
        bytes += entry_len as u64;
        count += 1;
    }
    bytes + encoded_len(&count) as u64
}
