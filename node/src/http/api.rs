//! The HTTP API's endpoints, each turned into the same [`Request`] a QUIC client sends.
//!
//! Keys and values:
//! - `GET /buckets/{bucket}/keys/{key}`: one value with `200`, every sibling with `300 Multiple
//!   Choices` (`multipart/mixed`, or JSON with base64 values on `Accept: application/json`), `404`
//!   for a missing key. The context is in `X-Dynamo-Context`; `ETag` is derived from it and
//!   `If-None-Match` answers `304`. Query: `r`, `pr`, `timeout` (`500ms`, `2s`), and
//!   `watch=CONTEXT` to wait until the key has a version that context has not seen.
//! - `PUT` (body: the value) and `DELETE` of the same path, with the read's context in
//!   `X-Dynamo-Context`; query `w`, `pw`, `timeout`.
//! - `POST /buckets/{bucket}/batch/get` and `.../batch/put`: many keys in one JSON request.
//! - `GET /buckets/{bucket}/keys?limit=&cursor=`: a page of keys (a full scan of the cluster).
//!
//! Buckets and the cluster: `GET`/`POST /buckets`, `GET /cluster/status`, `/cluster/ring`,
//! `/cluster/placement?bucket=&key=`, `/ping`, `/stats`, `/metrics`; the status page at `/`.
//!
//! Errors are JSON, `{"error": {"kind": "bad_request", "message": "..."}}`, with the kinds and
//! messages the CLI shows. This module must not decide anything a request means: quorums,
//! roles, validation of buckets, keys and contexts are the core's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dynamo_quorum::{ClientContext, key_fingerprint};
use dynamo_resolve::{Cart, ItemSet, Resolution, Resolver};
use dynamo_vclock::VClock;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::HttpContext;
use super::openapi::Errors;
use dynamo_client::tls::PeerIdentity;
use dynamo_protocol::{
    ErrorKind, ErrorReply, GetReply, PutReply, Request, RequestOptions, Response, storage_key,
};

use super::batch::{batch_get, batch_put};
use super::cluster::{
    cluster_ring, cluster_status, create_bucket, list_buckets, metrics, ping, placement, stats,
};

/// The header that carries a context token, in answers and on writes.
pub const CONTEXT_HEADER: &str = "x-dynamo-context";
/// A watch checks the key again this often even when no write was seen here (the write may
/// have reached only other replicas).
const WATCH_RECHECK: Duration = Duration::from_secs(1);
/// Boundary of `300 Multiple Choices` multipart bodies (values are sent as they are, so the
/// boundary is long and unusual; a value containing it is sent as JSON instead).
const BOUNDARY: &str = "dynamo-sibling-boundary-7c1f0e9b2d4a";

/// The API's state.
pub(crate) struct Api {
    pub(super) context: HttpContext,
    pub(super) connections: Arc<AtomicUsize>,
    watches: Arc<Semaphore>,
    /// KiB of request bodies all clients may have the node hold at once.
    body_budget: Arc<Semaphore>,
    /// KiB of request bodies each identity holds.
    body_by_identity: super::IdentityCounts,
}

