//! Buckets and the cluster: `GET|POST /buckets`, `/cluster/status`, `/cluster/ring`,
//! `/cluster/placement`, `/ping`, `/stats` and `/metrics`.
//!
//! This module must not know what requests mean: each answer comes from the gate.

use super::api::{Api, ApiState, bad_request, error_json, parse_json, unexpected};
use super::openapi::Errors;
use crate::metrics::RuntimeGauges;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use dynamo_client::tls::PeerIdentity;
use dynamo_protocol::{BucketProps, Request, Response, storage_key};
use dynamo_resolve::Resolver;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

// ---- buckets and cluster --------------------------------------------------------------------

#[utoipa::path(get, path = "/buckets", tag = "buckets",
    responses((status = 200, description = "Every bucket", body = Vec<JsonBucket>), Errors))]
pub(super) async fn list_buckets(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
) -> HttpResponse {
    match api.ask(&who, Request::ListBuckets).await {
        Response::Buckets(buckets) => {
            Json(buckets.iter().map(JsonBucket::of).collect::<Vec<_>>()).into_response()
        }
        other => unexpected(&other),
    }
}

/// A bucket as JSON: its properties, the resolver by name. `POST /buckets` takes the same
/// shape; omitted fields take the CLI's defaults, (3, 2, 2) and `siblings`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct JsonBucket {
    /// Name.
    pub name: String,
    /// Replicas per key.
    #[serde(default = "three")]
    pub n: usize,
    /// Default read quorum.
    #[serde(default = "two")]
    pub r: usize,
    /// Default write quorum.
    #[serde(default = "two")]
    pub w: usize,
    /// Default primary read quorum.
    #[serde(default)]
    pub pr: usize,
    /// Default primary write quorum.
    #[serde(default)]
    pub pw: usize,
    /// How concurrent versions resolve: `siblings`, `lww`, `max`, `union` or `cart`.
    #[serde(default = "siblings")]
    pub resolver: String,
}

impl JsonBucket {
    fn of(props: &BucketProps) -> Self {
        Self {
            name: props.name.clone(),
            n: props.n,
            r: props.r,
            w: props.w,
            pr: props.pr,
            pw: props.pw,
            resolver: props.resolver.name().to_owned(),
        }
    }
}

pub(super) fn three() -> usize {
    3
}

pub(super) fn two() -> usize {
    2
}

pub(super) fn siblings() -> String {
    Resolver::Siblings.name().to_owned()
}

#[utoipa::path(post, path = "/buckets", tag = "buckets", request_body = JsonBucket,
    responses((status = 201, description = "Created or changed (needs the admin role)", body = JsonBucket), Errors))]
pub(super) async fn create_bucket(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
    body: Bytes,
) -> HttpResponse {
    let bucket: JsonBucket = match parse_json(&body) {
        Ok(bucket) => bucket,
        Err(response) => return response,
    };
    let resolver = match bucket.resolver.parse::<Resolver>() {
        Ok(resolver) => resolver,
        Err(error) => return bad_request(error.to_string()),
    };
    let props = BucketProps {
        name: bucket.name,
        n: bucket.n,
        r: bucket.r,
        w: bucket.w,
        pr: bucket.pr,
        pw: bucket.pw,
        resolver,
    };
    match api.ask(&who, Request::CreateBucket(props.clone())).await {
        Response::Ack => (StatusCode::CREATED, Json(JsonBucket::of(&props))).into_response(),
        other => unexpected(&other),
    }
}

#[utoipa::path(get, path = "/cluster/status", tag = "cluster",
    responses((status = 200, description = "Members, anti-entropy, handoff, the reaper and counters, as this node sees them", body = Object), Errors))]
pub(super) async fn cluster_status(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
) -> HttpResponse {
    match api.ask(&who, Request::Status).await {
        Response::Status(status) => Json(status).into_response(),
        other => unexpected(&other),
    }
}

/// The ring as JSON, for the status page and scripts.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct JsonRing {
    /// Ring version (0: no ring yet).
    pub version: u64,
    /// Partitions.
    pub partitions: u32,
    /// Replicas listed per partition.
    pub n: usize,
    /// Members.
    pub members: Vec<JsonMember>,
    /// Each partition's first `n` replicas, its owner first.
    pub owners: Vec<Vec<String>>,
}

/// A ring member.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct JsonMember {
    /// Node id.
    pub id: String,
    /// Zone.
    pub zone: String,
    /// Capacity weight.
    pub capacity: u32,
}

pub(super) async fn ring_of(
    api: &Api,
    who: &PeerIdentity,
) -> Result<Option<dynamo_ring::Ring>, HttpResponse> {
    match api.ask(who, Request::Ring).await {
        Response::Ring(ring) => Ok(ring.map(|ring| *ring)),
        other => Err(unexpected(&other)),
    }
}

#[utoipa::path(get, path = "/cluster/ring", tag = "cluster",
    responses((status = 200, description = "The ring this node uses (version 0: none yet)", body = JsonRing), Errors))]
