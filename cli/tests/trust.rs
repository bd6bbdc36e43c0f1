//! Trust boundaries with the real `dynamo` binary (issue 12), one test per hole a security
//! review found:
//! 1. certificate tooling that overwrote the CA and other identities;
//! 2. a client certificate that could make nodes leave and change buckets;
//! 4. data directories and store files readable by every local user;
//! 5. a node that served another cluster's data directory.
//!
//! (Hole 3, resource exhaustion, is covered by `client/tests/transport.rs` and the flood test in
//! `tests`; hole 6, the dev cluster's client directory, by `tests/cli.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{NodeProcess, Setup, assert_refused, stderr};

/// Hole 1: `cert issue --client ca` overwrote `ca.pem` and `ca.key`; `--client n1` overwrote
/// node n1's certificate. Now the CA lives in its own directory, identities cannot collide with
/// it or with each other, and replacing one takes `--force`.
#[test]
fn certificate_tooling_cannot_destroy_what_it_manages() {
    let dir = tempfile::tempdir().expect("dir");
    let setup = Setup::new(dir.path(), 17_000);
    let (ca, certs) = (setup.init_ca("ca"), setup.path("certs"));
    let ca_files =
        || ["ca.pem", "ca.key"].map(|f| std::fs::read(Path::new(&ca).join(f)).expect("CA file"));
    let before = ca_files();
    assert_refused(
        &setup.dynamo(&["cert", "init", "--ca-dir", &ca]),
        "refusing to overwrite a cluster CA",
    );

    let cases: &[(&str, &str, bool, Option<&str>)] = &[
        // (role flag, name, --force, refusal expected)
        ("--node", "n1", false, None),
        ("--client", "ca", false, None),
        ("--client", "n1", false, None),
        ("--admin", "ops", false, None),
        ("--read-only", "viewer", false, None),
        ("--node", "n1", false, Some("pass --force to replace it")),
        ("--node", "n1", true, None),
        ("--client", "Bad_Name", false, Some("invalid name")),
    ];
    for &(role, name, force, refusal) in cases {
        let mut args = vec![
            "cert", "issue", "--ca-dir", &ca, "--dir", &certs, role, name,
        ];
        if force {
            args.push("--force");
        }
        let output = setup.dynamo(&args);
        match refusal {
            None => assert!(output.status.success(), "{args:?}: {output:?}"),
            Some(expected) => assert_refused(&output, expected),
        }
    }
    assert_eq!(ca_files(), before, "the CA changed");
    // Identities never go next to the CA key, and the handed-out directory has no CA key.
    assert_refused(
        &setup.issue(&ca, &ca, "--client", "x"),
        "holds the cluster CA's private key",
    );
    assert!(!Path::new(&certs).join("ca.key").exists());
    assert!(Path::new(&certs).join("ca.client.pem").exists());
}

/// Holes 2, 4 and 5 against one running node: roles decide what a certificate may ask,
/// membership changes need a name and a confirmation, files are private, and a data directory
/// stays with its cluster.
#[test]
fn roles_private_files_and_the_cluster_a_data_directory_belongs_to() {
    let dir = tempfile::tempdir().expect("dir");
    let setup = Setup::new(dir.path(), 17_000);
    let (ca, certs) = (setup.init_ca("ca"), setup.path("certs"));
    assert!(setup.issue(&ca, &certs, "--node", "n1").status.success());
    let mut clients = Vec::new();
    for (role, name) in [
        ("--admin", "ops"),
        ("--client", "app"),
        ("--read-only", "viewer"),
    ] {
        let own = setup.path(name);
        assert!(setup.issue(&ca, &own, role, name).status.success());
        clients.push(own);
    }
    let [admin, client, viewer] = [&clients[0], &clients[1], &clients[2]];
    let node = NodeProcess(setup.start_node(&certs));

    setup.wait_until_serving(viewer);

    // (identity, command, refusal expected)
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        (
            client,
            &["bucket", "create", "b", "--n", "1", "--r", "1", "--w", "1"],
            Some("needs the admin role"),
        ),
        (
            client,
            &["node", "remove", "n9", "--yes"],
            Some("needs the admin role"),
        ),
        (
            client,
            &["leave", "n1", "--yes"],
            Some("needs the admin role"),
        ),
        (client, &["put", "default", "k", "v", "--w", "1"], None),
        (
            viewer,
            &["put", "default", "k", "v2", "--w", "1"],
            Some("needs the client or admin role"),
        ),
        (
            viewer,
            &["delete", "default", "k", "--context", "x"],
            Some("needs the client or admin role"),
        ),
        (viewer, &["get", "default", "k", "--r", "1"], None),
        (viewer, &["bucket", "list"], None),
        (
            admin,
            &["bucket", "create", "b", "--n", "1", "--r", "1", "--w", "1"],
            None,
        ),
        // Membership changes name the node and are confirmed.
        (admin, &["leave", "n1"], Some("pass --yes")),
        (admin, &["leave", "n7", "--yes"], Some("n7 is not a member")),
        (admin, &["node", "remove", "n9"], Some("pass --yes")),
    ];
    for &(identity, args, refusal) in cases {
        let output = setup.as_identity(identity, args);
        match refusal {
            None => assert!(output.status.success(), "{args:?}: {output:?}"),
            Some(expected) => assert_refused(&output, expected),
        }
    }
    assert_eq!(
        setup.as_identity(admin, &["leave"]).status.code(),
        Some(2),
        "leave without a name is a usage error"
    );

    // Hole 4: the data directory and everything in it are private to the node's user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut checked = 0;
        let mut pending = vec![dir.path().join("data"), PathBuf::from(&certs)];
        while let Some(path) = pending.pop() {
            let meta = std::fs::metadata(&path).expect("metadata");
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{}", path.display());
                pending.extend(
                    std::fs::read_dir(&path)
                        .expect("dir")
                        .map(|e| e.expect("entry").path()),
                );
            } else {
                assert_eq!(mode, 0o600, "{}", path.display());
            }
            checked += 1;
        }
        assert!(checked > 5, "only {checked} paths checked");
    }
    drop(node);

    // Hole 5: the same data directory under another cluster's certificates is refused.
    let (other_ca, other_certs) = (setup.init_ca("other-ca"), setup.path("other-certs"));
    assert!(
        setup
            .issue(&other_ca, &other_certs, "--node", "n1")
            .status
            .success()
    );
    let intruder = setup.start_node(&other_certs);
    let output = intruder.wait_with_output().expect("node exits");
    assert!(!output.status.success(), "{output:?}");
    assert!(
        stderr(&output).contains("belongs to another cluster"),
        "{}",
        stderr(&output)
    );
    // The rightful cluster still opens it.
    let again = NodeProcess(setup.start_node(&certs));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = setup.as_identity(viewer, &["get", "default", "k", "--r", "1"]);
        if read.status.success() {
            assert_eq!(
                String::from_utf8_lossy(&read.stdout).lines().next(),
                Some("v")
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not come back: {read:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(again);
}
