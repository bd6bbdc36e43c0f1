//! Real QUIC on 127.0.0.1: mutual TLS against the cluster CA, framing limits, timeouts.
//!
//! Dynamo §5 ("Implementation") describes the request coordination component as built on a
//! messaging substrate; these tests check ours: typed request/response over authenticated
//! connections, with the refusals and time bounds that §4.8's failure detection relies on
//! ("node A may consider node B failed if node B does not respond to node A's messages").

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dynamo_client::ca::ClusterCa;
use dynamo_client::tls::{ALPN, Identity, PeerIdentity, Role, TlsConfig, TlsError};
use dynamo_client::transport::{
    Endpoint, STREAM_MALFORMED, STREAM_READ_TIMEOUT, STREAM_TOO_LARGE, STREAM_TRUNCATED,
    TransportError, TransportOptions,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Req {
    Echo(String),
    SleepMs(u64),
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Resp {
    Echo { from: String, text: String },
    Slept,
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn options() -> TransportOptions {
    TransportOptions {
        read_timeout: Duration::from_secs(2),
        shutdown_timeout: Duration::from_millis(200),
        ..TransportOptions::default()
    }
}

fn tls(ca: &ClusterCa, role: Role, name: &str) -> TlsConfig {
    let identity = ca.issue(role, name).expect("issue identity");
    TlsConfig::new(ca.cert_pem(), &identity).expect("tls config")
}

/// A node serving `Req`, counting handler calls in `calls`.
fn start_node(ca: &ClusterCa, name: &str, calls: &Arc<AtomicUsize>) -> (Endpoint, SocketAddr) {
    start_node_with(ca, name, calls, options())
}

fn start_node_with(
    ca: &ClusterCa,
    name: &str,
    calls: &Arc<AtomicUsize>,
    options: TransportOptions,
) -> (Endpoint, SocketAddr) {
    let endpoint =
        Endpoint::bind(localhost(), &tls(ca, Role::Node, name), options).expect("bind node");
    let calls = calls.clone();
    endpoint.serve(move |peer: PeerIdentity, req: Req| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            match req {
                Req::Echo(text) => Resp::Echo {
                    from: peer.to_string(),
                    text,
                },
                Req::SleepMs(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Resp::Slept
                }
            }
        }
    });
    let addr = endpoint.local_addr().expect("local addr");
    (endpoint, addr)
}

/// A CA, a handler-call counter, and node "n" of that CA serving the test handler.
fn one_node() -> (ClusterCa, Arc<AtomicUsize>, Endpoint, SocketAddr) {
    let ca = ClusterCa::generate("test").expect("ca");
    let calls = Arc::new(AtomicUsize::new(0));
    let (node, addr) = start_node(&ca, "n", &calls);
    (ca, calls, node, addr)
}

fn client(ca: &ClusterCa, name: &str) -> Endpoint {
    Endpoint::bind(localhost(), &tls(ca, Role::Client, name), options()).expect("bind client")
}

async fn echo(endpoint: &Endpoint, addr: SocketAddr, text: &str) -> Result<Resp, TransportError> {
    endpoint
        .request(addr, &Req::Echo(text.to_owned()), TIMEOUT)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_between_nodes_and_from_a_client() {
    let ca = ClusterCa::generate("test").expect("ca");
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, a_addr) = start_node(&ca, "a", &calls);
    let (b, b_addr) = start_node(&ca, "b", &calls);
    let c = client(&ca, "c");

    let cases: [(&Endpoint, SocketAddr, &str); 3] = [
        (&a, b_addr, "a.node.dynamo"),
        (&b, a_addr, "b.node.dynamo"),
        (&c, a_addr, "c.client.dynamo"),
    ];
    for (from, to, identity) in cases {
        let resp = echo(from, to, "hello").await.expect("request");
        assert_eq!(
            resp,
            Resp::Echo {
                from: identity.to_owned(),
                text: "hello".to_owned()
            }
        );
    }
    // A frame much larger than one QUIC packet arrives whole, both ways.
    let big = "x".repeat(1 << 20);
    let resp = echo(&c, b_addr, &big).await.expect("large request");
    assert!(matches!(resp, Resp::Echo { text, .. } if text == big));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    for endpoint in [&a, &b, &c] {
        endpoint.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_talking_both_ways_share_one_connection() {
    let ca = ClusterCa::generate("test").expect("ca");
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, a_addr) = start_node(&ca, "a", &calls);
    let (b, b_addr) = start_node(&ca, "b", &calls);
    for round in 0..3 {
        let to_b = echo(&a, b_addr, "ping").await.expect("a -> b");
        let to_a = echo(&b, a_addr, "pong").await.expect("b -> a");
        assert!(matches!(to_b, Resp::Echo { from, .. } if from == "a.node.dynamo"));
        assert!(matches!(to_a, Resp::Echo { from, .. } if from == "b.node.dynamo"));
        assert_eq!(a.open_connections(), 1, "round {round}");
        assert_eq!(b.open_connections(), 1, "round {round}");
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_dials_before_serving_still_answers_on_that_connection() {
    let ca = ClusterCa::generate("test").expect("ca");
    let calls = Arc::new(AtomicUsize::new(0));
    let (b, b_addr) = start_node(&ca, "b", &calls);
    let a = Endpoint::bind(localhost(), &tls(&ca, Role::Node, "a"), options()).expect("bind a");
    let a_addr = a.local_addr().expect("addr");
    assert!(echo(&a, b_addr, "before serving").await.is_ok());
    a.serve(|peer: PeerIdentity, _req: Req| async move {
        Resp::Echo {
            from: peer.to_string(),
            text: "late".to_owned(),
        }
    });
    // b reuses the connection a dialed; a must accept the stream b opens on it.
    let resp = echo(&b, a_addr, "after").await.expect("b -> a");
    assert_eq!(
        resp,
        Resp::Echo {
            from: "b.node.dynamo".to_owned(),
            text: "late".to_owned()
        }
    );
    assert_eq!(b.open_connections(), 1);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_connection() {
    let (ca, calls, node, addr) = one_node();
    let c = client(&ca, "c");

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let c = c.clone();
        tasks.spawn(async move { (i, echo(&c, addr, &i.to_string()).await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, resp) = joined.expect("task");
        match resp.expect("request") {
            Resp::Echo { text, .. } => assert_eq!(text, i.to_string()),
            Resp::Slept => panic!("wrong response"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 200);
    assert_eq!(c.open_connections(), 1, "one cached connection per peer");
    c.close().await;
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_another_ca_is_refused() {
    let ca = ClusterCa::generate("test").expect("ca");
    let other = ClusterCa::generate("other").expect("other ca");
    let calls = Arc::new(AtomicUsize::new(0));
    let (node, addr) = start_node(&ca, "n", &calls);

    // Trusts the real CA (so it accepts the node) but presents a foreign certificate.
    for role in [Role::Client, Role::Node] {
        let rogue = other.issue(role, "mallory").expect("issue");
        let tls = TlsConfig::new(ca.cert_pem(), &rogue).expect("tls");
        let endpoint = Endpoint::bind(localhost(), &tls, options()).expect("bind");
        let result = echo(&endpoint, addr, "let me in").await;
        assert!(
            matches!(
                result,
                Err(TransportError::Connect { .. } | TransportError::Closed { .. })
            ),
            "{result:?}"
        );
        endpoint.close().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "handler never called");
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused() {
    let (ca, calls, node, addr) = one_node();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("pem"))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(config).expect("quic");
    let mut endpoint = quinn::Endpoint::client(localhost()).expect("client endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));

    // TLS 1.3 lets the client finish its side of the handshake before the server has checked
    // the (missing) client certificate, so the refusal may surface at any step below.
    let attempt = async {
        let connection = endpoint
            .connect(addr, "node.dynamo")
            .expect("connect")
            .await
            .map_err(|e| e.to_string())?;
        let lost = || {
            connection
                .close_reason()
                .map_or_else(|| "not closed".to_owned(), |e| e.to_string())
        };
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        let frame = frame(&Req::Echo("anonymous".to_owned()));
        send.write_all(&frame).await.map_err(|_| lost())?;
        send.finish().map_err(|_| lost())?;
        recv.read_to_end(1024).await.map_err(|_| lost())
    };
    let result = tokio::time::timeout(TIMEOUT, attempt)
        .await
        .expect("refused promptly, not hanging");
    let error = result.expect_err("must be refused");
    assert!(
        error.contains("handshake failed") && error.contains("116"),
        "expected a certificate_required (116) alert, got {error}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "handler never called");
    node.close().await;
}

/// A well-formed request frame, built by hand (u32 big-endian length, postcard payload).
fn frame(req: &Req) -> Vec<u8> {
    let payload = postcard::to_stdvec(req).expect("encode");
    let mut frame = u32::try_from(payload.len())
        .expect("small")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&payload);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_reset_only_their_stream() {
    let (ca, calls, node, addr) = one_node();

    let mut raw = quinn::Endpoint::client(localhost()).expect("raw endpoint");
    raw.set_default_client_config(tls(&ca, Role::Client, "raw").client_config());
    let connection = raw
        .connect(addr, "node.dynamo")
        .expect("connect")
        .await
        .expect("handshake");

    let mut trailing = frame(&Req::Echo("x".to_owned()));
    trailing.push(0);
    trailing[3] += 1;
    let cases: [(&str, Vec<u8>, u32); 4] = [
        (
            "garbage payload",
            [&[0, 0, 0, 5][..], &[0xff; 5]].concat(),
            STREAM_MALFORMED,
        ),
        ("trailing bytes", trailing, STREAM_MALFORMED),
        (
            "length over limit",
            u32::MAX.to_be_bytes().to_vec(),
            STREAM_TOO_LARGE,
        ),
        ("truncated", vec![0, 0, 0, 10, 1, 2], STREAM_TRUNCATED),
    ];
    for (what, bytes, code) in cases {
        let (mut send, mut recv) = connection.open_bi().await.expect("open stream");
        // The server may reset before reading everything; write errors are fine.
        let _ = send.write_all(&bytes).await;
        let _ = send.finish();
        let read = tokio::time::timeout(TIMEOUT, recv.read_to_end(1024))
            .await
            .expect("answered promptly");
        match read {
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(got))) => {
                assert_eq!(got, quinn::VarInt::from_u32(code), "{what}");
            }
            other => panic!("{what}: expected a stream reset, got {other:?}"),
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no handler call for bad frames"
    );

    // The same connection still serves a valid request...
    let (mut send, mut recv) = connection.open_bi().await.expect("open stream");
    send.write_all(&frame(&Req::Echo("ok".to_owned())))
        .await
        .expect("write");
    send.finish().expect("finish");
    let response = recv.read_to_end(1024).await.expect("response");
    let resp: Resp = postcard::from_bytes(&response[4..]).expect("decode");
    assert_eq!(
        resp,
        Resp::Echo {
            from: "raw.client.dynamo".to_owned(),
            text: "ok".to_owned()
        }
    );
    // ...and so does the node for everybody else.
    let c = client(&ca, "c");
    assert!(echo(&c, addr, "still up").await.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    c.close().await;
    node.close().await;
}

/// Issue 29: peers agree on a protocol version by ALPN. A client of the oldest version is
/// served by a node of this build; a request a later version added is not sent to it
/// (`Unsupported`, the handler is never called); a client that speaks only versions the node
/// does not know is refused with a message that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_agree_on_a_protocol_version() {
    use dynamo_protocol::{OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION};
    let (ca, calls, node, addr) = one_node();
    let speaking = |name: &str, versions| {
        let identity = ca.issue(Role::Client, name).expect("issue identity");
        let tls = TlsConfig::speaking(ca.cert_pem(), &identity, versions).expect("tls");
        Endpoint::bind(localhost(), &tls, options()).expect("bind")
    };
    let echo_since = |endpoint: Endpoint, since: u32| async move {
        endpoint
            .request_since::<Req, Resp>(addr, &Req::Echo("v".into()), TIMEOUT, since)
            .await
    };
    // (client's versions, the version a request needs, whether it is served)
    let cases = [
        (OLDEST_PROTOCOL_VERSION..=OLDEST_PROTOCOL_VERSION, 1, true),
        (OLDEST_PROTOCOL_VERSION..=OLDEST_PROTOCOL_VERSION, 2, false),
        (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION, 2, true),
        (PROTOCOL_VERSION..=PROTOCOL_VERSION + 5, 2, true),
    ];
    for (versions, since, served) in cases {
        let before = calls.load(Ordering::SeqCst);
        let client = speaking("c", versions.clone());
        let result = echo_since(client.clone(), since).await;
        let label = format!("a client of {versions:?}, a request of version {since}");
        if served {
            assert!(result.is_ok(), "{label}: {result:?}");
            assert_eq!(calls.load(Ordering::SeqCst), before + 1, "{label}");
        } else {
            assert!(
                matches!(
                    result,
                    Err(TransportError::Unsupported {
                        speaks: 1,
                        needs: 2,
                        ..
                    })
                ),
                "{label}: {result:?}"
            );
            assert_eq!(
                calls.load(Ordering::SeqCst),
                before,
                "{label}: nothing sent"
            );
        }
        client.close().await;
    }
    let newer = PROTOCOL_VERSION + 1..=PROTOCOL_VERSION + 3;
    let client = speaking("future", newer);
    let error = echo_since(client.clone(), 1)
        .await
        .expect_err("no version in common");
    let text = error.to_string();
    assert!(text.contains("protocol version"), "{text}");
    client.close().await;
    node.close().await;
}

/// A request of a kind the peer does not know (a variant a later version appended) is an
/// error of its own, so a client can tell "this node runs an earlier version" from a node that
/// failed: the connection stays up and serves the requests the peer knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_an_earlier_version_does_not_know_is_not_understood() {
    /// `Req` as a later version has it: the same variants, and one more at the end.
    #[derive(Debug, Serialize, Deserialize)]
    enum LaterReq {
        Echo(String),
        SleepMs(u64),
        Newer(u32),
    }
    let (ca, calls, node, addr) = one_node();
    let c = client(&ca, "c");
    let error = c
        .request::<LaterReq, Resp>(addr, &LaterReq::Newer(7), TIMEOUT)
        .await
        .expect_err("the node cannot decode it");
    assert!(
        matches!(error, TransportError::NotUnderstood { peer } if peer == addr),
        "{error:?}"
    );
    assert!(error.to_string().contains("earlier version"), "{error}");
    let known = c
        .request::<LaterReq, Resp>(addr, &LaterReq::Echo("old".into()), TIMEOUT)
        .await
        .expect("a known request still works");
    assert!(matches!(known, Resp::Echo { text, .. } if text == "old"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    c.close().await;
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_completes_is_reset_after_the_read_timeout() {
    let ca = ClusterCa::generate("test").expect("ca");
    let calls = Arc::new(AtomicUsize::new(0));
    let impatient = TransportOptions {
        read_timeout: Duration::from_millis(150),
        ..options()
    };
    let (node, addr) = start_node_with(&ca, "n", &calls, impatient);
    let mut raw = quinn::Endpoint::client(localhost()).expect("raw endpoint");
    raw.set_default_client_config(tls(&ca, Role::Client, "raw").client_config());
    let connection = raw
        .connect(addr, "node.dynamo")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, mut recv) = connection.open_bi().await.expect("open stream");
    send.write_all(&[0, 0, 0, 9, 1]).await.expect("write"); // and then nothing
    let read = tokio::time::timeout(TIMEOUT, recv.read_to_end(1024))
        .await
        .expect("answered promptly");
    assert!(
        matches!(
            read,
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)))
                if code == quinn::VarInt::from_u32(STREAM_READ_TIMEOUT)
        ),
        "{read:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    node.close().await;

    // A closed endpoint fails fast instead of hanging.
    let result = echo(&node, addr, "after close").await;
    assert!(
        matches!(result, Err(TransportError::Connect { .. })),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_times_out_and_oversized_request_is_refused_locally() {
    let (ca, _calls, node, addr) = one_node();
    let small = TransportOptions {
        max_frame_bytes: 64,
        ..options()
    };
    let c = Endpoint::bind(localhost(), &tls(&ca, Role::Client, "c"), small).expect("bind");

    let timeout = Duration::from_millis(200);
    let slow: Result<Resp, _> = c.request(addr, &Req::SleepMs(2_000), timeout).await;
    assert!(
        matches!(slow, Err(TransportError::Timeout { peer, timeout: t }) if peer == addr && t == timeout),
        "{slow:?}"
    );

    let big: Result<Resp, _> = c.request(addr, &Req::Echo("x".repeat(100)), TIMEOUT).await;
    assert!(
        matches!(
            big,
            Err(TransportError::FrameTooLarge {
                len: 102,
                limit: 64,
                ..
            })
        ),
        "{big:?}"
    );

    // The connection survives both.
    assert!(echo(&c, addr, "fast").await.is_ok());
    c.close().await;
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_redial_after_the_peer_restarts() {
    let (ca, _calls, node, addr) = one_node();
    let c = client(&ca, "c");
    assert!(echo(&c, addr, "one").await.is_ok());
    node.close().await;
    drop(node);

    // The node comes back on the same address with a fresh endpoint.
    let tls = tls(&ca, Role::Node, "n");
    let mut attempts = 0;
    let endpoint = loop {
        // The old socket is released once quinn's driver task notices; retry briefly.
        match Endpoint::bind(addr, &tls, options()) {
            Ok(endpoint) => break endpoint,
            Err(error) if attempts < 40 => {
                attempts += 1;
                let _ = error;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(error) => panic!("rebind {addr}: {error}"),
        }
    };
    endpoint.serve(|_peer: PeerIdentity, _req: Req| async { Resp::Slept });
    // The cached connection learns of the close asynchronously; give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp: Resp = c
        .request(addr, &Req::Echo("two".to_owned()), TIMEOUT)
        .await
        .expect("redialed");
    assert_eq!(resp, Resp::Slept);
    c.close().await;
    endpoint.close().await;
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_and_identity_survive_save_and_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    let ca = ClusterCa::generate("prod").expect("ca");
    ca.save(&ca_dir).expect("save ca");
    assert!(matches!(
        ca.save(&ca_dir),
        Err(TlsError::AlreadyExists { .. })
    ));
    let loaded = ClusterCa::load(&ca_dir).expect("load ca");
    assert_eq!(loaded.cert_pem(), ca.cert_pem());

    // Identities issued by the reloaded CA are trusted by peers that only know the original.
    let id = loaded.issue(Role::Node, "n1").expect("issue");
    let id_dir = dir.path().join("ids");
    id.save(&id_dir, false).expect("save id");
    let back = Identity::load(&id_dir, None, Some("n1")).expect("load id");
    assert_eq!(back, id);
    assert_eq!(back.role, Role::Node);

    #[cfg(unix)]
    {
        assert_eq!(mode(&ca_dir), 0o700);
        assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
        assert_eq!(mode(&ca_dir.join("ca.pem")), 0o600);
        assert_eq!(mode(&id_dir), 0o700);
        assert_eq!(mode(&id_dir.join("n1.node.key")), 0o600);
        assert_eq!(mode(&id_dir.join("n1.node.pem")), 0o600);
    }

    let calls = Arc::new(AtomicUsize::new(0));
    let (node, addr) = start_node(&ca, "n0", &calls);
    let endpoint = Endpoint::bind(
        localhost(),
        &TlsConfig::new(ca.cert_pem(), &back).expect("tls"),
        options(),
    )
    .expect("bind");
    assert!(
        echo(&endpoint, addr, "from a reloaded identity")
            .await
            .is_ok()
    );
    endpoint.close().await;
    node.close().await;

    // A file holding someone else's certificate is rejected.
    std::fs::copy(id_dir.join("n1.node.pem"), id_dir.join("n2.node.pem")).expect("copy");
    std::fs::copy(id_dir.join("n1.node.key"), id_dir.join("n2.node.key")).expect("copy");
    assert!(matches!(
        Identity::load(&id_dir, None, Some("n2")),
        Err(TlsError::NameMismatch { .. })
    ));
    // A CA key that does not belong to the certificate is rejected.
    let other_dir = dir.path().join("other");
    ClusterCa::generate("other")
        .expect("ca")
        .save(&other_dir)
        .expect("save");
    std::fs::copy(other_dir.join("ca.key"), ca_dir.join("ca.key")).expect("copy");
    assert!(matches!(
        ClusterCa::load(&ca_dir),
        Err(TlsError::KeyMismatch { .. })
    ));
}

/// Security review hole 1: `cert issue --client ca` overwrote the CA, and `--client n1` a node's
/// certificate. The CA's files and identities' files cannot collide, identities are not written
/// next to a CA key, and an existing identity is replaced only on purpose.
#[test]
fn certificate_files_cannot_destroy_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    let ids = dir.path().join("ids");
    let ca = ClusterCa::generate("prod").expect("ca");
    ca.save(&ca_dir).expect("save ca");
    ca.install_cert(&ids).expect("install");
    let ca_files = |d: &std::path::Path| {
        (
            std::fs::read(d.join("ca.pem")).expect("ca.pem"),
            std::fs::read(d.join("ca.key")).ok(),
        )
    };
    let (ca_pem, ca_key) = ca_files(&ca_dir);

    // Every role may use the names "ca" and "n1" side by side.
    for role in Role::ALL {
        for name in ["ca", "n1"] {
            let id = ca.issue(role, name).expect("issue");
            id.save(&ids, false).expect("save");
            assert!(
                matches!(id.save(&ids, false), Err(TlsError::AlreadyExists { .. })),
                "{role} {name} saved twice without --force"
            );
            id.save(&ids, true).expect("forced save");
            assert_eq!(
                Identity::load(&ids, Some(role), Some(name)).expect("load"),
                id
            );
        }
    }
    assert_eq!(ca_files(&ca_dir), (ca_pem.clone(), ca_key));
    assert_eq!(std::fs::read(ids.join("ca.pem")).expect("ca.pem"), ca_pem);
    assert!(!ids.join("ca.key").exists());
    // With several identities of one name, the role must be given.
    assert!(matches!(
        Identity::load(&ids, None, Some("n1")),
        Err(TlsError::AmbiguousIdentity { .. })
    ));

    // Never next to the CA key, and never a second CA in one directory.
    let id = ca.issue(Role::Client, "app").expect("issue");
    assert!(matches!(
        id.save(&ca_dir, true),
        Err(TlsError::BesideCaKey { .. })
    ));
    assert!(matches!(
        ClusterCa::generate("other").expect("ca").install_cert(&ids),
        Err(TlsError::OtherCa { .. })
    ));
    assert!(matches!(
        ClusterCa::generate("other").expect("ca").save(&ca_dir),
        Err(TlsError::AlreadyExists { .. })
    ));
}

#[test]
fn issue_validates_names() {
    let ca = ClusterCa::generate("test").expect("ca");
    let cases: &[(&str, bool)] = &[
        ("node-1", true),
        ("a", true),
        ("0x", true),
        ("", false),
        ("-lead", false),
        ("trail-", false),
        ("Upper", false),
        ("dot.ted", false),
        ("under_score", false),
        ("space d", false),
    ];
    for (name, ok) in cases {
        for role in Role::ALL {
            let result = ca.issue(role, name);
            assert_eq!(result.is_ok(), *ok, "{role} {name:?}: {result:?}");
            if !ok {
                assert!(matches!(result, Err(TlsError::InvalidName { .. })));
            }
        }
    }
    assert!(ClusterCa::generate("Bad Cluster").is_err());
}

/// A raw QUIC connection to `addr` presenting `role`/`name` (no dynamo framing on top).
async fn raw_connection(
    ca: &ClusterCa,
    role: Role,
    name: &str,
    addr: SocketAddr,
) -> (quinn::Endpoint, quinn::Connection) {
    let mut raw = quinn::Endpoint::client(localhost()).expect("raw endpoint");
    raw.set_default_client_config(tls(ca, role, name).client_config());
    let connection = raw
        .connect(addr, "node.dynamo")
        .expect("connect")
        .await
        .expect("handshake");
    (raw, connection)
}

/// Which of `connections` closed first (within [`TIMEOUT`]), and the code it was closed with.
async fn first_closed(connections: &[&quinn::Connection]) -> (usize, quinn::VarInt) {
    let watch = connections.iter().map(|c| Box::pin(c.closed()));
    let (error, index, _) = tokio::time::timeout(TIMEOUT, futures_util::future::select_all(watch))
        .await
        .expect("a connection is closed");
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => (index, close.error_code),
        other => panic!("closed for another reason: {other}"),
    }
}

/// Opens a request stream on `connection` and sends part of a frame, so the node is busy
/// serving it until the stream is dropped or the read timeout passes.
async fn busy_stream(connection: &quinn::Connection) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = connection.open_bi().await.expect("stream");
    send.write_all(&[0, 0, 0, 100, 1])
        .await
        .expect("part of a frame");
    (send, recv)
}

/// Security review hole 3: 2,000 connections from one client were all accepted; issue 25: a
/// script that ran the CLI in a loop filled its identity's limit with connections of processes
/// that had exited. Connections from one identity are capped: at the limit, a new connection
/// replaces the identity's least recently used idle one (closed with `CLOSE_REPLACED`), and is
/// itself refused (`CLOSE_TOO_MANY_CONNECTIONS`) only while every one of them is busy. Other
/// identities are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_identity_are_capped() {
    let ca = ClusterCa::generate("test").expect("ca");
    let calls = Arc::new(AtomicUsize::new(0));
    let mut limited = options();
    limited.limits.max_connections_per_identity = 2;
    limited.read_timeout = Duration::from_secs(30);
    let (node, addr) = start_node_with(&ca, "n", &calls, limited);

    // Two idle connections, then a third: the one the node admitted first gives way.
    let (_e1, first) = raw_connection(&ca, Role::Client, "flood", addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_e2, second) = raw_connection(&ca, Role::Client, "flood", addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_e3, third) = raw_connection(&ca, Role::Client, "flood", addr).await;
    let (index, code) = first_closed(&[&first, &second, &third]).await;
    assert_eq!(index, 0, "the least recently used connection is replaced");
    assert_eq!(
        code,
        quinn::VarInt::from_u32(dynamo_client::transport::CLOSE_REPLACED)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(second.close_reason().is_none() && third.close_reason().is_none());

    // With both busy, a fourth connection is refused and the busy ones stay.
    let _busy_second = busy_stream(&second).await;
    let _busy_third = busy_stream(&third).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_e4, fourth) = raw_connection(&ca, Role::Client, "flood", addr).await;
    let (index, code) = first_closed(&[&second, &third, &fourth]).await;
    assert_eq!(index, 2, "a busy connection is never replaced");
    assert_eq!(
        code,
        quinn::VarInt::from_u32(dynamo_client::transport::CLOSE_TOO_MANY_CONNECTIONS)
    );
    // Someone else still gets in.
    assert!(echo(&client(&ca, "other"), addr, "hi").await.is_ok());
    // A slot frees up when a connection ends.
    second.close(quinn::VarInt::from_u32(0), b"bye");
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let again = raw_connection(&ca, Role::Client, "flood", addr).await;
        if tokio::time::timeout(Duration::from_millis(300), again.1.closed())
            .await
            .is_err()
        {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "a freed slot was never given out again");
    assert!(third.close_reason().is_none(), "the busy connection stays");
    node.close().await;
}

/// Security review hole 3: 1,000 streams each sending 1 MiB of an announced 8 MiB frame held
/// 1 GB. A frame's payload is read only once its length fits the sender's budget, so a client
/// hogging its budget with frames it never finishes waits on itself, while another client's
/// requests go through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_wait_for_their_senders_budget() {
    let ca = ClusterCa::generate("test").expect("ca");
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tight = options();
    tight.max_frame_bytes = 256 * 1024;
    tight.limits.client_frame_bytes_per_identity = 256 * 1024;
    tight.read_timeout = Duration::from_secs(30);
    let (node, addr) = start_node_with(&ca, "n", &calls, tight.clone());

    // The hog announces whole frames and sends a little of each, never finishing.
    let (_raw, hog) = raw_connection(&ca, Role::Client, "hog", addr).await;
    let mut streams = Vec::new();
    for _ in 0..8 {
        let (mut send, recv) = hog.open_bi().await.expect("open");
        let mut partial = (256u32 * 1024).to_be_bytes().to_vec();
        partial.extend_from_slice(&[0u8; 16 * 1024]);
        send.write_all(&partial).await.expect("write");
        streams.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The hog's own next request waits behind its budget ...
    let hog_client =
        Endpoint::bind(localhost(), &tls(&ca, Role::Client, "hog"), tight.clone()).expect("bind");
    let waiting = hog_client
        .request::<Req, Resp>(
            addr,
            &Req::Echo("me too".into()),
            Duration::from_millis(500),
        )
        .await;
    assert!(
        matches!(waiting, Err(TransportError::Timeout { .. })),
        "{waiting:?}"
    );
    // ... while everyone else's go through.
    let other = Endpoint::bind(localhost(), &tls(&ca, Role::Client, "other"), tight).expect("bind");
    for i in 0..20 {
        let answer = other
            .request::<Req, Resp>(addr, &Req::Echo(format!("{i}")), TIMEOUT)
            .await;
        assert!(answer.is_ok(), "request {i}: {answer:?}");
    }
    // Once the hog gives up its streams, its budget is back.
    drop(streams);
    hog.close(quinn::VarInt::from_u32(0), b"done");
    let answer = hog_client
        .request::<Req, Resp>(addr, &Req::Echo("now".into()), TIMEOUT)
        .await;
    assert!(answer.is_ok(), "{answer:?}");
    node.close().await;
}

/// A UDP relay between one client and a node, that can fall silent (a node paused or without
/// power: nothing comes back, not even a close) and come back relaying to another node on the
/// same address (the node restarted: it does not know the old connection and cannot reset it).
struct Relay {
    addr: SocketAddr,
    /// The node packets go to; `None` while silent.
    target: Arc<std::sync::Mutex<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(node: SocketAddr) -> Relay {
        let socket = Arc::new(
            tokio::net::UdpSocket::bind(localhost())
                .await
                .expect("relay socket"),
        );
        let addr = socket.local_addr().expect("relay addr");
        let target = Arc::new(std::sync::Mutex::new(Some(node)));
        let shared = target.clone();
        let task = tokio::spawn(async move {
            let mut client = None;
            let mut buffer = vec![0; 65_536];
            while let Ok((len, from)) = socket.recv_from(&mut buffer).await {
                let node = *shared.lock().expect("relay target");
                let Some(node) = node else { continue };
                let to = if from == node {
                    match client {
                        Some(client) => client,
                        None => continue,
                    }
                } else {
                    client = Some(from);
                    node
                };
                let _ = socket.send_to(&buffer[..len], to).await;
            }
        });
        Relay { addr, target, task }
    }

    fn set_target(&self, node: Option<SocketAddr>) {
        *self.target.lock().expect("relay target") = node;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Issue 26: a node that loses power takes its connections with it silently, and comes back
/// on the same address as a new process that cannot reset them. A request that timed out on a
/// connection from which nothing at all came back closes it, so the next request dials again
/// and reaches the restarted node at once; before, every request on the dead connection waited
/// out its timeout until the 30 s idle timeout closed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_dropped_and_the_restarted_node_reached() {
    let ca = ClusterCa::generate("test").expect("ca");
    let calls = Arc::new(AtomicUsize::new(0));
    let (old, old_addr) = start_node(&ca, "n", &calls);
    let relay = Relay::start(old_addr).await;
    let c = client(&ca, "c");
    assert!(echo(&c, relay.addr, "before").await.is_ok());

    relay.set_target(None);
    // Packets on their way when the power went out still arrive; a request sent after them
    // meets the silence.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let silent: Result<Resp, _> = c
        .request(
            relay.addr,
            &Req::Echo("lost".into()),
            Duration::from_secs(1),
        )
        .await;
    assert!(
        matches!(silent, Err(TransportError::Timeout { .. })),
        "{silent:?}"
    );

    // The node is back: a new process (endpoint) behind the same address.
    let (new, new_addr) = start_node(&ca, "n", &calls);
    relay.set_target(Some(new_addr));
    let after = c
        .request(
            relay.addr,
            &Req::Echo("after".into()),
            Duration::from_secs(2),
        )
        .await;
    assert!(
        matches!(&after, Ok(Resp::Echo { text, .. }) if text == "after"),
        "the restarted node was not reached: {after:?}"
    );
    c.close().await;
    new.close().await;
    old.close().await;
}
