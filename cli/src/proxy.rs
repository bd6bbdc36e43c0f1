//! `dynamo proxy`: one node's HTTP API on a loopback address, without TLS, authenticated to the
//! node with the operator's certificate (as `kubectl proxy` does), so that a browser, which has
//! no cluster certificate, can open the status page and scripts can use plain `http://`.
//!
//! It listens on loopback only: whoever reaches it acts with the operator's certificate. So it
//! also refuses what a browser sends on behalf of another site: a `Host` other than its own
//! address (DNS rebinding), and an `Origin` or `Sec-Fetch-Site` of another site (cross-site
//! request forgery). It must not know the API: it forwards the method, path, query, headers and
//! body as they are.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dynamo_client::tls::{NODE_SERVER_NAME, TlsConfig};

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
    /// The `Host` values a request to the proxy itself carries (`127.0.0.1:PORT`,
    /// `localhost:PORT`); anything else came through a name that only resolves here (DNS
    /// rebinding).
    hosts: Vec<String>,
}

impl Target {
    /// Why a request must not be forwarded, if it must not: a browser tab of another site
    /// (cross-site request forgery) or a name rebound to this address must not act with the
    /// operator's certificate.
    fn refuse(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        let text = |name: HeaderName| {
            headers
                .get(name)
                .map(|v| v.to_str().unwrap_or("(not text)").to_owned())
        };
        let host = text(header::HOST).unwrap_or_default();
        if !self.hosts.contains(&host) {
            return Some(format!(
                "the proxy answers requests to {} only, not to Host {host:?}",
                self.hosts.join(" or ")
            ));
        }
        if let Some(origin) = text(header::ORIGIN)
            && origin != format!("http://{host}")
        {
            return Some(format!(
                "a page from {origin} may not use the proxy: it acts with your certificate"
            ));
        }
        if text(HeaderName::from_static("sec-fetch-site")).as_deref() == Some("cross-site") {
            return Some("a page of another site may not use the proxy".to_owned());
        }
        None
    }
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
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener
        .local_addr()
        .context("reading the listen address")?;
    let target = Arc::new(Target {
        client,
        base: format!("https://{NODE_SERVER_NAME}:{}", node.port()),
        hosts: vec![address.to_string(), format!("localhost:{}", address.port())],
    });
    let app = axum::Router::new().fallback(forward).with_state(target);
    eprintln!(
        "proxying http://{address}/ to the HTTP API of {node} as {}; open http://{address}/ in a browser. Ctrl-C stops it.",
        tls.identity()
    );
    // TCP_NODELAY on every browser connection, as the node's API does (issue 28).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(super::wait_for_signal())
        .await
        .context("serving the proxy")
}

async fn forward(State(target): State<Arc<Target>>, request: Request) -> Response {
    if let Some(reason) = target.refuse(request.headers()) {
        return (StatusCode::FORBIDDEN, format!("{reason}\n")).into_response();
    }
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