/// Bytes in whole KiB, rounded up (the body budget's unit), at most `u32::MAX`.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// Reserves a request's body in the body budgets before the body is read (what it declares,
/// or the largest body allowed when it declares nothing), then reads it whole within
/// `body_timeout_ms`, so that clients sending large or slow bodies cannot make the node buffer
/// more than `max_body_bytes_in_flight` in all, or one identity more than
/// `max_body_bytes_per_identity`, or for longer than the timeout. A request that does not fit
/// is answered "overloaded" at once.
async fn reserve_body(
    State(api): ApiState,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    use axum::http::Method;
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::DELETE
    ) {
        // No endpoint reads a body of these; one sent anyway is never buffered.
        return next.run(request).await;
    }
    let limits = &api.context.limits;
    let max = limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let bytes = match declared {
        Some(bytes) if bytes > max => {
            return error_json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_request",
                format!("the body is {bytes} bytes; this node takes at most {max}"),
            );
        }
        Some(bytes) => bytes,
        None => max,
    };
    let overloaded = |message: &str| {
        error_json(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Overloaded.label(),
            message,
        )
    };
    let Some(who) = request.extensions().get::<PeerIdentity>().cloned() else {
        return overloaded("the request came without an identity");
    };
    let Some(mine) = api.body_by_identity.enter(
        &who,
        kib(bytes) as usize,
        kib(limits.max_body_bytes_per_identity) as usize,
    ) else {
        return overloaded(
            "this certificate has as many request bodies in flight as it may; wait for their answers",
        );
    };
    let Ok(mut reserved) = api.body_budget.clone().try_acquire_many_owned(kib(bytes)) else {
        return overloaded(
            "the node holds as many request bodies as it takes; retry later or ask another node",
        );
    };
    let (parts, body) = request.into_parts();
    let wait = Duration::from_millis(limits.body_timeout_ms);
    let body = match tokio::time::timeout(wait, axum::body::to_bytes(body, max)).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            return error_json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_request",
                format!("the body could not be read whole (at most {max} bytes): {error}"),
            );
        }
        Err(_) => {
            return error_json(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the body did not arrive within {} ms",
                    limits.body_timeout_ms
                ),
            );
        }
    };
    // The body is here: the identity's share is for bodies still arriving, and the node's
    // budget keeps only what this one takes (the rest of an undeclared body's reservation
    // goes back).
    drop(mine);
    let excess = reserved
        .num_permits()
        .saturating_sub(kib(body.len()) as usize);
    drop(reserved.split(excess));
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(body));
    next.run(request).await
}

impl Api {
    pub(crate) fn new(context: HttpContext, connections: Arc<AtomicUsize>) -> Self {
        let watches = Arc::new(Semaphore::new(context.limits.max_watches.max(1)));
        let body_kib = kib(context
            .limits
            .max_body_bytes_in_flight
            .max(context.limits.max_body_bytes));
        Self {
            context,
            connections,
            watches,
            body_budget: Arc::new(Semaphore::new(body_kib as usize)),
            body_by_identity: super::IdentityCounts::default(),
        }
    }

    pub(super) async fn ask(&self, who: &PeerIdentity, request: Request) -> Response {
        self.context.gate.submit(who.clone(), request).await
    }
}

pub(super) type ApiState = State<Arc<Api>>;

/// Every route.
pub(crate) fn router(api: Arc<Api>) -> axum::Router {
    let body_limit = api.context.limits.max_body_bytes;
    axum::Router::new()
        .route("/", get(super::page::index))
        .route("/page/app.js", get(super::page::script))
        .route("/page/style.css", get(super::page::style))
        .route("/ping", get(ping))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/buckets", get(list_buckets).post(create_bucket))
        .route("/buckets/{bucket}/keys", get(super::listing::list_keys))
        .route(
            "/buckets/{bucket}/keys/{key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/buckets/{bucket}/batch/get", post(batch_get))
        .route("/buckets/{bucket}/batch/put", post(batch_put))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/ring", get(cluster_ring))
        .route("/cluster/placement", get(placement))
        .route("/openapi.json", get(super::openapi::openapi_json))
        .fallback(not_found_route)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            reserve_body,
        ))
        .with_state(api)
}

// ---- errors ---------------------------------------------------------------------------------

/// The JSON body of every error.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
    /// The context of a missing key (a write with it supersedes the tombstone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// One error.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The kind: `bad_request`, `not_found`, `forbidden`, `unavailable`, `timeout`,
    /// `not_ready`, `overloaded` or `internal`.
    pub kind: String,
    /// What a person can act on.
    pub message: String,
}

pub(super) fn error_json(
    status: StatusCode,
    kind: &str,
    message: impl Into<String>,
) -> HttpResponse {
    let body = ErrorBody {
        error: ErrorDetail {
            kind: kind.to_owned(),
            message: message.into(),
        },
        context: None,
    };
    (status, Json(body)).into_response()
}

