//! The status page as a person sees it (issue 15): a dev cluster, `dynamo proxy` in front of
//! one node's HTTP API, and the page loaded in headless Chromium. The rendered DOM must show
//! the ring drawn (one arc per partition), every member and a live refresh; a screenshot is
//! saved to `target/test-artefacts/status-page.png`.
//!
//! Chromium comes from `tests/chromium.sh` (Debian's package, installed when it can be); where
//! it cannot be had, the test says so and checks only the proxy. The proxy must refuse what a
//! browser sends for another site.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{DYNAMO, DevCluster, NodeProcess};

/// A Chromium to run, or why there is none.
fn chromium() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chromium.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if output.status.success() {
        Ok(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        ))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=PATH`).
fn headless(chromium: &Path, url: &str, mode: &str, profile: &Path) -> String {
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,900",
            // Long enough for the script's first fetches and a refresh.
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(output.status.success(), "chromium failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The status line of a plain HTTP/1.1 GET of `/` sent to `address` with `headers`.
fn status_line(address: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "GET /ping HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn the_status_page_draws_the_ring_in_a_browser() {
    let dir = tempfile::tempdir().expect("dir");
    let base_port = 23_000 + (std::process::id() % 9_000) as u16;
    let (cluster, banner) = DevCluster::start(dir.path(), base_port);
    let certs = dir.path().join("certs").join("client");
    let http = format!("127.0.0.1:{}", base_port + 100);
    assert!(
        banner.contains(&format!("dynamo proxy --to {http}")),
        "{banner}"
    );

    // Some traffic, so the latency table has rows.
    for i in 0..5 {
        let output = Command::new(DYNAMO)
            .args(["put", "default", &format!("k{i}"), "v"])
            .env("DYNAMO_NODES", format!("127.0.0.1:{base_port}"))
            .env("DYNAMO_CERTS_DIR", &certs)
            .output()
            .expect("put");
        assert!(output.status.success(), "{output:?}");
    }

    let listen = format!("127.0.0.1:{}", base_port + 200);
    let mut proxy = NodeProcess(
        Command::new(DYNAMO)
            .args(["proxy", "--to", &http, "--listen", &listen])
            .env("DYNAMO_CERTS_DIR", &certs)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the proxy"),
    );
    let stderr = proxy.0.stderr.take().expect("stderr");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let line = lines_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the proxy started");
    assert!(
        line.contains(&format!("proxying http://{listen}/")),
        "{line}"
    );

    // The proxy acts with the operator's certificate: requests a browser makes for another
    // site (another Host: DNS rebinding; another Origin: cross-site request forgery) are
    // refused, the proxy's own are forwarded.
    let cases = [
        (format!("Host: {listen}\r\n"), "200"),
        (format!("Host: localhost:{}\r\n", base_port + 200), "200"),
        ("Host: rebound.example\r\n".to_owned(), "403"),
        (
            format!("Host: {listen}\r\nOrigin: http://evil.example\r\n"),
            "403",
        ),
        (
            format!("Host: {listen}\r\nSec-Fetch-Site: cross-site\r\n"),
            "403",
        ),
        (
            format!("Host: {listen}\r\nOrigin: http://{listen}\r\n"),
            "200",
        ),
    ];
    for (headers, status) in cases {
        let line = status_line(&listen, &headers);
        assert!(line.contains(status), "{headers:?}: {line}");
    }

    let chromium = match chromium() {
        Ok(path) => path,
        Err(reason) => {
            eprintln!("skipped: the status page was not loaded in a browser: {reason}");
            return;
        }
    };
    let url = format!("http://{listen}/");
    let profile = dir.path().join("chromium-profile");
    let dom = headless(&chromium, &url, "--dump-dom", &profile);
    let arcs = dom.matches("<path").count();
    assert!(
        arcs >= 64,
        "the ring has one arc per partition (64), found {arcs}:\n{dom}"
    );
    for member in ["node-1", "node-2", "node-3"] {
        assert!(dom.contains(member), "{member} is shown");
    }
    assert!(
        dom.contains("updated"),
        "the page refreshed from the API:\n{dom}"
    );

    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .join("test-artefacts");
    std::fs::create_dir_all(&artefacts).expect("artefact directory");
    let shot = artefacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &chromium,
        &url,
        &format!("--screenshot={}", shot.display()),
        &profile,
    );
    let size = std::fs::metadata(&shot).map_or(0, |m| m.len());
    assert!(
        size > 10_000,
        "a screenshot of the page, not an empty one ({size} bytes)"
    );
    eprintln!("status page screenshot: {}", shot.display());

    drop(proxy);
    drop(cluster);
}
