//! Batches: `POST /batch/get` and `POST /batch/put`, many keys in one request, each answered
//! on its own (a failed key does not fail the others), bounded in keys and answer bytes.
//!
//! This module must not know what requests mean: each key is one request to the gate.

use super::api::{
    Api, ApiState, JsonGet, JsonPut, bad_request, json_get, parse_json, random_write_id,
    submit_write,
};
use super::openapi::Errors;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response as HttpResponse};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dynamo_client::tls::PeerIdentity;
use dynamo_protocol::{Request, RequestOptions, Response};
use serde::{Deserialize, Serialize};

// ---- batches --------------------------------------------------------------------------------

/// A key in a batch: text, or bytes in base64.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct BatchKey {
    /// The key as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key's bytes in base64, for keys that are not text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
}

impl BatchKey {
    fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.key, &self.key_base64) {
            (Some(key), None) => Ok(key.clone().into_bytes()),
            (None, Some(encoded)) => STANDARD
                .decode(encoded)
                .map_err(|e| format!("key_base64 is not base64: {e}")),
            _ => Err("give each key as exactly one of `key` or `key_base64`".into()),
        }
    }
}

/// `POST .../batch/get`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct BatchGet {
    keys: Vec<BatchKey>,
    #[serde(default)]
    r: Option<usize>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// One key's answer in a batch.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct BatchResult {
    /// The key, as given.
    #[serde(flatten)]
    pub key: BatchKey,
    /// `ok`, `not_found`, or an error kind.
    pub status: String,
    /// A read: the key's siblings, context and resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<JsonGet>,
    /// A write's answer, or the context of a missing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<JsonPut>,
    /// The context of a missing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BatchResult {
    fn new(key: BatchKey, response: Response) -> Self {
        let mut result = BatchResult {
            key,
            status: "ok".into(),
            read: None,
            written: None,
            context: None,
            error: None,
        };
        match response {
            Response::Get(reply) => result.read = Some(json_get(&reply)),
            Response::Put(reply) => result.written = Some(JsonPut::of(&reply)),
            Response::NotFound { context } => {
                result.status = "not_found".into();
                result.context = Some(context);
            }
            Response::Error(error) => {
                result.status = error.kind.label().into();
                result.error = Some(error.message);
            }
            other => {
                result.status = "internal".into();
                result.error = Some(format!("unexpected answer from the node: {other:?}"));
            }
        }
        result
    }

    fn refused(key: BatchKey, message: String) -> Self {
        BatchResult {
            key,
            status: "bad_request".into(),
            read: None,
            written: None,
            context: None,
            error: Some(message),
        }
    }
}

/// A batch's answer: one result per key, in request order.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct BatchAnswer {
    /// The results.
    pub results: Vec<BatchResult>,
}

/// Runs one request per key at once and collects the answers in order.
pub(super) async fn run_batch(
    api: &Api,
    who: &PeerIdentity,
    requests: Vec<(BatchKey, Result<Request, String>)>,
) -> HttpResponse {
    let mut seen = std::collections::HashSet::new();
    for (key, _) in &requests {
        if let Ok(bytes) = key.bytes()
            && !seen.insert(bytes)
        {
            return bad_request(format!(
                "the batch names {} twice; name each key once",
                key.key.as_deref().unwrap_or("a key")
            ));
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    let count = requests.len();
    let mut results: Vec<Option<BatchResult>> = (0..count).map(|_| None).collect();
    for (index, (key, request)) in requests.into_iter().enumerate() {
        match request {
            Ok(request) => {
                let gate = api.context.gate.clone();
                let who = who.clone();
                tasks.spawn(async move { (index, key, submit_write(&gate, who, request).await) });
            }
            Err(message) => results[index] = Some(BatchResult::refused(key, message)),
        }
    }
    // The answer holds at most `max_body_bytes` of values; keys past that are answered
    // "too_large", to be asked for in another batch.
    let mut budget = api.context.limits.max_body_bytes;
    while let Some(done) = tasks.join_next().await {
        let Ok((index, key, response)) = done else {
            continue;
        };
        let bytes = value_bytes(&response);
        results[index] = Some(if bytes > budget {
            BatchResult {
                status: "too_large".into(),
                error: Some(format!(
                    "the batch's answer would pass {} bytes of values; ask for this key in another batch",
                    api.context.limits.max_body_bytes
                )),
                ..BatchResult::refused(key, String::new())
            }
        } else {
            budget -= bytes;
            BatchResult::new(key, response)
        });
    }
    let results = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| BatchResult::refused(BatchKey::default(), "lost".into())))
        .collect();
    Json(BatchAnswer { results }).into_response()
}

