//! The HTTP API (issue 15) driven by a real HTTP client (reqwest over rustls) against a
//! 3-node in-process cluster: values, siblings as `300 Multiple Choices`, contexts, `404` with a
//! context, `ETag`/`If-None-Match`, batches, a watch that wakes on a write, key listing, bucket
//! and cluster endpoints, certificate roles, malformed requests, and the Prometheus text.
//!
//! Everything goes through HTTPS with the cluster CA, to the name `node.dynamo` resolved to
//! 127.0.0.1, as `curl --resolve` does.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dynamo_client::ca::ClusterCa;
use dynamo_client::tls::{Role, TlsConfig};
use dynamo_node::NodeConfig;
use dynamo_tests::{TestCluster, tls_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn with_http(config: &mut NodeConfig) {
    config.http_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.http_limits.max_body_bytes = 2 * 1024 * 1024;
}

/// An HTTP client presenting `tls`'s identity.
fn http_client(tls: &TlsConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.https_client_config())
        .resolve("node.dynamo", SocketAddr::from(([127, 0, 0, 1], 0)))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

struct Http {
    cluster: TestCluster,
    admin: reqwest::Client,
}

impl Http {
    async fn start() -> Http {
        let cluster = TestCluster::start_with(3, with_http).await;
        let admin = http_client(&tls_for(&cluster.certs_dir(), "tester"));
        Http { cluster, admin }
    }

    /// The API base URL of node `index`.
    fn url(&self, index: usize, path: &str) -> String {
        let node = self.cluster.nodes[index].as_ref().expect("running");
        let port = node.http_address().expect("HTTP API").port();
        format!("https://node.dynamo:{port}{path}")
    }
}

/// POSTs `body` as JSON and returns the JSON answer.
async fn post_json(client: &reqwest::Client, url: impl reqwest::IntoUrl, body: Value) -> Value {
    client
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("a JSON answer")
}

/// The `status` of each result of a batch answer.
fn statuses_of(answer: &Value) -> Vec<&str> {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .collect()
}

fn context_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-dynamo-context")
        .and_then(|v| v.to_str().ok())
        .expect("context header")
        .to_owned()
}

