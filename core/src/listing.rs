//! Listing the keys of a bucket, or exporting them with their versions (a backup): a full
//! scan, one page per request.
//!
//! A key lives only on the replicas of its partition, and a sloppy quorum may have written it
//! to some of them only, so a page is built partition by partition from the union of what every
//! reachable replica of the partition holds (the coordinator's own store included). Each replica
//! answers at most `limit` keys after the cursor; when one of them had more, the keys merged are
//! only those up to the smallest last key of such a truncated answer, so no key between two pages
//! is skipped. A key is listed when some replica holds a live version of it: a delete that has
//! not reached every replica yet may still list its key. An export lists every key, deleted
//! ones too, with the join of the versions the replicas answered (so each key's set is as
//! complete as a read of all of them); every replica that is up must answer, or the page
//! fails (the backup asks again), and a replica also cuts its answer short before the entry
//! that would take it past [`MAX_EXPORT_PAGE_BYTES`].
//!
//! A page ends when it holds `limit` keys (or, exported, when the next entry would take it
//! past [`MAX_EXPORT_PAGE_BYTES`]; it always takes one), when the last partition is done, or
//! when half the request's timeout has passed (the page may then hold fewer keys than asked
//! for, even none, with a cursor to continue from).
//!
//! This module must not know how scans reach the store or the network.

use std::collections::BTreeMap;

use dynamo_quorum::Object;
use dynamo_ring::NodeId;

use super::store_ops::entry_bytes;
use super::{
    CallError, ListingId, NodeCore, PEER_TIMEOUT_MS, RequestId, StoreError, StoreOp, StoreResult,
    Time,
};
use dynamo_protocol::{
    ErrorKind, KeyPage, ListCursor, MAX_EXPORT_PAGE_BYTES, MAX_LIST_KEYS, Request, Response,
    VersionPage, valid_bucket_name,
};

/// What a listing's call answers.
#[derive(Debug, Clone, Copy)]
pub(super) enum AfterCall {
    /// A peer replica's keys for listing `0`.
    Scanned(ListingId),
}

/// What a listing's store operation answers.
#[derive(Debug, Clone, Copy)]
pub(super) enum AfterStore {
    /// This replica's keys for listing `0`.
    Scanned(ListingId),
    /// Serving a peer's key scan (with versions when `versions`).
    ServeScan { request: RequestId, versions: bool },
}

/// A listing's request, as received.
pub(super) struct ListRequest {
    pub(super) bucket: String,
    pub(super) cursor: Option<ListCursor>,
    pub(super) limit: u32,
    /// An export: every key with its versions ([`Request::ExportVersions`]).
    pub(super) versions: bool,
}

/// A key listing in progress.
#[derive(Debug)]
pub(super) struct Listing {
    request: RequestId,
    bucket: String,
    n: usize,
    partition: u32,
    after: Option<Vec<u8>>,
    limit: usize,
    /// An export: keys come with their versions, tombstones included.
    versions: bool,
    /// Keys of the page so far, with their versions in an export (empty sets otherwise).
    entries: Vec<(Vec<u8>, Object)>,
    /// Encoded size of `entries` in an export.
    bytes: usize,
    /// Replica answers still awaited for `partition`.
    waiting: usize,
    /// Keys the replicas answered for `partition`, with the join of their versions.
    found: BTreeMap<Vec<u8>, Object>,
    /// The smallest last key of an answer that was cut short.
    bound: Option<Vec<u8>>,
    /// Replicas that answered, and the errors of those that did not.
    answered: usize,
    errors: Vec<String>,
    /// Past this time (node milliseconds) the page is answered at the next partition boundary.
    soft_deadline: Time,
}

impl Listing {
    /// Whether the page has room for an entry of `size` encoded bytes: fewer than `limit`
    /// keys and, in an export, within [`MAX_EXPORT_PAGE_BYTES`] (an empty page takes any
    /// entry, so a page always moves on).
    fn has_room(&self, size: usize) -> bool {
        self.entries.len() < self.limit
            && (!self.versions
                || self.entries.is_empty()
                || self.bytes + size <= MAX_EXPORT_PAGE_BYTES)
    }
}

/// A replica's answer to a scan: keys alone, or with their versions when `versions` asked
/// for them (then a page of keys alone is an error: it would export empty sets).
fn scanned_entries(page: Response, versions: bool) -> Result<VersionPage, String> {
    match page {
        Response::Keys(KeyPage { keys, next }) if !versions => Ok(VersionPage {
            entries: keys.into_iter().map(|key| (key, Object::empty())).collect(),
            next,
        }),
        Response::Versions(page) if versions => Ok(page),
        Response::Error(error) => Err(error.message),
        _ => Err("an answer of another kind than the scan asked for".into()),
    }
}

