//! The deployment files of issue 25 are checked offline, each by the tool its platform has:
//! the Kubernetes manifests against the Kubernetes schemas (`kubernetes-validate`, installed
//! from `PyPI` into `target/deploy-tools` on first use), the compose file by `docker-compose
//! config`, and the systemd unit by `systemd-analyze verify`. Each check is also shown a broken
//! file, so it is known to fail when it should. A tool this machine cannot have is reported and
//! its check skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dynamo_tests::hosts::describe;

/// The pinned validator (it ships the schemas of every Kubernetes release it knows).
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.34.1";
/// The Kubernetes release the manifests are checked against.
const KUBERNETES_VERSION: &str = "1.30.0";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> Option<Output> {
    Command::new(program).args(args).output().ok()
}

/// `kubernetes-validate` in a virtual environment under `target/`, installed on first use.
fn kubernetes_validate() -> Result<PathBuf, String> {
    let venv = repository().join("target/deploy-tools/venv");
    let tool = venv.join("bin/kubernetes-validate");
    if tool.exists() {
        return Ok(tool);
    }
    let created = run(
        "python3",
        &["-m".as_ref(), "venv".as_ref(), venv.as_os_str()],
    )
    .ok_or("no python3")?;
    if !created.status.success() {
        return Err(format!("python3 -m venv: {}", describe(&created)));
    }
    let pip = venv.join("bin/pip");
    let installed = run(
        &pip,
        &[
            "install".as_ref(),
            "--quiet".as_ref(),
            KUBERNETES_VALIDATE.as_ref(),
        ],
    )
    .ok_or("no pip")?;
    if !installed.status.success() {
        return Err(format!(
            "pip install {KUBERNETES_VALIDATE}: {}",
            describe(&installed)
        ));
    }
    Ok(tool)
}

/// Issue 25: `StatefulSet`, headless `Service`, `PodDisruptionBudget` and the `Secret`'s shape are
/// valid Kubernetes objects (strict: no unknown fields); a manifest with a wrong type is not.
#[test]
fn the_kubernetes_manifests_validate_against_the_schemas() {
    let tool = match kubernetes_validate() {
        Ok(tool) => tool,
        Err(reason) => {
            eprintln!("skipped: cannot install {KUBERNETES_VALIDATE} ({reason})");
            return;
        }
    };
    let validate = |files: &[PathBuf]| {
        let mut command = Command::new(&tool);
        command.args(["--strict", "--kubernetes-version", KUBERNETES_VERSION]);
        command.args(files);
        command.output().expect("run kubernetes-validate")
    };
    let dir = repository().join("deploy/kubernetes");
    let manifests = [dir.join("dynamo.yaml"), dir.join("secret-example.yaml")];
    let checked = validate(&manifests);
    assert!(checked.status.success(), "{}", describe(&checked));
    let text = String::from_utf8_lossy(&checked.stdout);
    for kind in [
        "service/dynamo",
        "statefulset/dynamo",
        "poddisruptionbudget/dynamo",
        "secret/dynamo-certs",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind} not checked: {text}"
        );
    }

    let broken = tempfile::tempdir().expect("temporary directory");
    let manifest = std::fs::read_to_string(&manifests[0]).expect("dynamo.yaml");
    let bad = broken.path().join("bad.yaml");
    std::fs::write(&bad, manifest.replace("replicas: 3", "replicas: three")).expect("write");
    assert!(
        !validate(&[bad]).status.success(),
        "a broken manifest passed"
    );
}

/// The compose file parses and has what the README promises; one with a service that
/// extends nothing does not.
#[test]
fn the_compose_file_is_valid() {
    let file = repository().join("deploy/compose/docker-compose.yml");
    let config = |path: &Path| {
        run(
            "docker-compose",
            &["-f".as_ref(), path.as_os_str(), "config".as_ref()],
        )
    };
    let Some(checked) = config(&file) else {
        eprintln!("skipped: no docker-compose here");
        return;
    };
    assert!(checked.status.success(), "{}", describe(&checked));
    let text = String::from_utf8_lossy(&checked.stdout);
    for needed in [
        "dynamo-1:",
        "dynamo-2:",
        "dynamo-3:",
        "client:",
        "bootstrap",
        "healthcheck:",
    ] {
        assert!(text.contains(needed), "{needed} missing from {text}");
    }
    let broken = tempfile::tempdir().expect("temporary directory");
    let bad = broken.path().join("docker-compose.yml");
    let original = std::fs::read_to_string(&file).expect("compose file");
    std::fs::write(&bad, original.replace("<<: *node", "<<: *nothing")).expect("write");
    assert!(
        !config(&bad).is_some_and(|o| o.status.success()),
        "a broken compose file passed"
    );
}

/// The systemd unit verifies (with this checkout's binary in place of /usr/local/bin/dynamo);
/// one whose binary does not exist does not.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(repository().join("deploy/systemd/dynamo.service"))
        .expect("the unit");
    let binary = dynamo_tests::process::dynamo_binary();
    let dir = tempfile::tempdir().expect("temporary directory");
    let verify = |text: String| {
        let path = dir.path().join("dynamo.service");
        std::fs::write(&path, text).expect("write the unit");
        run("systemd-analyze", &["verify".as_ref(), path.as_os_str()])
    };
    let Some(checked) =
        verify(unit.replace("/usr/local/bin/dynamo", &binary.display().to_string()))
    else {
        eprintln!("skipped: no systemd-analyze here");
        return;
    };
    assert!(checked.status.success(), "{}", describe(&checked));
    let missing = verify(unit.replace("/usr/local/bin/dynamo", "/nonexistent/dynamo"))
        .expect("systemd-analyze");
    assert!(
        !missing.status.success(),
        "a unit without its binary passed"
    );
}
