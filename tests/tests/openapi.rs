//! Issue 29, the API contract: the `OpenAPI` description a running node serves at
//! `/openapi.json` is the one checked in as `docs/openapi.json`, and a property-based fuzzer
//! (schemathesis, from `PyPI`, installed by this test into `target/schemathesis`) drives a
//! running 3-node cluster from that description: no response may be a 5xx, and every
//! response must have a status, content type, headers and body the description names.
//!
//! The fuzzer runs in positive mode (requests the description allows) with a bounded number of
//! examples per operation; the API's answers to malformed input are `tests/http.rs`'s and
//! `tests/decoders.rs`'s. Needs `python3` with `venv` and `pip`, and `PyPI` or a pip cache:
//! without them the fuzzing half says why and is skipped.

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
}

/// The workspace's target directory (this test runs from `target/<profile>/deps`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

/// A virtual environment with schemathesis in it, made once per target directory; `Err`
/// says why there is none (no python3, no venv, `PyPI` out of reach).
fn schemathesis() -> Result<PathBuf, String> {
    let venv = target_dir().join("schemathesis");
    let binary = venv.join("bin").join("schemathesis");
    let marker = venv.join(SCHEMATHESIS);
    if binary.exists() && marker.exists() {
        return Ok(binary);
    }
    let run = |command: &mut Command, what: &str| -> Result<(), String> {
        let output = command
            .output()
            .map_err(|error| format!("{what}: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ))
        }
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SCHEMATHESIS,
        ]),
        "pip install schemathesis",
    )?;
    std::fs::write(&marker, b"").map_err(|error| error.to_string())?;
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
        Err(why) => {
            println!("skipping the fuzzer: {why}");
            return cluster.shutdown().await;
        }
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
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start schemathesis");
        let deadline = std::time::Instant::now() + FUZZ_LIMIT;
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        child.wait_with_output().expect("schemathesis output")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|line| {
            line.contains("generated") || line.contains("passed") || line.contains("failures")
        })
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    println!("responses by status: {:?}", statuses(&har));
    assert!(
        output.status.success(),
        "schemathesis found failures (or ran past {FUZZ_LIMIT:?}):\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
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