/// Bytes of values an answer carries.
pub(super) fn value_bytes(response: &Response) -> usize {
    match response {
        Response::Get(reply) => {
            let resolution = reply.resolution.as_deref().map_or(0, |r| {
                r.value.as_ref().map_or(0, Vec::len)
                    + r.discarded.iter().map(Vec::len).sum::<usize>()
            });
            reply.values.iter().map(Vec::len).sum::<usize>() + resolution
        }
        _ => 0,
    }
}

/// A batch request's body, refused unless it holds 1 to `max_batch_keys` keys.
pub(super) fn batch_body<T: serde::de::DeserializeOwned>(
    api: &Api,
    body: &[u8],
    keys: impl Fn(&T) -> usize,
) -> Result<T, HttpResponse> {
    let batch = parse_json(body)?;
    let (count, max) = (keys(&batch), api.context.limits.max_batch_keys);
    if count == 0 || count > max {
        return Err(bad_request(format!(
            "a batch holds 1 to {max} keys, not {count}"
        )));
    }
    Ok(batch)
}

#[utoipa::path(
    post,
    path = "/buckets/{bucket}/batch/get",
    tag = "keys",
    params(("bucket" = String, Path, description = "Bucket name")),
    request_body = BatchGet,
    responses((status = 200, description = "One result per key, in request order", body = BatchAnswer), Errors)
)]
pub(super) async fn batch_get(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
    Path(bucket): Path<String>,
    body: Bytes,
) -> HttpResponse {
    let batch = match batch_body(&api, &body, |b: &BatchGet| b.keys.len()) {
        Ok(batch) => batch,
        Err(response) => return response,
    };
    let options = RequestOptions {
        r: batch.r,
        timeout_ms: batch.timeout_ms,
        ..RequestOptions::default()
    };
    let requests = batch
        .keys
        .into_iter()
        .map(|key| {
            let request = key.bytes().map(|bytes| Request::Get {
                bucket: bucket.clone(),
                key: bytes,
                options,
            });
            (key, request)
        })
        .collect();
    run_batch(&api, &who, requests).await
}

/// `POST .../batch/put`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct BatchPut {
    items: Vec<BatchItem>,
    #[serde(default)]
    w: Option<usize>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// One write of a batch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct BatchItem {
    #[serde(flatten)]
    key: BatchKey,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_base64: Option<String>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    delete: bool,
}

impl BatchItem {
    fn value(&self) -> Result<Option<Vec<u8>>, String> {
        match (&self.value, &self.value_base64, self.delete) {
            (None, None, true) => Ok(None),
            (Some(text), None, false) => Ok(Some(text.clone().into_bytes())),
            (None, Some(encoded), false) => STANDARD
                .decode(encoded)
                .map(Some)
                .map_err(|e| format!("value_base64 is not base64: {e}")),
            _ => Err(
                "give each item exactly one of `value`, `value_base64` or `delete: true`".into(),
            ),
        }
    }
}

#[utoipa::path(
    post,
    path = "/buckets/{bucket}/batch/put",
    tag = "keys",
    params(("bucket" = String, Path, description = "Bucket name")),
    request_body = BatchPut,
    responses((status = 200, description = "One result per item, in request order", body = BatchAnswer), Errors)
)]
pub(super) async fn batch_put(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
    Path(bucket): Path<String>,
    body: Bytes,
) -> HttpResponse {
    let batch = match batch_body(&api, &body, |b: &BatchPut| b.items.len()) {
        Ok(batch) => batch,
        Err(response) => return response,
    };
    let options = RequestOptions {
        w: batch.w,
        timeout_ms: batch.timeout_ms,
        ..RequestOptions::default()
    };
    let requests = batch
        .items
        .into_iter()
        .map(|item| {
            let request = item.key.bytes().and_then(|key| {
                Ok(Request::Put {
                    bucket: bucket.clone(),
                    key,
                    value: item.value()?,
                    context: item.context.clone().filter(|c| !c.is_empty()),
                    options,
                    forwarded: false,
                    write_id: Some(random_write_id()),
                })
            });
            (item.key, request)
        })
        .collect();
    run_batch(&api, &who, requests).await
}
