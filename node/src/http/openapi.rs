//! The HTTP API's `OpenAPI` 3.1 description, derived from the handlers' `#[utoipa::path]`
//! attributes and the JSON types' `ToSchema` derives, served at `GET /openapi.json` and
//! checked in as `docs/openapi.json` (a test fails when the two differ, and the test command
//! fuzzes the running API from it with schemathesis).
//!
//! This module must not describe anything the handlers do not do: it only gathers what they
//! declare.

use axum::Json;
use axum::response::{IntoResponse, Response as HttpResponse};
use utoipa::OpenApi;

use super::api::ErrorBody;

/// The errors every endpoint that asks the cluster may answer with, as JSON
/// ([`ErrorBody`]).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(super) enum Errors {
    /// The request is malformed, or names something that does not exist.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The certificate's role does not allow the request.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// A request body did not arrive within the node's body timeout.
    #[response(status = 408)]
    BodyTimeout(ErrorBody),
    /// A request body is larger than the node takes (`max_body_bytes`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The node or the client has too much in flight; retry later.
    #[response(status = 429)]
    Overloaded(ErrorBody),
    /// Too few replicas could answer, or the node is not ready.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// The replicas did not answer in time.
    #[response(status = 504)]
    Timeout(ErrorBody),
}

/// The description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "dynamo HTTP API",
        description = "A Dynamo-style key-value store (DeCandia et al. 2007). Every request needs a client certificate of the cluster CA; its role decides what the request may do.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::api::get_key,
        super::api::put_key,
        super::api::delete_key,
        super::listing::list_keys,
        super::batch::batch_get,
        super::batch::batch_put,
        super::cluster::list_buckets,
        super::cluster::create_bucket,
        super::cluster::cluster_status,
        super::cluster::cluster_ring,
        super::cluster::placement,
        super::cluster::ping,
        super::cluster::stats,
        super::cluster::metrics,
        openapi_json,
    ),
    tags(
        (name = "keys", description = "Reading and writing keys (paper 4.4, 4.5)"),
        (name = "buckets", description = "Buckets: namespaces with their own N, R, W and resolver"),
        (name = "cluster", description = "Membership, the ring, health and metrics"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`: this description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "cluster",
    responses((status = 200, description = "The OpenAPI description of this API", content_type = "application/json", body = Object))
)]
pub(super) async fn openapi_json() -> HttpResponse {
    Json(ApiDoc::openapi()).into_response()
}

/// The description as pretty JSON, as `docs/openapi.json` holds it.
pub fn openapi_pretty_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}

#[cfg(test)]
mod tests {
    /// `docs/openapi.json` is the description the code generates: an API change without the
    /// file regenerated (`DYNAMO_UPDATE_OPENAPI=1 cargo test -p dynamo-node openapi`) fails here.
    #[test]
    fn the_checked_in_description_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let generated = super::openapi_pretty_json() + "\n";
        if std::env::var_os("DYNAMO_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json differs from what the code describes; regenerate it with \
             DYNAMO_UPDATE_OPENAPI=1 cargo test -p dynamo-node openapi"
        );
    }
}
