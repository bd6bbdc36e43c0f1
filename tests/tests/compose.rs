//! The compose deployment of issue 25 (`deploy/compose/docker-compose.yml`), as a user runs it:
//! an image built from this checkout's `dynamo` binary (`deploy/docker/build-image.sh`, no
//! registry), `docker-compose up`, the CLI in the client container, and faults Docker makes: a
//! node disconnected from the network, a node killed, a node paused. Every write acknowledged
//! through them is read back at R = N once they are over.
//!
//! Needs Docker Engine and docker-compose (v1 or v2); without them the test says so and passes
//! without running.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use dynamo_tests::hosts::describe;
use dynamo_tests::process::dynamo_binary;

/// The repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// `docker-compose` (v1) or `docker compose` (v2), whichever this machine has.
fn compose_command() -> Option<Vec<String>> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works("docker", &["info"]) {
        return None;
    }
    if works("docker", &["compose", "version"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else if works("docker-compose", &["version"]) {
        Some(vec!["docker-compose".into()])
    } else {
        None
    }
}

/// One compose project in a temporary directory, taken down (volumes too) when dropped.
struct Project {
    compose: Vec<String>,
    name: String,
    dir: tempfile::TempDir,
    image: String,
}

impl Project {
    fn command(&self, args: &[&str]) -> Command {
        let file = repository().join("deploy/compose/docker-compose.yml");
        let mut command = Command::new(&self.compose[0]);
        command
            .args(&self.compose[1..])
            .args(["-p", &self.name, "-f"])
            .arg(file)
            .arg("--project-directory")
            .arg(self.dir.path())
            .args(args)
            .env("DYNAMO_IMAGE", &self.image);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run compose")
    }

    /// `run --rm client ARGS`: the CLI in the client container.
    fn client(&self, args: &[&str]) -> Output {
        let mut all = vec!["run", "--rm", "-T", "client"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// The container of service `service`.
    fn container(&self, service: &str) -> String {
        let output = self.run(&["ps", "-q", service]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Writes `key` through the client container until it is acknowledged (bounded); the
    /// failed attempts.
    fn put_until_acknowledged(&self, key: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut failed = 0;
        loop {
            let output = self.client(&["put", "default", key, key, "--timeout-ms", "3000"]);
            if output.status.success() {
                return failed;
            }
            failed += 1;
            eprintln!("put {key} failed: {}", describe(&output));
            assert!(
                Instant::now() < deadline,
                "put {key} never acknowledged: {}\n{}",
                describe(&output),
                self.logs()
            );
        }
    }

    /// Waits (bounded) until the client container sees the three members UP.
    fn wait_until_all_up(&self) {
        let started = Instant::now();
        loop {
            let status = self.client(&["status"]);
            let text = String::from_utf8_lossy(&status.stdout);
            if text.lines().filter(|l| l.starts_with("UP ")).count() == 3 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the cluster is not all up: {}\n{}",
                describe(&status),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn logs(&self) -> String {
        String::from_utf8_lossy(&self.run(&["logs", "--tail", "20"]).stdout).into_owned()
    }
}

/// Runs `docker ARGS`, failing the test unless it succeeds.
fn docker(args: &[&str]) {
    let output = Command::new("docker").args(args).output().expect("docker");
    assert!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        describe(&output)
    );
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--timeout", "2"]);
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.image])
            .output();
    }
}

/// Issue 25: `docker compose up` brings up three nodes with their certificates; the client
/// container reaches them by name; writes acknowledged while a node is cut from the network,
/// killed or paused are all there at R = N afterwards.
#[test]
fn the_compose_cluster_survives_a_disconnect_a_kill_and_a_pause() {
    let Some(compose) = compose_command() else {
        eprintln!("skipped: no Docker Engine with docker-compose here");
        return;
    };
    let project = Project {
        compose,
        name: format!("dynamotest{}", std::process::id()),
        dir: tempfile::tempdir().expect("project directory"),
        image: format!("dynamo:test{}", std::process::id()),
    };
    let built = Command::new("bash")
        .arg(repository().join("deploy/docker/build-image.sh"))
        .arg(dynamo_binary())
        .arg(&project.image)
        .output()
        .expect("build the image");
    assert!(built.status.success(), "image: {}", describe(&built));

    let started = Instant::now();
    let up = project.run(&["up", "-d"]);
    assert!(up.status.success(), "up: {}", describe(&up));
    project.wait_until_all_up();
    println!(
        "compose: {:.1} s from `up` to three members UP",
        started.elapsed().as_secs_f64()
    );

    let network = format!("{}_dynamo", project.name);
    let (first, second, third) = (
        project.container("dynamo-1"),
        project.container("dynamo-2"),
        project.container("dynamo-3"),
    );
    let mut keys = Vec::new();
    let mut write = |phase: &str, count: usize| {
        let mut failed = 0;
        for i in 0..count {
            let key = format!("{phase}-{i}");
            failed += project.put_until_acknowledged(&key);
            keys.push(key);
        }
        println!("compose, {phase}: {count} writes acknowledged, {failed} attempts failed");
    };
    write("before", 3);
    docker(&["network", "disconnect", &network, &third]);
    write("disconnected", 4);
    docker(&[
        "network", "connect", "--alias", "dynamo-3", &network, &third,
    ]);
    project.wait_until_all_up();
    docker(&["kill", &second]);
    write("killed", 4);
    docker(&["start", &second]);
    project.wait_until_all_up();
    docker(&["pause", &first]);
    write("paused", 4);
    docker(&["unpause", &first]);

    // Every acknowledged write, from every replica, once the nodes are back.
    let deadline = Instant::now() + Duration::from_secs(120);
    for key in &keys {
        loop {
            let read = project.client(&["get", "default", key, "--r", "3"]);
            // Exit 4: siblings. A put the CLI was retried for after a failure is a new blind
            // write of the same value, whose first attempt may have been stored too.
            let answered = matches!(read.status.code(), Some(0 | 4));
            if answered && String::from_utf8_lossy(&read.stdout).contains(key.as_str()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key} not readable at R=3: {}\n{}",
                describe(&read),
                project.logs()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}
