//! A CLI that moves bytes faithfully, bounds its inputs and says what is true (issue 13), with
//! the real `dynamo` binary against one node. Each case is something a new user or an operator
//! found wrong: binary values corrupted, `put --file /dev/zero` reading without end, keys echoed
//! whole in errors, `--timeout-ms 0` accepted, a port that wrapped to 0, a bucket silently
//! changed, a panic on a closed pipe, colour codes in log files, a second node on a data
//! directory in use failing with "Locked".

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};

use common::{DYNAMO, NodeProcess, Setup, assert_refused, stderr};

#[test]
fn the_cli_moves_bytes_faithfully_and_bounds_what_it_reads() {
    let dir = tempfile::tempdir().expect("dir");
    let setup = Setup::new(dir.path(), 13_000);
    let ca = setup.init_ca("ca");
    let (certs, admin) = (setup.path("certs"), setup.path("admin"));
    assert!(setup.issue(&ca, &certs, "--node", "n1").status.success());
    assert!(setup.issue(&ca, &admin, "--admin", "ops").status.success());
    let log = dir.path().join("n1.log");
    let node = NodeProcess(setup.start_node_logging(
        &certs,
        Stdio::from(std::fs::File::create(&log).expect("log")),
        "info",
    ));
    setup.wait_until_serving(&admin);
    let run = |args: &[&str]| setup.as_identity(&admin, args);
    let one = ["--w", "1"];

    // Binary values: the exact bytes back through --raw, --output and base64 JSON; text output
    // escapes them visibly instead of replacing them with U+FFFD.
    let bytes = [0x41u8, 0xff, 0x00, 0xfe];
    let file = dir.path().join("value.bin");
    std::fs::write(&file, bytes).expect("write value");
    let file_arg = file.to_str().expect("utf-8");
    let put = run(&[&["put", "default", "bin", "--file", file_arg][..], &one].concat());
    assert!(put.status.success(), "{put:?}");
    let raw = run(&["get", "default", "bin", "--r", "1", "--raw"]);
    assert_eq!(raw.stdout, bytes, "{raw:?}");
    let out = dir.path().join("out.bin");
    let written = run(&[
        "get",
        "default",
        "bin",
        "--r",
        "1",
        "--output",
        out.to_str().expect("utf-8"),
    ]);
    assert!(written.status.success(), "{written:?}");
    assert_eq!(std::fs::read(&out).expect("output file"), bytes);
    let json = run(&["get", "default", "bin", "--r", "1", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(json["encoding"], "base64");
    assert_eq!(json["values"][0], "Qf8A/g==");
    let text =
        String::from_utf8_lossy(&run(&["get", "default", "bin", "--r", "1"]).stdout).into_owned();
    assert!(text.contains(r"<binary, 4 bytes> A\xff\x00\xfe"), "{text}");

    // Inputs bounded before reading; limits named; huge keys never echoed.
    let huge = dir.path().join("huge.bin");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(64 * 1024 * 1024))
        .expect("sparse file");
    let long_key = "k".repeat(65_300);
    // (what, arguments, refusal expected)
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "a 64 MiB file",
            vec![
                "put",
                "default",
                "k",
                "--file",
                huge.to_str().expect("utf-8"),
            ],
            "a value is at most",
        ),
        (
            "an endless file",
            vec!["put", "default", "k", "--file", "/dev/zero"],
            "holds more than",
        ),
        (
            "a key over the limit",
            vec!["get", "default", &long_key, "--r", "1"],
            "keys must be 1 to 65210 bytes",
        ),
        (
            "a zero timeout",
            vec!["get", "default", "k", "--timeout-ms", "0"],
            "0 is not in 1..",
        ),
    ];
    for (what, args, expected) in cases {
        let output = run(&args);
        assert_refused(&output, expected);
        assert!(
            stderr(&output).len() < 2_000,
            "{what}: {} bytes of error",
            stderr(&output).len()
        );
    }

    // Buckets change only on purpose; quorums beyond the live members are warned about.
    let bucket = |extra: &[&str]| {
        run(&[
            &["bucket", "create", "b", "--n", "1", "--r", "1", "--w", "1"][..],
            extra,
        ]
        .concat())
    };
    assert!(bucket(&[]).status.success());
    let again = bucket(&[]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already has"),
        "{again:?}"
    );
    let bigger = run(&["bucket", "create", "b", "--n", "3", "--r", "2", "--w", "2"]);
    assert_refused(&bigger, "pass --update");
    let updated = run(&[
        "bucket", "create", "b", "--n", "3", "--r", "2", "--w", "2", "--update",
    ]);
    assert!(updated.status.success(), "{updated:?}");
    assert!(
        stderr(&updated).contains("only 1 members are up"),
        "{}",
        stderr(&updated)
    );

    // A reader that goes away early ends the command quietly, not with a panic.
    let mut child = Command::new(DYNAMO)
        .args(["status", "--json", "--certs-dir", &admin])
        .env("DYNAMO_NODES", &setup.address)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("status");
    drop(child.stdout.take());
    let status = child.wait().expect("exit");
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert!(
        status.success() && !err.contains("panicked"),
        "{status:?}: {err}"
    );

    // A second node on a data directory in use says so, and what to do.
    let second = setup
        .start_node(&certs)
        .wait_with_output()
        .expect("second node exits");
    assert_refused(
        &second,
        "in use by another node; give this node its own --data-dir",
    );

    // A log written to a file has no terminal colour codes.
    let logged = std::fs::read(&log).expect("log");
    assert!(
        !logged.is_empty() && !logged.contains(&0x1b),
        "colour codes in the log file"
    );
    drop(node);
}

/// `dev cluster` refuses port ranges past 65535 before touching anything.
#[test]
fn dev_cluster_refuses_ports_past_65535() {
    let dir = tempfile::tempdir().expect("dir");
    let output = Command::new(DYNAMO)
        .args([
            "dev",
            "cluster",
            "--nodes",
            "2",
            "--base-port",
            "65535",
            "--dir",
        ])
        .arg(dir.path().join("dev"))
        .output()
        .expect("dev cluster");
    assert_refused(&output, "would go past port 65535");
    assert!(
        !dir.path().join("dev").exists(),
        "the directory was touched"
    );
}