async fn error_kind(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON error body");
    (
        status,
        body["error"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Paper 4.4 over HTTP: a read returns the context, a write with it supersedes what was read,
/// blind concurrent writes become siblings answered `300 Multiple Choices`, a missing key is a
/// `404` that still carries a context, and `If-None-Match` answers `304`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_values_contexts_and_siblings() {
    let http = Http::start().await;
    let key = http.url(0, "/buckets/default/keys/cart-1");

    let missing = http.admin.get(&key).send().await.expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let (_, kind, _) = error_kind(missing).await;
    assert_eq!(kind, "not_found");

    // Two blind writes through two nodes: concurrent versions, both kept (paper 4.4).
    for (node, value) in [(0, "book"), (1, "pen")] {
        let url = http.url(node, "/buckets/default/keys/cart-1");
        let put = http.admin.put(&url).body(value).send().await.expect("put");
        assert_eq!(put.status(), StatusCode::OK, "{:?}", put.text().await);
    }
    let siblings = http.admin.get(&key).send().await.expect("get");
    assert_eq!(siblings.status(), StatusCode::MULTIPLE_CHOICES);
    let content_type = siblings.headers()["content-type"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(
        content_type.starts_with("multipart/mixed; boundary="),
        "{content_type}"
    );
    let context = context_of(&siblings);
    let body = siblings.text().await.expect("body");
    assert!(body.contains("book") && body.contains("pen"), "{body}");

    let as_json: Value = http
        .admin
        .get(&key)
        .header("accept", "application/json")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("JSON");
    let values: BTreeSet<&str> = as_json["siblings"]
        .as_array()
        .expect("siblings")
        .iter()
        .map(|s| s["value"].as_str().expect("text"))
        .collect();
    assert_eq!(values, BTreeSet::from(["book", "pen"]));

    // The client reconciles and writes with the context: one value remains.
    let put = http
        .admin
        .put(&key)
        .header("x-dynamo-context", &context)
        .body("book,pen")
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), StatusCode::OK);
    let written: Value = put.json().await.expect("JSON");
    assert!(written["acknowledged"].as_u64().expect("acks") >= 2);
    let one = http.admin.get(&key).send().await.expect("get");
    assert_eq!(one.status(), StatusCode::OK);
    let etag = one.headers()["etag"].to_str().expect("etag").to_owned();
    let context = context_of(&one);
    assert_eq!(one.text().await.expect("body"), "book,pen");

    let unchanged = http
        .admin
        .get(&key)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("get");
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    // A delete with the context; the key is then a 404 whose context supersedes the tombstone.
    let delete = http
        .admin
        .delete(&key)
        .header("x-dynamo-context", &context)
        .send()
        .await
        .expect("delete");
    assert_eq!(delete.status(), StatusCode::OK);
    let gone = http.admin.get(&key).send().await.expect("get");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert!(!context_of(&gone).is_empty(), "a tombstone's context");

    // Issue 26: a delete without a context answered 200 and the value stayed readable (each
    // such delete added one more tombstone sibling). It deletes what a read sees, siblings
    // too, alone and in a batch.
    for (name, batch) in [("cart-2", false), ("cart-3", true)] {
        let url = http.url(0, &format!("/buckets/default/keys/{name}"));
        for value in ["kibble", "toy"] {
            let put = http.admin.put(&url).body(value).send().await.expect("put");
            assert_eq!(put.status(), StatusCode::OK);
        }
        if batch {
            let answer = post_json(
                &http.admin,
                http.url(0, "/buckets/default/batch/put"),
                json!({"items": [{"key": name, "delete": true}]}),
            )
            .await;
            assert_eq!(statuses_of(&answer), ["ok"], "{answer}");
        } else {
            let delete = http.admin.delete(&url).send().await.expect("delete");
            assert_eq!(delete.status(), StatusCode::OK);
        }
        let gone = http.admin.get(&url).send().await.expect("get");
        assert_eq!(
            gone.status(),
            StatusCode::NOT_FOUND,
            "{name} after a delete"
        );
    }

    // HTTP/2 is negotiated by ALPN; an HTTP/1.1-only client is served too.
    let h2 = http
        .admin
        .get(http.url(2, "/ping"))
        .send()
        .await
        .expect("ping");
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::Client::builder()
        .use_preconfigured_tls({
            let mut tls = tls_for(&http.cluster.certs_dir(), "tester").https_client_config();
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            tls
        })
        .resolve("node.dynamo", SocketAddr::from(([127, 0, 0, 1], 0)))
        .http1_only()
        .build()
        .expect("client");
    let ping = h1.get(http.url(2, "/ping")).send().await.expect("ping");
    assert_eq!(ping.version(), reqwest::Version::HTTP_11);
    assert_eq!(ping.text().await.expect("body"), "OK\n");
    http.cluster.shutdown().await;
}

/// Batches, the watch long poll (returns as soon as the key has a version the context has not
/// seen, `304` when the time runs out), and listing every key of a bucket page by page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_watch_and_listing() {
    let http = Http::start().await;
    let create = http
        .admin
        .post(http.url(0, "/buckets"))
        .json(&json!({"name": "carts", "n": 3, "r": 2, "w": 2}))
        .send()
        .await
        .expect("create bucket");
    assert_eq!(
        create.status(),
        StatusCode::CREATED,
        "{:?}",
        create.text().await
    );

    let items: Vec<Value> = (0..30)
        .map(|i| json!({"key": format!("user-{i:02}"), "value": format!("cart {i}")}))
        .collect();
    let batch = post_json(
        &http.admin,
        http.url(1, "/buckets/carts/batch/put"),
        json!({ "items": items }),
    )
    .await;
    let results = batch["results"].as_array().expect("results");
    assert_eq!(results.len(), 30);
    assert!(results.iter().all(|r| r["status"] == "ok"), "{batch}");

    let read = post_json(&http.admin, http.url(2, "/buckets/carts/batch/get"), json!({"keys": [{"key": "user-03"}, {"key": "nobody"}, {"key_base64": "dXNlci0wNA=="}, {}]})).await;
    let statuses = statuses_of(&read);
    assert_eq!(statuses, ["ok", "not_found", "ok", "bad_request"], "{read}");
    assert_eq!(read["results"][0]["read"]["siblings"][0]["value"], "cart 3");
    assert_eq!(read["results"][2]["read"]["siblings"][0]["value"], "cart 4");

    // A key named twice is refused; an answer past max_body_bytes (2 MiB here) of values
    // answers the keys beyond it "too_large" instead of growing without bound.
    let twice = http
        .admin
        .post(http.url(0, "/buckets/carts/batch/get"))
        .json(&json!({"keys": [{"key": "user-01"}, {"key_base64": "dXNlci0wMQ=="}]}))
        .send()
        .await
        .expect("batch get");
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    let big: Vec<Value> = (0..3)
        .map(|i| json!({"key": format!("big-{i}"), "value": "x".repeat(900 * 1024)}))
        .collect();
    for item in big {
        let stored = post_json(
            &http.admin,
            http.url(0, "/buckets/carts/batch/put"),
            json!({ "items": [item] }),
        )
        .await;
        assert_eq!(stored["results"][0]["status"], "ok", "{stored}");
    }
    let read = post_json(
        &http.admin,
        http.url(0, "/buckets/carts/batch/get"),
        json!({"keys": [{"key": "big-0"}, {"key": "big-1"}, {"key": "big-2"}]}),
    )
    .await;
    let statuses = statuses_of(&read);
    assert_eq!(
        statuses.iter().filter(|s| **s == "ok").count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "too_large").count(),
        1,
        "{statuses:?}"
    );

    // Listing: pages of 7 until no cursor; every key exactly once.
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            Some(cursor) => http.url(0, &format!("/buckets/carts/keys?limit=7&cursor={cursor}")),
            None => http.url(0, "/buckets/carts/keys?limit=7"),
        };
        let page: Value = http
            .admin
            .get(&url)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("JSON");
        let keys = page["keys"].as_array().expect("keys");
        assert!(keys.len() <= 7, "{page}");
        listed.extend(
            keys.iter()
                .map(|k| k["key"].as_str().expect("key").to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..30).map(|i| format!("user-{i:02}")).collect();
    expected.extend((0..3).map(|i| format!("big-{i}")));
    expected.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "each key once, none missing");

    // A watch that times out answers 304 with the context it was given.
    let key = http.url(0, "/buckets/carts/keys/user-05");
    let current = http.admin.get(&key).send().await.expect("get");
    let context = context_of(&current);
    let started = Instant::now();
    let quiet = http
        .admin
        .get(format!("{key}?watch={context}&timeout=700ms"))
        .send()
        .await
        .expect("watch");
    assert_eq!(quiet.status(), StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_millis(600));

    // A watch wakes on a write made through another node.
    let watcher = {
        let client = http.admin.clone();
        let url = format!("{key}?watch={context}&timeout=20s");
        tokio::spawn(async move {
            let started = Instant::now();
            let response = client.get(url).send().await.expect("watch");
            (
                started.elapsed(),
                response.status(),
                response.text().await.expect("body"),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let put = http
        .admin
        .put(http.url(2, "/buckets/carts/keys/user-05"))
        .header("x-dynamo-context", &context)
        .body("cart 5, and a toy")
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), StatusCode::OK);
    let (waited, status, body) = watcher.await.expect("watcher");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "cart 5, and a toy");
    assert!(waited < Duration::from_secs(5), "woke after {waited:?}");
    http.cluster.shutdown().await;
}

