//! `dynamo proxy`: one node's HTTP API on a loopback address, without TLS, authenticated to the
//! node with the operator's certificate (as `kubectl proxy` does), so that a browser, which has
//! no cluster certificate, can open the status page and scripts can use plain `http://`.
//!
//! It listens on loopback only: whoever reaches it acts with the operator's certificate. It
//! must not know the API: it forwards the method, path, query, headers and body as they are.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dynamo_node::tls::{NODE_SERVER_NAME, TlsConfig};

/// Largest request body forwarded (the node's own limit applies after).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Longest a forwarded request may take (a watch waits up to a minute).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(90);

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::HOST,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
];

struct Target {
    client: reqwest::Client,
    base: String,
}

/// Serves on `listen` (a loopback address) until Ctrl-C, forwarding to the node at `node`.
pub(crate) async fn run(tls: &TlsConfig, node: SocketAddr, listen: SocketAddr) -> Result<()> {
    if !listen.ip().is_loopback() {
        bail!(
            "the proxy acts with your certificate, so it listens on a loopback address only (127.0.0.1 or ::1), not {listen}"
        );
    }
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls.https_client_config())
        .resolve(NODE_SERVER_NAME, node)
        .timeout(FORWARD_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let target = Arc::new(Target {
        client,
        base: format!("https://{NODE_SERVER_NAME}:{}", node.port()),
    });
    let app = axum::Router::new().fallback(forward).with_state(target);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener
        .local_addr()
        .context("reading the listen address")?;
    eprintln!(
        "proxying http://{address}/ to the HTTP API of {node} as {}; open http://{address}/ in a browser. Ctrl-C stops it.",
        tls.identity()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(super::wait_for_signal())
        .await
        .context("serving the proxy")
}

async fn forward(State(target): State<Arc<Target>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("{error}\n")).into_response();
        }
    };
    let mut outgoing = target
        .client
        .request(parts.method, format!("{}{path}", target.base))
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(error) => {
            let message = format!("the node did not answer the proxy: {error}\n");
            return (StatusCode::BAD_GATEWAY, message).into_response();
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => {
            let message = format!("the node's answer broke off: {error}\n");
            return (StatusCode::BAD_GATEWAY, message).into_response();
        }
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}