/// A JSON request body, whatever its `Content-Type` (`curl -d` sends a form type).
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    serde_json::from_slice(body).map_err(|error| {
        bad_request(format!(
            "the body is not the JSON this endpoint takes: {error}"
        ))
    })
}

pub(super) fn bad_request(message: impl Into<String>) -> HttpResponse {
    error_json(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable | ErrorKind::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn core_error(error: &ErrorReply) -> HttpResponse {
    error_json(status_of(error.kind), error.kind.label(), &error.message)
}

/// Any answer the endpoint did not expect: an error reply as itself, anything else a 500.
pub(super) fn unexpected(response: &Response) -> HttpResponse {
    match response {
        Response::Error(error) => core_error(error),
        other => error_json(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected answer from the node: {other:?}"),
        ),
    }
}

async fn not_found_route(uri: axum::http::Uri) -> HttpResponse {
    error_json(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint {}; see the API at /", uri.path()),
    )
}

// ---- query parameters -----------------------------------------------------------------------

/// The path of a key request (for the `OpenAPI` description; the handlers take the path
/// as a pair).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct KeyPath {
    /// Bucket name.
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    bucket: String,
    /// The key (UTF-8 text).
    #[param(min_length = 1)]
    key: String,
}

/// Query parameters of key requests.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct KeyQuery {
    /// Read quorum for this request (replicas that must answer; at most the bucket's N).
    #[param(pattern = "^[0-9]{1,2}$")]
    r: Option<String>,
    /// Write quorum for this request (replicas that must acknowledge; at most N).
    #[param(pattern = "^[0-9]{1,2}$")]
    w: Option<String>,
    /// Primary read quorum: of the R, how many must be the key's primaries.
    #[param(pattern = "^[0-9]{1,2}$")]
    pr: Option<String>,
    /// Primary write quorum.
    #[param(pattern = "^[0-9]{1,2}$")]
    pw: Option<String>,
    /// How long to wait at most: `500ms`, `2s`, `1m`, or milliseconds; a request that asks for
    /// less than its replicas need is answered `504`. The pattern here admits only 10 to 59
    /// seconds, so that a fuzzer's requests are not timed out by their own choice; the node
    /// takes every duration above.
    #[param(pattern = "^[1-5][0-9]s$")]
    timeout: Option<String>,
    /// A read only: wait until the key has a version this context token has not seen (`none`
    /// for any version), at most `timeout` (30 s by default).
    watch: Option<String>,
}

/// `500ms`, `2s`, `1m`, or a number of milliseconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "ms"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 500ms, 2s or 1m)"))?;
    let ms = match unit {
        "ms" => Some(value),
        "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        _ => None,
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is not a duration (like 500ms, 2s or 1m)"))
}

fn parse_count(name: &str, text: Option<&String>) -> Result<Option<usize>, String> {
    text.map(|text| {
        text.parse::<usize>()
            .map_err(|_| format!("{name}={text:?} is not a number of replicas"))
    })
    .transpose()
}

impl KeyQuery {
    pub(super) fn options(&self) -> Result<RequestOptions, String> {
        Ok(RequestOptions {
            r: parse_count("r", self.r.as_ref())?,
            w: parse_count("w", self.w.as_ref())?,
            pr: parse_count("pr", self.pr.as_ref())?,
            pw: parse_count("pw", self.pw.as_ref())?,
            timeout_ms: self
                .timeout
                .as_deref()
                .map(|t| match parse_duration(t) {
                    Ok(d) if d.is_zero() => Err(format!(
                        "timeout={t:?} waits for nothing: give at least 1ms"
                    )),
                    Ok(d) => Ok(d.as_millis() as u64),
                    Err(message) => Err(message),
                })
                .transpose()?,
        })
    }
}

