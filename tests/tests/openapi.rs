//! Issue 29, the API contract: the `OpenAPI` description a running node serves at
//! `/openapi.json` is the one checked in as `docs/openapi.json`, and a property-based fuzzer
//! (schemathesis, from `PyPI`, installed by this test into `target/schemathesis`) drives a
//! running 3-node cluster from that description: no response may be a 5xx, and every
//! response must have a status, content type, headers and body the description names.
//!
//! The fuzzer runs in positive mode (requests the description allows) with a bounded number of
//! examples per operation; the API's answers to malformed input are `tests/http.rs`'s and
//! `tests/decoders.rs`'s. Needs `python3` and `PyPI`: without them the fuzzing half says why
//! (on stderr) and is skipped; an install that fails for any other reason fails the test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dynamo_node::NodeConfig;
use dynamo_tests::{TestCluster, tls_for};

/// The schemathesis release the test installs.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// Examples the fuzzer generates per operation and phase.
const MAX_EXAMPLES: &str = "25";
/// How long the fuzzer may run in all before it is stopped (and the test fails).
const FUZZ_LIMIT: Duration = Duration::from_secs(300);

fn with_http(config: &mut NodeConfig) {
    config.http_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    // A watch on a key nobody writes lasts its whole length: shorter than the fuzzer's own
    // request timeout.
    config.http_limits.max_watch_ms = 2_000;
}

/// Where the test keeps its virtual environment (cargo's scratch directory for tests).
fn venv_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemathesis")
}

/// Why the fuzzer could not be installed: `Skip` when what it needs is missing from this
/// machine (no python3, `PyPI` out of reach), `Fail` when the install itself broke.
enum Unavailable {
    Skip(String),
    Fail(String),
}

/// A virtual environment with schemathesis in it, made once and checked on every run (the
/// pinned version must answer `--version`; anything else is installed again).
fn schemathesis() -> Result<PathBuf, Unavailable> {
    let venv = venv_dir();
    let binary = venv.join("bin").join("schemathesis");
    let version = SCHEMATHESIS.trim_start_matches("schemathesis==");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(version));
    if installed {
        return Ok(binary);
    }
    let _ = std::fs::remove_dir_all(&venv);
    match Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
    {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(Unavailable::Skip("python3 is not installed".into()));
        }
        Err(error) => return Err(Unavailable::Fail(format!("python3 -m venv: {error}"))),
        Ok(out) if !out.status.success() => {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            return Err(Unavailable::Fail(format!("python3 -m venv failed: {why}")));
        }
        Ok(_) => {}
    }
    let out = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(["--timeout", "15", "--retries", "2", SCHEMATHESIS])
        .output()
        .map_err(|error| Unavailable::Fail(format!("pip: {error}")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).into_owned();
        let _ = std::fs::remove_dir_all(&venv);
        // The package index out of reach is a machine without it; any other failure is one.
        let signs = [
            "Connection",
            "Max retries",
            "Temporary failure",
            "unreachable",
            "timed out",
        ];
        return Err(if signs.iter().any(|sign| why.contains(sign)) {
            Unavailable::Skip(format!("PyPI is out of reach: {why}"))
        } else {
            Unavailable::Fail(format!("pip install {SCHEMATHESIS} failed: {why}"))
        });
    }
    Ok(binary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_its_openapi_contract_under_fuzzing() {
    let cluster = TestCluster::start_with(3, with_http).await;
    let port = cluster.nodes[0]
        .as_ref()
        .and_then(dynamo_node::Node::http_address)
        .expect("HTTP API")
        .port();
    let tls = tls_for(&cluster.certs_dir(), "tester");
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls.https_client_config())
        .resolve("node.dynamo", SocketAddr::from(([127, 0, 0, 1], port)))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client");

    // The description served is the one checked in.
    let served: serde_json::Value = http
        .get(format!("https://node.dynamo:{port}/openapi.json"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let checked_in: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec).expect("docs/openapi.json")).expect("JSON");
    assert_eq!(served, checked_in, "the node serves another description");

    let schemathesis = match tokio::task::spawn_blocking(schemathesis)
        .await
        .expect("join")
    {
        Ok(binary) => binary,
        Err(Unavailable::Skip(why)) => {
            eprintln!("skipping the fuzzer: {why}");
            return cluster.shutdown().await;
        }
        Err(Unavailable::Fail(why)) => panic!("{why}"),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let har = dir.path().join("run.har");
    let certs = cluster.certs_dir();
    let mut command = std::process::Command::new(&schemathesis);
    command
        .arg("run")
        .arg(&spec)
        .args(["--url", &format!("https://127.0.0.1:{port}")])
        .arg("--request-cert")
        .arg(certs.join("tester.admin.pem"))
        .arg("--request-cert-key")
        .arg(certs.join("tester.admin.key"))
        // The nodes' certificates name node.dynamo, not 127.0.0.1.
        .args(["--tls-verify", "false"])
        .args(["--mode", "positive", "--max-examples", MAX_EXAMPLES])
        .args(["--generation-deterministic", "--workers", "2"])
        .args(["--request-timeout", "20"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
        ])
        .args(["--report", "har", "--report-har-path"])
        .arg(&har)
        .env("NO_COLOR", "1")
        .current_dir(dir.path());
    // Output goes to files, so a long report cannot fill a pipe and stall the run.
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    command
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let (status, timed_out) = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("start schemathesis");
        let deadline = std::time::Instant::now() + FUZZ_LIMIT;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, false);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return (child.wait().expect("wait"), true);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .expect("join");
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let errors = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        !timed_out,
        "schemathesis ran past {FUZZ_LIMIT:?}:\n{text}\n{errors}"
    );
    let summary: Vec<&str> = text
        .lines()
        .filter(|line| {
            line.contains("generated") || line.contains("passed") || line.contains("failures")
        })
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    println!("responses by status: {:?}", statuses(&har));
    assert!(
        status.success(),
        "schemathesis found failures:\n{text}\n{errors}"
    );
    let answered = statuses(&har);
    assert!(
        answered.keys().any(|status| (200..300).contains(status)),
        "no request succeeded: {answered:?}"
    );
    cluster.shutdown().await;
}

/// How many responses of each status the fuzzer's HAR report holds.
fn statuses(har: &Path) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    let Ok(bytes) = std::fs::read(har) else {
        return counts;
    };
    let Ok(report) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return counts;
    };
    let entries = report["log"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for entry in entries {
        if let Some(status) = entry["response"]["status"].as_u64() {
            *counts.entry(status).or_default() += 1;
        }
    }
    counts
}
