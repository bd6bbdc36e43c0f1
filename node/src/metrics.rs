//! What a node counts about the requests it serves, for `/metrics` (Prometheus /
//! `OpenMetrics` text, through `prometheus-client`) and for the status page's recent latency percentiles.
//!
//! Request counters and latency histograms live here, in a registry of the node's own (several
//! nodes may run in one process, as the tests do, so there is no global recorder). What the core
//! knows (members, phi, hints, handoff, anti-entropy, its counters) is read from a
//! [`ClusterStatus`] when `/metrics` is scraped and written next to them by [`Metrics::render`].
//!
//! This module must not know how requests arrive or how the status is obtained.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;

use dynamo_protocol::{Access, ClusterStatus, Request, Response};

/// How far back the status page's latency percentiles look.
pub const RECENT_WINDOW: Duration = Duration::from_secs(60);
/// Latency samples kept per operation for those percentiles.
const RECENT_SAMPLES: usize = 4096;

/// The operation label of a request.
pub(crate) fn operation_of(request: &Request) -> &'static str {
    if request.access() == Access::Peer {
        return "peer";
    }
    match request {
        Request::Get { .. } => "get",
        // One replica's copy, for a client that reads from R replicas itself.
        Request::ReadCopy { .. } => "get_copy",
        Request::Put { value: Some(_), .. } => "put",
        Request::Put { value: None, .. } => "delete",
        Request::ListKeys { .. } => "list_keys",
        Request::ExportVersions { .. } => "export",
        Request::MergeVersions { .. } => "merge",
        Request::CreateBucket(_) | Request::ListBuckets => "buckets",
        Request::Status | Request::Ring => "cluster",
        Request::Ping(_) => "ping",
        _ => "admin",
    }
}

/// The outcome label of a response.
fn outcome_of(response: &Response) -> &'static str {
    match response {
        Response::Error(error) => error.kind.label(),
        Response::NotFound { .. } => "not_found",
        _ => "ok",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

/// Percentiles of one operation over [`RECENT_WINDOW`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecentLatency {
    /// Requests finished in the window.
    pub count: usize,
    /// Those that failed (not counting "not found").
    pub errors: usize,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
}

/// What the runtime adds to a scrape besides the core's status.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeGauges {
    /// Bytes the store takes on disk.
    pub store_bytes: u64,
    /// Bytes free on the store's disk.
    pub disk_free_bytes: u64,
    /// QUIC connections open.
    pub quic_connections: usize,
    /// HTTP connections open.
    pub http_connections: usize,
    /// Client requests in flight (each holds a QUIC stream or an HTTP request).
    pub client_requests_in_flight: usize,
    /// Node requests in flight.
    pub peer_requests_in_flight: usize,
}

/// One answered request: when, its latency in milliseconds, and whether it failed.
type Sample = (Instant, f64, bool);