fn context_header(headers: &HeaderMap) -> Result<Option<String>, String> {
    match headers.get(CONTEXT_HEADER) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|text| (!text.trim().is_empty()).then(|| text.trim().to_owned()))
            .map_err(|_| format!("the {CONTEXT_HEADER} header is not text")),
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
}

fn etag_of(context: &str) -> String {
    format!("\"{:016x}\"", key_fingerprint(context.as_bytes()))
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

// ---- single keys ----------------------------------------------------------------------------

/// A value as JSON: the text when it is UTF-8, always the base64.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JsonValue {
    /// The value as text, when it is valid UTF-8.
    pub value: Option<String>,
    /// The value's bytes in base64.
    pub value_base64: String,
}

impl JsonValue {
    pub(super) fn of(bytes: &[u8]) -> Self {
        Self {
            value: std::str::from_utf8(bytes).ok().map(str::to_owned),
            value_base64: STANDARD.encode(bytes),
        }
    }
}

/// A bucket's resolution as JSON.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JsonResolution {
    /// The resolver's name.
    pub resolver: String,
    /// The resolved value (`None`: a delete won, or nothing was in the bucket's format).
    pub value: Option<JsonValue>,
    /// The items of a `union` or `cart` bucket's resolved set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<String>>,
    /// Versions joined.
    pub merged: usize,
    /// What a person should know about the merge.
    pub notes: Vec<String>,
    /// Versions that lost or could not be read.
    pub discarded: Vec<JsonValue>,
}

/// A read as JSON.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JsonGet {
    /// The context to write with.
    pub context: String,
    /// Every sibling.
    pub siblings: Vec<JsonValue>,
    /// The bucket's resolution, unless the bucket keeps siblings.
    pub resolution: Option<JsonResolution>,
}

/// The items of a set-valued resolution, as text.
fn items_of(resolver: Resolver, value: &[u8]) -> Option<Vec<String>> {
    let text = |item: &[u8]| String::from_utf8_lossy(item).into_owned();
    match resolver {
        Resolver::Union => ItemSet::decode(value)
            .ok()
            .map(|set| set.0.iter().map(|i| text(i)).collect()),
        Resolver::Cart => Cart::decode(value)
            .ok()
            .map(|cart| cart.items().map(text).collect()),
        _ => None,
    }
}

fn json_resolution(resolution: &Resolution) -> JsonResolution {
    JsonResolution {
        resolver: resolution.resolver.name().to_owned(),
        value: resolution.value.as_deref().map(JsonValue::of),
        items: resolution
            .value
            .as_deref()
            .and_then(|value| items_of(resolution.resolver, value)),
        merged: resolution.merged,
        notes: resolution.notes.clone(),
        discarded: resolution
            .discarded
            .iter()
            .map(|v| JsonValue::of(v))
            .collect(),
    }
}

pub(super) fn json_get(reply: &GetReply) -> JsonGet {
    JsonGet {
        context: reply.context.clone(),
        siblings: reply.values.iter().map(|v| JsonValue::of(v)).collect(),
        resolution: reply.resolution.as_deref().map(json_resolution),
    }
}