impl NodeCore {
    /// Starts a [`Request::ListKeys`] or, with `versions`, a [`Request::ExportVersions`].
    pub(super) fn client_list_keys(&mut self, now: Time, id: RequestId, request: ListRequest) {
        let ListRequest {
            bucket,
            cursor,
            limit,
            versions,
        } = request;
        let bucket = bucket.as_str();
        let bad = |message: String| Response::error(ErrorKind::BadRequest, message);
        if !valid_bucket_name(bucket) {
            return self.respond(id, bad(format!("{bucket:?} is not a valid bucket name")));
        }
        let Some(props) = self.buckets.get(bucket).map(|entry| entry.props.clone()) else {
            return self.respond(id, bad(format!("there is no bucket {bucket:?}")));
        };
        if limit == 0 || limit > MAX_LIST_KEYS {
            return self.respond(
                id,
                bad(format!(
                    "a page holds 1 to {MAX_LIST_KEYS} keys, not {limit}"
                )),
            );
        }
        let Some(partitions) = self.ring.as_ref().map(dynamo_ring::Ring::partition_count) else {
            let message = format!("{} has no ring yet", self.me);
            return self.respond(id, Response::error(ErrorKind::NotReady, message));
        };
        let cursor = cursor.unwrap_or(ListCursor {
            partition: 0,
            after: None,
        });
        if cursor.partition >= partitions {
            return self.respond(
                id,
                bad(format!(
                    "the cursor names partition {}, and the ring has {partitions}",
                    cursor.partition
                )),
            );
        }
        let listing = Listing {
            request: id,
            bucket: bucket.to_owned(),
            n: props.n,
            partition: cursor.partition,
            after: cursor.after,
            limit: limit as usize,
            versions,
            entries: Vec::new(),
            bytes: 0,
            waiting: 0,
            found: BTreeMap::new(),
            bound: None,
            answered: 0,
            errors: Vec::new(),
            soft_deadline: now + self.config.request_timeout_ms / 2,
        };
        let listing_id = ListingId(self.next_id().0);
        self.listings.insert(listing_id, listing);
        self.scan_listing_partition(now, listing_id);
    }

    /// Serves a peer's [`Request::ScanKeys`] (or, with `versions`, [`Request::ScanVersions`])
    /// from the local store.
    pub(super) fn serve_scan_keys(
        &mut self,
        id: RequestId,
        partition: u32,
        bucket: &str,
        after: Option<Vec<u8>>,
        limit: u32,
        versions: bool,
    ) {
        if !valid_bucket_name(bucket) || limit == 0 || limit > MAX_LIST_KEYS {
            let message = "a key scan needs a valid bucket and 1 to 1000 keys";
            return self.respond(id, Response::error(ErrorKind::BadRequest, message));
        }
        let op = StoreOp::ScanKeys {
            partition,
            bucket: bucket.to_owned(),
            after,
            versions,
            limit: limit as usize,
        };
        let then = AfterStore::ServeScan {
            request: id,
            versions,
        };
        self.store(op, then);
    }

    /// Asks every reachable replica of the listing's partition for its keys.
    fn scan_listing_partition(&mut self, now: Time, listing_id: ListingId) {
        let Some(listing) = self.listings.get_mut(&listing_id) else {
            return;
        };
        let Some(ring) = self.ring.as_ref() else {
            return self.finish_listing(listing_id, Err("the node lost its ring".into()));
        };
        let replicas: Vec<NodeId> = ring
            .replicas_of_partition(listing.partition, listing.n)
            .into_iter()
            .cloned()
            .collect();
        let partition = listing.partition;
        let bucket = listing.bucket.clone();
        let after = listing.after.clone();
        let remaining = (listing.limit - listing.entries.len()) as u32;
        let versions = listing.versions;
        listing.found.clear();
        listing.bound = None;
        listing.answered = 0;
        listing.errors.clear();
        let up: Vec<NodeId> = replicas.into_iter().filter(|r| self.is_up(r)).collect();
        if up.is_empty() {
            let message = format!("no replica of partition {partition} is up");
            return self.finish_listing(listing_id, Err(message));
        }
        if let Some(listing) = self.listings.get_mut(&listing_id) {
            listing.waiting = up.len();
        }
        for replica in up {
            if replica == self.me {
                let op = StoreOp::ScanKeys {
                    partition,
                    bucket: bucket.clone(),
                    after: after.clone(),
                    versions,
                    limit: remaining as usize,
                };
                self.store(op, AfterStore::Scanned(listing_id));
            } else {
                let (bucket, after) = (bucket.clone(), after.clone());
                let request = if versions {
                    Request::ScanVersions {
                        partition,
                        bucket,
                        after,
                        limit: remaining,
                    }
                } else {
                    Request::ScanKeys {
                        partition,
                        bucket,
                        after,
                        limit: remaining,
                    }
                };
                let then = AfterCall::Scanned(listing_id);
                self.call(now, &replica, request, PEER_TIMEOUT_MS, then);
            }
        }
    }