/// A count as a gauge value (counts never come near `i64::MAX`).
fn as_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A node's request metrics (see the [module documentation](self)).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    siblings: Histogram,
    recent: Mutex<BTreeMap<&'static str, VecDeque<Sample>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dynamo");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests served, by operation and outcome (ok, not_found, or the error kind)",
            requests.clone(),
        );
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 100 µs to about 13 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to its answer, by operation and outcome",
            Unit::Seconds,
            latency.clone(),
        );
        let siblings = Histogram::new([1.0, 2.0, 3.0, 4.0, 8.0, 16.0, 64.0]);
        registry.register(
            "read_siblings",
            "Siblings a successful read returned",
            siblings.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            siblings,
            recent: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one answered request.
    pub(crate) fn record(
        &self,
        operation: &'static str,
        response: &Response,
        elapsed: Duration,
        read: bool,
    ) {
        let outcome = outcome_of(response);
        self.requests
            .get_or_create(&RequestLabels { operation, outcome })
            .inc();
        self.latency
            .get_or_create(&RequestLabels { operation, outcome })
            .observe(elapsed.as_secs_f64());
        if read && let Response::Get(reply) = response {
            self.siblings.observe(reply.values.len() as f64);
        }
        if operation == "peer" {
            return;
        }
        let failed = matches!(response, Response::Error(_));
        let Ok(mut recent) = self.recent.lock() else {
            return;
        };
        let samples = recent.entry(operation).or_default();
        if samples.len() == RECENT_SAMPLES {
            samples.pop_front();
        }
        samples.push_back((Instant::now(), elapsed.as_secs_f64() * 1000.0, failed));
    }

    /// Latency percentiles of each client operation over the last [`RECENT_WINDOW`].
    pub fn recent(&self) -> BTreeMap<&'static str, RecentLatency> {
        let Ok(recent) = self.recent.lock() else {
            return BTreeMap::new();
        };
        let since = Instant::now().checked_sub(RECENT_WINDOW);
        recent
            .iter()
            .map(|(operation, samples)| {
                let mut latencies = Vec::with_capacity(samples.len());
                let mut errors = 0;
                for &(at, ms, failed) in samples {
                    if since.is_none_or(|since| at >= since) {
                        latencies.push(ms);
                        errors += usize::from(failed);
                    }
                }
                latencies.sort_by(f64::total_cmp);
                let at = |q: f64| {
                    if latencies.is_empty() {
                        return 0.0;
                    }
                    let rank = ((latencies.len() as f64) * q).ceil() as usize;
                    latencies[rank.clamp(1, latencies.len()) - 1]
                };
                let summary = RecentLatency {
                    count: latencies.len(),
                    errors,
                    p50_ms: at(0.50),
                    p90_ms: at(0.90),
                    p99_ms: at(0.99),
                    p999_ms: at(0.999),
                };
                (*operation, summary)
            })
            .collect()
    }

    /// The `OpenMetrics` text of these metrics, then of `status` and `runtime`.
    pub fn render(&self, status: &ClusterStatus, runtime: RuntimeGauges) -> String {
        let mut scrape = Registry::with_prefix("dynamo");
        let counter = |value: u64| {
            let counter = Counter::<u64, AtomicU64>::default();
            counter.inc_by(value);
            counter
        };
        let gauge = |value: u64| {
            let gauge = Gauge::<i64, AtomicI64>::default();
            gauge.set(as_gauge(value));
            gauge
        };
        let c = *status.counters;
        scrape.register(
            "read_repairs",
            "Stale replicas a read repaired",
            counter(c.read_repairs),
        );
        scrape.register(
            "hints_stored",
            "Writes kept as hints for an unreachable primary",
            counter(c.hints_stored),
        );
        scrape.register(
            "hints_delivered",
            "Hints delivered to their owner",
            counter(c.hints_delivered),
        );
        scrape.register(
            "quorum_failures",
            "Client requests coordinated here that failed for want of replica replies",
            counter(c.quorum_failures),
        );
        scrape.register(
            "stand_ins",
            "Replica requests sent to a spare node because a replica failed or stayed silent",
            counter(c.stand_ins),
        );
        let hints = Family::<MemberLabels, Gauge>::default();
        let phi = Family::<MemberLabels, Gauge<f64, AtomicU64>>::default();
        let up = Family::<MemberLabels, Gauge>::default();
        let (mut members_up, mut members_down) = (0, 0);
        for member in &status.members {
            let labels = MemberLabels {
                member: member.id.clone(),
            };
            hints
                .get_or_create(&labels)
                .set(as_gauge(member.pending_hints as u64));
            up.get_or_create(&labels).set(i64::from(member.up));
            if let Some(value) = member.phi {
                phi.get_or_create(&labels).set(value);
            }
            if member.up {
                members_up += 1;
            } else {
                members_down += 1;
            }
        }
        scrape.register("hints_pending", "Hints this node holds, by owner", hints);
        scrape.register(
            "member_up",
            "1 when the failure detector considers the member up",
            up,
        );
        scrape.register(
            "member_phi",
            "The failure detector's suspicion of each member (phi accrual)",
            phi,
        );
        scrape.register("members_up", "Members considered up", gauge(members_up));
        scrape.register(
            "members_down",
            "Members considered down",
            gauge(members_down),
        );
        scrape.register(
            "ring_version",
            "Version of the ring this node uses",
            gauge(status.ring_version),
        );
        scrape.register(
            "handoff_queued",
            "Partition transfers waiting to start",
            gauge(status.handoff.queued as u64),
        );
        scrape.register(
            "handoff_running",
            "Partition transfers running",
            gauge(status.handoff.running.len() as u64),
        );
        scrape.register(
            "handoff_keys_sent",
            "Keys the running transfers had acknowledged",
            gauge(
                status
                    .handoff
                    .running
                    .iter()
                    .map(|(_, _, keys)| *keys)
                    .sum(),
            ),
        );
        scrape.register(
            "handoff_failed",
            "Transfers given up since the queue last emptied",
            gauge(status.handoff.failed as u64),
        );
        let ae = &status.anti_entropy;
        scrape.register(
            "anti_entropy_repaired_keys",
            "Keys anti-entropy repaired",
            counter(ae.repaired_keys),
        );
        scrape.register_with_unit(
            "anti_entropy_moved",
            "Bytes of versions anti-entropy moved",
            Unit::Bytes,
            counter(ae.bytes_moved),
        );
        scrape.register(
            "anti_entropy_exchanges",
            "Anti-entropy exchanges running",
            gauge(ae.in_progress.len() as u64),
        );
        scrape.register(
            "anti_entropy_allowed_bytes_per_second",
            "Rate the admission controller allows anti-entropy (0: unlimited)",
            gauge(ae.allowed_bytes_per_sec),
        );
        scrape.register(
            "tombstones_reaped",
            "Tombstones removed for good",
            counter(status.reaper.reaped),
        );
        scrape.register_with_unit(
            "store_size",
            "Bytes the store takes on disk",
            Unit::Bytes,
            gauge(runtime.store_bytes),
        );
        scrape.register_with_unit(
            "disk_free",
            "Bytes free on the store's disk",
            Unit::Bytes,
            gauge(runtime.disk_free_bytes),
        );
        let full = status
            .members
            .iter()
            .any(|m| m.id == status.node && m.disk_full);
        scrape.register(
            "disk_full",
            "1 while the disk is below its reserve: writes go to other replicas, reads are served",
            gauge(u64::from(full)),
        );
        let by_class = |values: [(&'static str, usize); 2]| {
            let family = Family::<ClassLabels, Gauge>::default();
            for (class, value) in values {
                family
                    .get_or_create(&ClassLabels { class })
                    .set(as_gauge(value as u64));
            }
            family
        };
        scrape.register(
            "connections",
            "Connections open, by transport",
            by_class([
                ("quic", runtime.quic_connections),
                ("http", runtime.http_connections),
            ]),
        );
        scrape.register(
            "requests_in_flight",
            "Requests (QUIC streams or HTTP requests) being served, by kind of caller",
            by_class([
                ("client", runtime.client_requests_in_flight),
                ("node", runtime.peer_requests_in_flight),
            ]),
        );
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        let _ = prometheus_client::encoding::text::encode(&mut text, &scrape);
        text
    }
}