/// The answer to a found key.
fn render_found(reply: &GetReply, headers: &HeaderMap) -> HttpResponse {
    let etag = etag_of(&reply.context);
    let mut out = HeaderMap::new();
    out.insert(CONTEXT_HEADER, header_value(&reply.context));
    out.insert(header::ETAG, header_value(&etag));
    out.insert(
        HeaderName::from_static("x-dynamo-siblings"),
        HeaderValue::from(reply.values.len()),
    );
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    let resolved = reply.resolution.as_deref();
    let conflict = resolved.is_none() && reply.values.len() > 1;
    let status = if conflict {
        StatusCode::MULTIPLE_CHOICES
    } else {
        StatusCode::OK
    };
    if wants_json(headers) {
        return (status, out, Json(json_get(reply))).into_response();
    }
    if let Some(resolution) = resolved {
        out.insert(
            HeaderName::from_static("x-dynamo-resolved-by"),
            header_value(resolution.resolver.name()),
        );
        out.insert(
            HeaderName::from_static("x-dynamo-merged"),
            HeaderValue::from(resolution.merged),
        );
        if let Some(value) = &resolution.value {
            return (StatusCode::OK, out, value.clone()).into_response();
        }
        // A delete won the resolution: the key reads as deleted.
        let mut response = error_json(
            StatusCode::NOT_FOUND,
            "not_found",
            "the key's resolved value is a delete",
        );
        response.headers_mut().extend(out);
        return response;
    }
    if !conflict {
        let value = reply.values.first().cloned().unwrap_or_default();
        return (StatusCode::OK, out, value).into_response();
    }
    let marker = format!("--{BOUNDARY}");
    if reply
        .values
        .iter()
        .any(|v| v.windows(marker.len()).any(|w| w == marker.as_bytes()))
    {
        return (status, out, Json(json_get(reply))).into_response();
    }
    let mut body = Vec::new();
    for value in &reply.values {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out.insert(
        header::CONTENT_TYPE,
        header_value(&format!("multipart/mixed; boundary={BOUNDARY}")),
    );
    (status, out, body).into_response()
}

fn render_not_found(context: &str) -> HttpResponse {
    let body = ErrorBody {
        error: ErrorDetail {
            kind: "not_found".into(),
            message: "the key does not exist (never written, or deleted)".into(),
        },
        context: Some(context.to_owned()),
    };
    let mut response = (StatusCode::NOT_FOUND, Json(body)).into_response();
    response
        .headers_mut()
        .insert(CONTEXT_HEADER, header_value(context));
    response
}

fn render_get(response: &Response, headers: &HeaderMap) -> HttpResponse {
    match response {
        Response::Get(reply) => render_found(reply, headers),
        Response::NotFound { context } => render_not_found(context),
        other => unexpected(other),
    }
}

/// The bucket, key and query of a key request, or the 400 for a malformed one.
fn key_target(
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<(String, String, KeyQuery), HttpResponse> {
    match (path, query) {
        (Ok(Path((bucket, key))), Ok(Query(query))) => Ok((bucket, key, query)),
        (Err(error), _) => Err(bad_request(error.body_text())),
        (_, Err(error)) => Err(bad_request(error.body_text())),
    }
}

/// The clock of a context token; the empty token (or `none`) is the empty clock.
fn clock_of(token: &str) -> Result<VClock, String> {
    if token.is_empty() || token == "none" {
        return Ok(VClock::new());
    }
    ClientContext::from_text(token)
        .map(|context| context.clock)
        .map_err(|error| format!("the watch context is not a context token: {error}"))
}

/// The clock of an answer's context (empty for an empty context).
fn answer_clock(response: &Response) -> Option<VClock> {
    let context = match response {
        Response::Get(reply) => &reply.context,
        Response::NotFound { context } => context,
        _ => return None,
    };
    clock_of(context).ok()
}

#[utoipa::path(
    get,
    path = "/buckets/{bucket}/keys/{key}",
    tag = "keys",
    params(
        KeyPath,
        ("X-Dynamo-Context" = Option<String>, Header, description = "Unused on reads"),
        KeyQuery
    ),
    responses(
        (status = 200, description = "One value (its bytes), or with `Accept: application/json` the read as JSON",
            content(("application/octet-stream"), (JsonGet = "application/json")),
            headers(
                ("X-Dynamo-Context" = String, description = "The context to write with"),
                ("ETag" = String, description = "Derived from the context; `If-None-Match` with it answers 304"),
                ("X-Dynamo-Siblings" = u32, description = "How many siblings the key has"),
                ("X-Dynamo-Resolved-By" = Option<String>, description = "The bucket's resolver, when it resolved the siblings"),
                ("X-Dynamo-Merged" = Option<u32>, description = "How many versions the resolver joined")
            )),
        (status = 300, description = "Siblings: `multipart/mixed`, or JSON",
            content(("multipart/mixed"), (JsonGet = "application/json")),
            headers(
                ("X-Dynamo-Context" = String, description = "The context to write with (it covers every sibling)"),
                ("ETag" = String, description = "Derived from the context"),
                ("X-Dynamo-Siblings" = u32, description = "How many siblings the key has")
            )),
        (status = 304, description = "`If-None-Match` matched, or a watch ended with nothing new"),
        (status = 404, description = "Not found (never written, or deleted); the body carries the context a write may supersede", body = ErrorBody,
            headers(("X-Dynamo-Context" = Option<String>, description = "The context of the tombstone, if any"))),
        Errors
    )
)]
pub(super) async fn get_key(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<KeyQuery>, QueryRejection>,
    headers: HeaderMap,
) -> HttpResponse {
    let (bucket, key, query) = match key_target(path, query) {
        Ok(target) => target,
        Err(response) => return response,
    };
    let options = match query.options() {
        Ok(options) => options,
        Err(message) => return bad_request(message),
    };
    // Only a watch needs the key again, to recognise this node's writes of it.
    let fingerprint = query
        .watch
        .is_some()
        .then(|| key_fingerprint(&storage_key(&bucket, key.as_bytes())));
    let request = Request::Get {
        bucket,
        key: key.into_bytes(),
        options,
    };
    let (Some(watch), Some(fingerprint)) = (&query.watch, fingerprint) else {
        return render_get(&api.ask(&who, request).await, &headers);
    };
    let seen = match clock_of(watch) {
        Ok(clock) => clock,
        Err(message) => return bad_request(message),
    };
    let wait = options
        .timeout_ms
        .map_or(Duration::from_secs(30), Duration::from_millis)
        .min(Duration::from_millis(api.context.limits.max_watch_ms));
    let Ok(_watching) = api.watches.clone().try_acquire_owned() else {
        return error_json(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Overloaded.label(),
            "the node has as many watches as it takes; retry later or ask another node",
        );
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut writes = api.context.gate.watch_writes();
    loop {
        // Each check is an ordinary read that must not outlive the watch.
        let mut check = request.clone();
        if let Request::Get { options, .. } = &mut check {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            options.timeout_ms = Some((left.as_millis() as u64).max(1));
        }
        let response = api.ask(&who, check).await;
        let out_of_time = tokio::time::Instant::now() >= deadline;
        match answer_clock(&response) {
            // Something the watcher has not seen: answer at once.
            Some(clock) if !seen.descends(&clock) => return render_get(&response, &headers),
            Some(_) => {}
            // A check cut short by the watch's end is the end of the watch, not an error.
            None if out_of_time => {}
            None => return render_get(&response, &headers),
        }
        // Wait for a write of this key here, a recheck, or the end of the watch.
        let recheck = tokio::time::Instant::now() + WATCH_RECHECK;
        loop {
            tokio::select! {
                notice = writes.recv() => match notice {
                    Ok(written) if written != fingerprint => {}
                    _ => break,
                },
                () = tokio::time::sleep_until(recheck.min(deadline)) => break,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response
                .headers_mut()
                .insert(CONTEXT_HEADER, header_value(watch));
            return response;
        }
    }
}

async fn write_key(
    api: &Api,
    who: &PeerIdentity,
    bucket: String,
    key: String,
    value: Option<Vec<u8>>,
    query: &KeyQuery,
    headers: &HeaderMap,
) -> HttpResponse {
    let options = match query.options() {
        Ok(options) => options,
        Err(message) => return bad_request(message),
    };
    let context = match context_header(headers) {
        Ok(context) => context,
        Err(message) => return bad_request(message),
    };
    let request = Request::Put {
        bucket,
        key: key.into_bytes(),
        value,
        context,
        options,
        forwarded: false,
        write_id: Some(random_write_id()),
    };
    render_put(&submit_write(&api.context.gate, who.clone(), request).await)
}

/// Sends `request` through the gate. A delete without a context first reads the key and
/// deletes what that read saw, as the Rust client does: a delete that answers 200 never leaves
/// the value readable beside its tombstone (issue 26: each context-less `DELETE` added one more
/// tombstone sibling and the value stayed). A key not found is deleted with the read's context,
/// which may name a tombstone; a read that fails is the delete's answer.
pub(super) async fn submit_write(
    gate: &crate::gate::Gate,
    who: PeerIdentity,
    request: Request,
) -> Response {
    let request = match request {
        Request::Put {
            bucket,
            key,
            value: None,
            context: None,
            options,
            forwarded,
            write_id,
        } => {
            let read = Request::Get {
                bucket: bucket.clone(),
                key: key.clone(),
                options,
            };
            let context = match gate.submit(who.clone(), read).await {
                Response::Get(reply) => reply.context,
                Response::NotFound { context } => context,
                other => return other,
            };
            Request::Put {
                bucket,
                key,
                value: None,
                context: (!context.is_empty()).then_some(context),
                options,
                forwarded,
                write_id,
            }
        }
        other => other,
    };
    gate.submit(who, request).await
}

fn render_put(response: &Response) -> HttpResponse {
    match response {
        Response::Put(reply) => {
            let mut out = HeaderMap::new();
            out.insert(CONTEXT_HEADER, header_value(&reply.context));
            (StatusCode::OK, out, Json(JsonPut::of(reply))).into_response()
        }
        other => unexpected(other),
    }
}

/// A write's answer as JSON.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JsonPut {
    /// The context of the version written.
    pub context: String,
    /// Replicas that acknowledged it.
    pub acknowledged: usize,
    /// Warnings, such as many siblings.
    pub warnings: Vec<String>,
}

impl JsonPut {
    pub(super) fn of(reply: &PutReply) -> Self {
        Self {
            context: reply.context.clone(),
            acknowledged: reply.acknowledged,
            warnings: reply.warnings.clone(),
        }
    }
}

/// A write id for a request that came without one: unique per write, from the process's
/// hasher keys and a counter (no thread RNG is needed for uniqueness).
pub(super) fn random_write_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) as u64;
    let state = std::collections::hash_map::RandomState::new();
    let mut high = state.build_hasher();
    high.write_u64(count);
    let mut low = state.build_hasher();
    low.write_u64(count ^ 0x9e37_79b9_7f4a_7c15);
    (u128::from(high.finish()) << 64) | u128::from(low.finish())
}