    /// One replica's answer to a listing's scan, from the local store or a peer.
    pub(super) fn listing_scanned(
        &mut self,
        now: Time,
        listing_id: ListingId,
        answer: Result<VersionPage, String>,
    ) {
        let Some(listing) = self.listings.get_mut(&listing_id) else {
            return;
        };
        listing.waiting = listing.waiting.saturating_sub(1);
        match answer {
            Ok(page) => {
                listing.answered += 1;
                if page.next.is_some()
                    && let Some((last, _)) = page.entries.last()
                    && listing.bound.as_ref().is_none_or(|bound| last < bound)
                {
                    listing.bound = Some(last.clone());
                }
                for (key, object) in page.entries {
                    match listing.found.entry(key) {
                        std::collections::btree_map::Entry::Vacant(entry) => {
                            entry.insert(object);
                        }
                        std::collections::btree_map::Entry::Occupied(mut entry) => {
                            let joined = entry.get().sync(&object);
                            entry.insert(joined);
                        }
                    }
                }
            }
            Err(error) => listing.errors.push(error),
        }
        if listing.waiting > 0 {
            return;
        }
        if listing.answered == 0 {
            let message = format!(
                "no replica of partition {} answered: {}",
                listing.partition,
                listing.errors.join("; ")
            );
            return self.finish_listing(listing_id, Err(message));
        }
        // An export holds every version the replicas that are up hold: one that did not
        // answer fails the page, which the backup asks for again.
        if listing.versions && !listing.errors.is_empty() {
            let message = format!(
                "a replica of partition {} did not answer: {}",
                listing.partition,
                listing.errors.join("; ")
            );
            return self.finish_listing(listing_id, Err(message));
        }
        let found = std::mem::take(&mut listing.found);
        let bound = listing.bound.take();
        let mut added = false;
        let mut full = false;
        for (key, object) in found {
            if bound.as_ref().is_some_and(|bound| key > *bound) {
                break;
            }
            let size = if listing.versions {
                entry_bytes(&key, &object)
            } else {
                0
            };
            if !listing.has_room(size) {
                full = true;
                break;
            }
            listing.bytes += size;
            listing.entries.push((key, object));
            added = true;
        }
        let partitions = self
            .ring
            .as_ref()
            .map_or(0, dynamo_ring::Ring::partition_count);
        let full = full || listing.entries.len() == listing.limit;
        let next = if full || bound.is_some() {
            // More may follow in this partition, after the last key taken. A cut-short answer
            // holds at least its bound, which sorts first among the keys left, so some key
            // was taken; were none, the partition is scanned again from where it started.
            let after = if added {
                listing.entries.last().map(|(key, _)| key.clone())
            } else {
                listing.after.clone()
            };
            ListCursor {
                partition: listing.partition,
                after,
            }
        } else if listing.partition + 1 < partitions {
            ListCursor {
                partition: listing.partition + 1,
                after: None,
            }
        } else {
            return self.finish_listing(listing_id, Ok(None));
        };
        if full || now >= listing.soft_deadline {
            return self.finish_listing(listing_id, Ok(Some(next)));
        }
        listing.partition = next.partition;
        listing.after = next.after;
        self.scan_listing_partition(now, listing_id);
    }

    /// Answers a listing with its page (and where the next starts), or an error.
    fn finish_listing(&mut self, listing_id: ListingId, next: Result<Option<ListCursor>, String>) {
        let Some(listing) = self.listings.remove(&listing_id) else {
            return;
        };
        let response = match next {
            Ok(next) if listing.versions => Response::Versions(VersionPage {
                entries: listing.entries,
                next,
            }),
            Ok(next) => Response::Keys(KeyPage {
                keys: listing.entries.into_iter().map(|(key, _)| key).collect(),
                next,
            }),
            Err(message) => Response::error(ErrorKind::Unavailable, message),
        };
        self.respond(listing.request, response);
    }
}

/// A peer's answer to a scan.
fn scan_reply(result: Result<Response, CallError>, versions: bool) -> Result<VersionPage, String> {
    result
        .map_err(|error| error.message)
        .and_then(|page| scanned_entries(page, versions))
}

impl NodeCore {
    /// A replica answered a listing's scan (or did not).
    pub(super) fn listing_call_answered(
        &mut self,
        now: Time,
        after: AfterCall,
        result: Result<Response, CallError>,
    ) {
        let AfterCall::Scanned(listing) = after;
        let versions = self.listings.get(&listing).is_some_and(|l| l.versions);
        self.listing_scanned(now, listing, scan_reply(result, versions));
    }

    /// A scan of this node's keys finished.
    pub(super) fn listing_store_done(
        &mut self,
        now: Time,
        after: AfterStore,
        result: Result<StoreResult, StoreError>,
    ) {
        let page = match result {
            Ok(StoreResult::Versions(page)) => Ok(page),
            Ok(other) => Err(self.wrong_kind("a key scan", &other)),
            Err(error) => Err(error.to_string()),
        };
        match after {
            AfterStore::Scanned(listing) => self.listing_scanned(now, listing, page),
            AfterStore::ServeScan { request, versions } => {
                let response = match page {
                    Ok(page) if versions => Response::Versions(page),
                    Ok(VersionPage { entries, next }) => Response::Keys(KeyPage {
                        keys: entries.into_iter().map(|(key, _)| key).collect(),
                        next,
                    }),
                    Err(error) => super::internal(error),
                };
                self.respond(request, response);
            }
        }
    }
}