pub(super) async fn cluster_ring(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
) -> HttpResponse {
    let ring = match ring_of(&api, &who).await {
        Ok(ring) => ring,
        Err(response) => return response,
    };
    let Some(ring) = ring else {
        return Json(JsonRing {
            version: 0,
            partitions: 0,
            n: 0,
            members: Vec::new(),
            owners: Vec::new(),
        })
        .into_response();
    };
    let n = ring.target_n();
    Json(JsonRing {
        version: ring.version(),
        partitions: ring.partition_count(),
        n,
        members: ring
            .members()
            .iter()
            .map(|m| JsonMember {
                id: m.id.to_string(),
                zone: m.zone.clone(),
                capacity: m.capacity,
            })
            .collect(),
        owners: (0..ring.partition_count())
            .map(|p| {
                ring.replicas_of_partition(p, n)
                    .into_iter()
                    .map(ToString::to_string)
                    .collect()
            })
            .collect(),
    })
    .into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PlacementQuery {
    /// The bucket (`default` when not given).
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    bucket: Option<String>,
    /// The key.
    #[param(min_length = 1)]
    key: String,
}

/// Where a key lives.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct JsonPlacement {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// Its ring partition.
    pub partition: u32,
    /// The bucket's replica count.
    pub n: usize,
    /// Its preference list: the coordinator first.
    pub preference_list: Vec<String>,
}

#[utoipa::path(get, path = "/cluster/placement", tag = "cluster", params(PlacementQuery),
    responses((status = 200, description = "Where a key lives", body = JsonPlacement), Errors))]
pub(super) async fn placement(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
    query: Result<Query<PlacementQuery>, QueryRejection>,
) -> HttpResponse {
    let Query(query) = match query {
        Ok(query) => query,
        Err(error) => return bad_request(error.body_text()),
    };
    let bucket = query.bucket.unwrap_or_else(|| "default".into());
    let buckets = match api.ask(&who, Request::ListBuckets).await {
        Response::Buckets(buckets) => buckets,
        other => return unexpected(&other),
    };
    let Some(props) = buckets.iter().find(|b| b.name == bucket) else {
        return bad_request(format!("there is no bucket {bucket:?}"));
    };
    let ring = match ring_of(&api, &who).await {
        Ok(Some(ring)) => ring,
        Ok(None) => {
            return error_json(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the node has no ring yet",
            );
        }
        Err(response) => return response,
    };
    let stored = storage_key(&bucket, query.key.as_bytes());
    Json(JsonPlacement {
        partition: ring.partition_of_key(&stored),
        n: props.n,
        preference_list: ring
            .preference_list(&stored, props.n)
            .into_iter()
            .map(ToString::to_string)
            .collect(),
        bucket,
        key: query.key,
    })
    .into_response()
}

#[utoipa::path(get, path = "/ping", tag = "cluster",
    responses((status = 200, description = "The node answers", content_type = "text/plain", body = String), Errors))]
pub(super) async fn ping(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
) -> HttpResponse {
    match api.ask(&who, Request::Ping(Vec::new())).await {
        Response::Pong(_) => "OK\n".into_response(),
        other => unexpected(&other),
    }
}

/// Recent latency, for the status page.
#[derive(Debug, Serialize)]
pub(super) struct Stats {
    node: String,
    window_s: u64,
    operations: BTreeMap<&'static str, crate::metrics::RecentLatency>,
}

#[utoipa::path(get, path = "/stats", tag = "cluster",
    responses((status = 200, description = "Recent latency per operation", body = Object), Errors))]
pub(super) async fn stats(State(api): ApiState) -> HttpResponse {
    Json(Stats {
        node: api.context.node.clone(),
        window_s: crate::metrics::RECENT_WINDOW.as_secs(),
        operations: api.context.gate.metrics().recent(),
    })
    .into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "cluster",
    responses((status = 200, description = "Metrics in the OpenMetrics text format", content_type = "application/openmetrics-text", body = String), Errors))]
pub(super) async fn metrics(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
) -> HttpResponse {
    let status = match api.ask(&who, Request::Status).await {
        Response::Status(status) => status,
        other => return unexpected(&other),
    };
    let store = api.context.store.clone();
    let (store_bytes, disk_free_bytes) = tokio::task::spawn_blocking(move || {
        let free = store.free_space().map_or(0, |space| space.free);
        (store.disk_space().unwrap_or(0), free)
    })
    .await
    .unwrap_or((0, 0));
    let (client, peer) = api.context.gate.in_flight();
    let runtime = RuntimeGauges {
        store_bytes,
        disk_free_bytes,
        quic_connections: api.context.endpoint.open_connections(),
        http_connections: api.connections.load(Ordering::Relaxed),
        client_requests_in_flight: client,
        peer_requests_in_flight: peer,
    };
    let text = api.context.gate.metrics().render(&status, runtime);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The status page's server-rendered part needs the status too.
pub(crate) async fn status_for_page(
    api: &Api,
    who: &PeerIdentity,
) -> Option<dynamo_protocol::ClusterStatus> {
    match api.ask(who, Request::Status).await {
        Response::Status(status) => Some(status),
        _ => None,
    }
}
