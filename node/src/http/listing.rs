//! Listing a bucket's keys over HTTP: `GET /buckets/{bucket}/keys?limit=&cursor=`, a page of
//! a full scan of the cluster, with an opaque cursor to continue.
//!
//! This module must not know how a listing is served: the core scans the replicas.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response as HttpResponse};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use dynamo_client::tls::PeerIdentity;
use dynamo_protocol::{KeyPage, ListCursor, Request, Response};
use serde::{Deserialize, Serialize};

use super::api::{ApiState, bad_request, unexpected};
use super::batch::BatchKey;
use super::openapi::Errors;

/// Keys in a listing page when the request names no `limit` (the core takes up to
/// [`dynamo_protocol::MAX_LIST_KEYS`]).
const DEFAULT_LIST_LIMIT: u32 = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Most keys in the page (1 to 1000; 100 when not given).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Where the previous page ended (its `next`).
    cursor: Option<String>,
}

/// A page of keys as JSON.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct JsonKeyPage {
    /// The keys.
    pub keys: Vec<BatchKey>,
    /// Pass as `cursor` for the next page; `None`: the listing is complete.
    pub next: Option<String>,
}

fn encode_cursor(cursor: &ListCursor) -> String {
    URL_SAFE_NO_PAD.encode(postcard::to_stdvec(cursor).unwrap_or_default())
}

fn decode_cursor(text: &str) -> Result<ListCursor, String> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| match postcard::take_from_bytes(&bytes) {
            Ok((cursor, [])) => Some(cursor),
            _ => None,
        })
        .ok_or_else(|| "the cursor is not one a listing returned".to_owned())
}

fn json_key(key: &[u8]) -> BatchKey {
    match std::str::from_utf8(key) {
        Ok(text) => BatchKey {
            key: Some(text.to_owned()),
            key_base64: None,
        },
        Err(_) => BatchKey {
            key: None,
            key_base64: Some(STANDARD.encode(key)),
        },
    }
}

#[utoipa::path(
    get,
    path = "/buckets/{bucket}/keys",
    tag = "keys",
    params(("bucket" = String, Path, description = "Bucket name"), ListQuery),
    responses((status = 200, description = "A page of keys; `next` continues", body = JsonKeyPage), Errors)
)]
pub(super) async fn list_keys(
    State(api): ApiState,
    Extension(who): Extension<PeerIdentity>,
    Path(bucket): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> HttpResponse {
    let Query(query) = match query {
        Ok(query) => query,
        Err(error) => return bad_request(error.body_text()),
    };
    let cursor = match query.cursor.as_deref().map(decode_cursor).transpose() {
        Ok(cursor) => cursor,
        Err(message) => return bad_request(message),
    };
    let request = Request::ListKeys {
        bucket,
        cursor,
        limit: query.limit.unwrap_or(DEFAULT_LIST_LIMIT),
    };
    match api.ask(&who, request).await {
        Response::Keys(KeyPage { keys, next }) => Json(JsonKeyPage {
            keys: keys.iter().map(|k| json_key(k)).collect(),
            next: next.as_ref().map(encode_cursor),
        })
        .into_response(),
        other => unexpected(&other),
    }
}