/// Certificates decide who may do what, as on QUIC; malformed requests get a 4xx JSON error
/// and the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_malformed_requests() {
    let http = Http::start().await;
    let reader = http_client(&http.cluster.tls_as(Role::ReadOnly, "dashboard"));
    let app = http_client(&http.cluster.tls_as(Role::Client, "shop"));
    let key = http.url(0, "/buckets/default/keys/k");

    // (client, method, path, body, expected status, expected error kind)
    let refused = [
        (
            &reader,
            "PUT",
            key.clone(),
            "v",
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &app,
            "POST",
            http.url(0, "/buckets"),
            r#"{"name":"x"}"#,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            &app,
            "GET",
            http.url(0, "/buckets/default/keys/k?r=9"),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &app,
            "GET",
            http.url(0, "/buckets/default/keys/k?timeout=soon"),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &app,
            "GET",
            http.url(0, "/buckets/Not_Valid/keys/k"),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &app,
            "GET",
            http.url(0, "/buckets/default/keys/k?watch=garbage"),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (&app, "PUT", key.clone(), "", StatusCode::OK, ""),
        (
            &app,
            "POST",
            http.url(0, "/buckets/default/batch/get"),
            "{not json",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &app,
            "POST",
            http.url(0, "/buckets/default/batch/get"),
            r#"{"keys": []}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &app,
            "GET",
            http.url(0, "/buckets/default/keys?cursor=no!such!cursor"),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &app,
            "GET",
            http.url(0, "/buckets/default/keys?cursor=_wc"),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &app,
            "GET",
            http.url(0, "/buckets/default/keys?limit=5000"),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &app,
            "GET",
            http.url(0, "/buckets/nobucket/keys"),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &app,
            "GET",
            http.url(0, "/no/such/endpoint"),
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (client, method, url, body, status, kind) in refused {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = client
            .request(method.clone(), &url)
            .header("x-dynamo-context", "")
            .body(body)
            .send()
            .await
            .expect("answered");
        if kind.is_empty() {
            assert_eq!(response.status(), status, "{method} {url}");
            continue;
        }
        let (got, got_kind, message) = error_kind(response).await;
        assert_eq!(
            (got, got_kind.as_str()),
            (status, kind),
            "{method} {url}: {message}"
        );
        assert!(!message.is_empty());
    }

    // A wrong context is refused by the core with the CLI's message.
    let wrong = app
        .put(&key)
        .header("x-dynamo-context", "not-a-context")
        .body("v")
        .send()
        .await
        .expect("put");
    assert_eq!(error_kind(wrong).await.0, StatusCode::BAD_REQUEST);

    // A body over the limit is refused before it is read whole.
    let huge = app
        .put(&key)
        .body(vec![b'x'; 3 * 1024 * 1024])
        .send()
        .await
        .expect("answered");
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // No certificate, or one from another cluster's CA: the handshake fails.
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(rustls_client_without_certificate(&http.cluster.certs_dir()))
        .resolve("node.dynamo", SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .expect("client");
    assert!(anonymous.get(http.url(0, "/ping")).send().await.is_err());
    let stranger_ca = ClusterCa::generate("elsewhere").expect("CA");
    let stranger = TlsConfig::new(
        stranger_ca.cert_pem(),
        &stranger_ca.issue(Role::Admin, "mallory").expect("identity"),
    )
    .expect("TLS");
    assert!(
        http_client(&stranger)
            .get(http.url(0, "/ping"))
            .send()
            .await
            .is_err()
    );

    // Still serving, and the read-only role may read.
    let ping = reader.get(http.url(0, "/ping")).send().await.expect("ping");
    assert_eq!(ping.status(), StatusCode::OK);
    let status: Value = reader
        .get(http.url(1, "/cluster/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["members"].as_array().expect("members").len(), 3);
    http.cluster.shutdown().await;
}

fn with_tight_http_limits(config: &mut NodeConfig) {
    with_http(config);
    config.http_limits.max_handshakes_per_address = 4;
    config.http_limits.handshake_timeout_ms = 500;
}

/// What a client can make the HTTP side hold is bounded: connections that never finish a
/// handshake are dropped after `handshake_timeout_ms`, one address holds no more than
/// `max_handshakes_per_address` of them, and garbage instead of TLS costs only its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_garbage_connections_are_bounded() {
    use tokio::io::AsyncWriteExt;
    let cluster = TestCluster::start_with(1, with_tight_http_limits).await;
    let admin = http_client(&tls_for(&cluster.certs_dir(), "tester"));
    let address = cluster.nodes[0]
        .as_ref()
        .and_then(dynamo_node::Node::http_address)
        .expect("HTTP API");
    let url = format!("https://node.dynamo:{}/ping", address.port());

    let mut garbage = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff not TLS at all")
        .await
        .expect("write");
    // Four idle connections fill the address's handshakes: a fifth is turned away at once.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(
            tokio::net::TcpStream::connect(address)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = http_client(&tls_for(&cluster.certs_dir(), "tester"));
    assert!(
        fresh.get(&url).send().await.is_err(),
        "over the connection limit"
    );
    // Their handshakes time out, the slots come back, and the node serves again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ping = admin
        .get(&url)
        .send()
        .await
        .expect("served after the idle ones were dropped");
    assert_eq!(ping.status(), StatusCode::OK);
    drop(idle);
    drop(garbage);
    cluster.shutdown().await;
}

fn with_small_http_budgets(config: &mut NodeConfig) {
    with_http(config);
    config.http_limits.max_body_bytes = 1024 * 1024;
    config.http_limits.max_body_bytes_in_flight = 1536 * 1024;
    config.http_limits.max_connections_per_identity = 2;
    config.http_limits.body_timeout_ms = 1_500;
}

/// One identity cannot take every connection, and slow uploads cannot make the node buffer
/// more than `max_body_bytes_in_flight`: a body is reserved before it is read, a request that
/// does not fit is answered 429 at once, and a body that does not arrive within
/// `body_timeout_ms` is answered 408 and frees its reservation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_identity_and_body_bytes_are_bounded() {
    let cluster = TestCluster::start_with(1, with_small_http_budgets).await;
    let address = cluster.nodes[0]
        .as_ref()
        .and_then(dynamo_node::Node::http_address)
        .expect("HTTP API");
    let url = |path: &str| format!("https://node.dynamo:{}{path}", address.port());
    let tester = tls_for(&cluster.certs_dir(), "tester");

    // Two connections of one identity are held (each client keeps its own); a third is refused
    // while another identity is still served.
    let first = http_client(&tester);
    let second = http_client(&tester);
    for client in [&first, &second] {
        assert_eq!(
            client
                .get(url("/ping"))
                .send()
                .await
                .expect("ping")
                .status(),
            StatusCode::OK
        );
    }
    assert!(
        http_client(&tester).get(url("/ping")).send().await.is_err(),
        "a third connection"
    );
    let other = http_client(&cluster.tls_as(Role::Client, "shop"));
    assert_eq!(
        other.get(url("/ping")).send().await.expect("ping").status(),
        StatusCode::OK
    );
    let solo = first
        .post(url("/buckets"))
        .body(r#"{"name": "solo", "n": 1, "r": 1, "w": 1}"#)
        .send()
        .await
        .expect("create bucket");
    assert_eq!(solo.status(), StatusCode::CREATED);

    // A slow upload declares 1,000,000 bytes and sends three: they are reserved.
    let mut uploader = cluster
        .tls_as(Role::Client, "uploader")
        .https_client_config();
    uploader.alpn_protocols = vec![b"http/1.1".to_vec()];
    let slow = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let tcp = std::net::TcpStream::connect(address).expect("connect");
        let name = rustls::pki_types::ServerName::try_from("node.dynamo").expect("name");
        let connection =
            rustls::ClientConnection::new(std::sync::Arc::new(uploader), name).expect("TLS");
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        stream
            .write_all(
                b"PUT /buckets/default/keys/slow HTTP/1.1\r\nHost: node.dynamo\r\nContent-Length: 1000000\r\n\r\nabc",
            )
            .expect("write");
        stream.flush().expect("flush");
        stream
    })
    .await
    .expect("slow upload");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let big = vec![b'x'; 600 * 1024];
    let refused = other
        .put(url("/buckets/solo/keys/big"))
        .body(big.clone())
        .send()
        .await
        .expect("answered");
    let (status, kind, _) = error_kind(refused).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "overloaded")
    );
    // The slow upload runs out of time: it is answered 408 and its reservation goes back.
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut slow = slow;
        let mut answer = Vec::new();
        let _ = slow.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .expect("slow upload's answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let stored = other
        .put(url("/buckets/solo/keys/big"))
        .body(big)
        .send()
        .await
        .expect("answered");
    assert_eq!(stored.status(), StatusCode::OK);
    cluster.shutdown().await;
}

/// A rustls client that trusts the cluster CA but has no certificate of its own.
fn rustls_client_without_certificate(certs: &std::path::Path) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(certs.join("ca.pem")).expect("CA certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem).expect("PEM"))
        .expect("root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// `/metrics` is Prometheus (`OpenMetrics`) text with the names operators look for; the cluster
/// endpoints and the status page answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cluster_endpoints_and_the_status_page() {
    let http = Http::start().await;
    for i in 0..5 {
        let url = http.url(0, &format!("/buckets/default/keys/m{i}"));
        http.admin.put(&url).body("v").send().await.expect("put");
        http.admin.get(&url).send().await.expect("get");
    }
    let text = http
        .admin
        .get(http.url(0, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .expect("a sample is `name{labels} value`");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().expect("name");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line}"
        );
        names.insert(name.to_owned());
    }
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    for expected in [
        "dynamo_requests_total",
        "dynamo_request_duration_seconds_bucket",
        "dynamo_read_siblings_bucket",
        "dynamo_read_repairs_total",
        "dynamo_quorum_failures_total",
        "dynamo_hints_pending",
        "dynamo_hints_stored_total",
        "dynamo_hints_delivered_total",
        "dynamo_handoff_queued",
        "dynamo_handoff_running",
        "dynamo_anti_entropy_repaired_keys_total",
        "dynamo_anti_entropy_moved_bytes_total",
        "dynamo_members_up",
        "dynamo_members_down",
        "dynamo_member_phi",
        "dynamo_store_size_bytes",
        "dynamo_connections",
        "dynamo_requests_in_flight",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from /metrics:\n{text}"
        );
    }
    assert!(
        text.contains(r#"dynamo_requests_total{operation="put",outcome="ok"} 5"#),
        "five puts counted:\n{text}"
    );

    let ring: Value = http
        .admin
        .get(http.url(1, "/cluster/ring"))
        .send()
        .await
        .expect("ring")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ring["partitions"], 64);
    assert_eq!(ring["owners"].as_array().expect("owners").len(), 64);
    let placement: Value = http
        .admin
        .get(http.url(1, "/cluster/placement?bucket=default&key=m1"))
        .send()
        .await
        .expect("placement")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        placement["preference_list"].as_array().expect("list").len(),
        3
    );
    let stats: Value = http
        .admin
        .get(http.url(0, "/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("JSON");
    assert_eq!(stats["operations"]["put"]["count"], 5);

    let page = http.admin.get(http.url(2, "/")).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("HTML");
    for member in ["node-1", "node-2", "node-3"] {
        assert!(
            html.contains(member),
            "the server-rendered table names {member}"
        );
    }
    for asset in ["/page/app.js", "/page/style.css"] {
        let response = http
            .admin
            .get(http.url(2, asset))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
    }
    http.cluster.shutdown().await;
}

/// Issue 28: a response larger than one TCP segment, sent while the client's acknowledgement
/// of the previous segment is delayed, waits 40 ms under Nagle's algorithm. With 64 KiB values
/// that stall hits every request on a kept-alive connection without `TCP_NODELAY` (median 43 ms
/// measured; 1-2 ms with it), so the median shows it where a p99.9 of a few requests would only
/// flake on a busy machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_are_not_held_back_by_nagle() {
    let http = Http::start().await;
    let key = http.url(0, "/buckets/default/keys/large");
    let put = http.admin.put(&key).body(vec![7u8; 64 * 1024]).send().await;
    assert!(put.expect("put").status().is_success());
    let mut latencies = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        let response = http.admin.get(&key).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.bytes().await.expect("body").len(), 64 * 1024);
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "median GET of 64 KiB took {median:?} (all: {latencies:?}): is TCP_NODELAY set?"
    );
    http.cluster.shutdown().await;
}
