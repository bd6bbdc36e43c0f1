//! Listing the keys of a bucket: a full scan, one page per request.
//!
//! A key lives only on the replicas of its partition, and a sloppy quorum may have written it
//! to some of them only, so a page is built partition by partition from the union of what every
//! reachable replica of the partition holds (the coordinator's own store included). Each replica
//! answers at most `limit` keys after the cursor; when one of them had more, the keys merged are
//! only those up to the smallest last key of such a truncated answer, so no key between two pages
//! is skipped. A key is listed when some replica holds a live version of it: a delete that has
//! not reached every replica yet may still list its key.
//!
//! A page ends when it holds `limit` keys, when the last partition is done, or when half the
//! request's timeout has passed (the page may then hold fewer keys than asked for, even none,
//! with a cursor to continue from).
//!
//! This module must not know how scans reach the store or the network.

use std::collections::BTreeSet;

use dynamo_ring::NodeId;

use super::{
    CallError, ListingId, NodeCore, PEER_TIMEOUT_MS, RequestId, StoreError, StoreOp, StoreResult,
    Time,
};
use dynamo_protocol::{
    ErrorKind, KeyPage, ListCursor, MAX_LIST_KEYS, Request, Response, valid_bucket_name,
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
    /// Serving a peer's key scan.
    ServeScanKeys(RequestId),
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
    /// Keys of the page so far.
    keys: Vec<Vec<u8>>,
    /// Replica answers still awaited for `partition`.
    waiting: usize,
    /// Keys the replicas answered for `partition`.
    found: BTreeSet<Vec<u8>>,
    /// The smallest last key of an answer that was cut short.
    bound: Option<Vec<u8>>,
    /// Replicas that answered, and the errors of those that did not.
    answered: usize,
    errors: Vec<String>,
    /// Past this time (node milliseconds) the page is answered at the next partition boundary.
    soft_deadline: Time,
}

impl NodeCore {
    /// Starts a [`Request::ListKeys`].
    pub(super) fn client_list_keys(
        &mut self,
        now: Time,
        id: RequestId,
        bucket: &str,
        cursor: Option<ListCursor>,
        limit: u32,
    ) {
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
            keys: Vec::new(),
            waiting: 0,
            found: BTreeSet::new(),
            bound: None,
            answered: 0,
            errors: Vec::new(),
            soft_deadline: now + self.config.request_timeout_ms / 2,
        };
        let listing_id = ListingId(self.next_id().0);
        self.listings.insert(listing_id, listing);
        self.scan_listing_partition(now, listing_id);
    }

    /// Serves a peer's [`Request::ScanKeys`] from the local store.
    pub(super) fn serve_scan_keys(
        &mut self,
        id: RequestId,
        partition: u32,
        bucket: &str,
        after: Option<Vec<u8>>,
        limit: u32,
    ) {
        if !valid_bucket_name(bucket) || limit == 0 || limit > MAX_LIST_KEYS {
            let message = "a key scan needs a valid bucket and 1 to 1000 keys";
            return self.respond(id, Response::error(ErrorKind::BadRequest, message));
        }
        let op = StoreOp::ScanKeys {
            partition,
            bucket: bucket.to_owned(),
            after,
            limit: limit as usize,
        };
        self.store(op, AfterStore::ServeScanKeys(id));
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
        let remaining = (listing.limit - listing.keys.len()) as u32;
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
                    limit: remaining as usize,
                };
                self.store(op, AfterStore::Scanned(listing_id));
            } else {
                let request = Request::ScanKeys {
                    partition,
                    bucket: bucket.clone(),
                    after: after.clone(),
                    limit: remaining,
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
        answer: Result<KeyPage, String>,
    ) {
        let Some(listing) = self.listings.get_mut(&listing_id) else {
            return;
        };
        listing.waiting = listing.waiting.saturating_sub(1);
        match answer {
            Ok(page) => {
                listing.answered += 1;
                if page.next.is_some()
                    && let Some(last) = page.keys.last()
                    && listing.bound.as_ref().is_none_or(|bound| last < bound)
                {
                    listing.bound = Some(last.clone());
                }
                listing.found.extend(page.keys);
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
        let found = std::mem::take(&mut listing.found);
        let bound = listing.bound.take();
        for key in found {
            if bound.as_ref().is_some_and(|bound| key > *bound) {
                break;
            }
            listing.keys.push(key);
            if listing.keys.len() == listing.limit {
                break;
            }
        }
        let partitions = self
            .ring
            .as_ref()
            .map_or(0, dynamo_ring::Ring::partition_count);
        let full = listing.keys.len() == listing.limit;
        let next = if full || bound.is_some() {
            // More may follow in this partition.
            let after = listing.keys.last().cloned().or(bound.clone());
            ListCursor {
                partition: listing.partition,
                after: after.or_else(|| listing.after.clone()),
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
            Ok(next) => Response::Keys(KeyPage {
                keys: listing.keys,
                next,
            }),
            Err(message) => Response::error(ErrorKind::Unavailable, message),
        };
        self.respond(listing.request, response);
    }
}

/// A peer's answer to a scan.
fn scan_reply(result: Result<Response, CallError>) -> Result<KeyPage, String> {
    match result {
        Ok(Response::Keys(page)) => Ok(page),
        Ok(Response::Error(error)) => Err(error.message),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(error) => Err(error.message),
    }
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
        self.listing_scanned(now, listing, scan_reply(result));
    }

    /// A scan of this node's keys finished.
    pub(super) fn listing_store_done(
        &mut self,
        now: Time,
        after: AfterStore,
        result: Result<StoreResult, StoreError>,
    ) {
        let page = match result {
            Ok(StoreResult::Keys(page)) => Ok(page),
            Ok(other) => Err(self.wrong_kind("a key scan", &other)),
            Err(error) => Err(error.to_string()),
        };
        match after {
            AfterStore::Scanned(listing) => self.listing_scanned(now, listing, page),
            AfterStore::ServeScanKeys(request) => {
                let response = match page {
                    Ok(page) => Response::Keys(page),
                    Err(error) => super::internal(error),
                };
                self.respond(request, response);
            }
        }
    }
}