#[utoipa::path(
    put,
    path = "/buckets/{bucket}/keys/{key}",
    tag = "keys",
    params(
        KeyPath,
        ("X-Dynamo-Context" = Option<String>, Header, description = "The context of the read this write follows; none for a blind write"),
        KeyQuery
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The value"),
    responses(
        (status = 200, description = "Written by W replicas", body = JsonPut),
        Errors
    )
)]
pub(super) async fn put_key(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<KeyQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResponse {
    let (bucket, key, query) = match key_target(path, query) {
        Ok(target) => target,
        Err(response) => return response,
    };
    if body.len() > api.context.max_value_bytes {
        return error_json(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            format!(
                "the value is {} bytes; this node takes at most {}",
                body.len(),
                api.context.max_value_bytes
            ),
        );
    }
    write_key(
        &api,
        &who,
        bucket,
        key,
        Some(body.to_vec()),
        &query,
        &headers,
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/buckets/{bucket}/keys/{key}",
    tag = "keys",
    params(
        KeyPath,
        ("X-Dynamo-Context" = Option<String>, Header, description = "The context of the read this delete follows"),
        KeyQuery
    ),
    responses((status = 200, description = "A tombstone written by W replicas", body = JsonPut), Errors)
)]
pub(super) async fn delete_key(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<KeyQuery>, QueryRejection>,
    headers: HeaderMap,
) -> HttpResponse {
    let (bucket, key, query) = match key_target(path, query) {
        Ok(target) => target,
        Err(response) => return response,
    };
    write_key(&api, &who, bucket, key, None, &query, &headers).await
}
