//! The project's own automation, reached through the `cargo xtask` alias in
//! `.cargo/config.toml` (see matklad/cargo-xtask).
//!
//! * `cargo xtask ci`: the checks a change must pass before it lands: formatting, clippy with
//!   warnings denied, and the test command of README.md (the one `.ci/run` runs).
//! * `cargo xtask demo`: the main job of README.md: a local 3-node cluster (separate processes
//!   on loopback, QUIC with mutual TLS, fjall stores) and the paper's shopping-cart story
//!   against it.
//! * `cargo xtask sim --seeds A..B` / `cargo xtask sim --reproduce SEED`: the deterministic
//!   whole-cluster simulator (`dynamo-tests`' `sim` binary) in release mode, over a range of
//!   seeds or replaying one.
//! * `cargo xtask bench [--seconds S ...]`: the benchmark matrix (`dynamo dev bench`) on local
//!   3-node clusters in release mode; writes `target/bench-report/report.md`.
//! * `cargo xtask bench --scale [--long ...]`: the scale sweep (`dynamo dev scale`): a fresh
//!   cluster per key count (10k, 100k, 1M; 10M with `--long`), with load rate, reads and
//!   writes, memory, disk per key, restart and anti-entropy refill times; writes
//!   `target/bench-report/scale/scale.md`.
//! * `cargo xtask chaos [--fault-seconds S] [--only NAME]`: partitions, one-way loss, kill -9,
//!   pauses and a restart on a new address against five `dynamo` processes on hosts of their
//!   own (network namespaces; needs root), a workload from a sixth and the history checker;
//!   prints a table per fault.
//! * `cargo xtask power [--rounds R] [--lying-disks]`: power cuts, one node after another and
//!   all at once, mid-load, of five `dynamo` processes on hosts of their own whose data sits on
//!   `lossyfs` (a FUSE filesystem that drops what was not fsynced; needs root and `/dev/fuse`),
//!   and the history checker once power is back.
//!
//! * `cargo xtask tidy`: the architecture rules a program can check (`tidy.rs`): forbidden
//!   dependencies of the sans-IO, core and client crates, a `//!` doc on every file, file
//!   lengths, no two modules importing each other. The test command runs it too.
//! * `cargo xtask image [TAG]`: the container image of the release binary
//!   (`deploy/docker/build-image.sh`: no base image, so no registry is needed).
//!
//! It has no dependencies so it compiles in a second. It must not know how the crates work; it
//! only runs cargo and the project's scripts.

use std::process::{Command, ExitCode};

mod tidy;

/// The test command of README.md and `.ci/run`. Keep the three in step.
const TEST_COMMAND: &[&str] = &["test", "--workspace"];

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let rest: Vec<String> = std::env::args().skip(2).collect();
    match task.as_deref() {
        // Without the `cluster` feature: the simulator links the core and the in-memory store only.
        Some("sim") => release_run(
            &[
                "-p",
                "dynamo-tests",
                "--no-default-features",
                "--bin",
                "sim",
                "--",
            ],
            &rest,
        ),
        Some("bench") if rest.iter().any(|a| a == "--scale") => {
            let others: Vec<String> = rest.iter().filter(|a| *a != "--scale").cloned().collect();
            release_run(&["-p", "dynamo-cli", "--", "dev", "scale"], &others)
        }
        Some("bench") => release_run(&["-p", "dynamo-cli", "--", "dev", "bench"], &rest),
        Some("image") => {
            // A container image of the release binary, built offline (no base image).
            let built = run_all(&[&["build", "--release", "--quiet", "-p", "dynamo-cli"]]);
            if built != ExitCode::SUCCESS {
                return built;
            }
            let tag = rest.first().map_or("dynamo:latest", String::as_str);
            run_program(
                "bash",
                &["deploy/docker/build-image.sh", "target/release/dynamo", tag],
            )
        }
        Some("chaos") => {
            // The fault runner starts the `dynamo` binary beside it: build that first.
            let built = run_all(&[&["build", "--release", "--quiet", "-p", "dynamo-cli"]]);
            if built != ExitCode::SUCCESS {
                return built;
            }
            release_run(&["-p", "dynamo-tests", "--bin", "chaos", "--"], &rest)
        }
        Some("power") => {
            // The power-cut runner starts `dynamo` and `lossyfs` beside it: build them first.
            let built = run_all(&[&[
                "build",
                "--release",
                "--quiet",
                "-p",
                "dynamo-cli",
                "-p",
                "dynamo-tests",
                "--bin",
                "dynamo",
                "--bin",
                "lossyfs",
            ]]);
            if built != ExitCode::SUCCESS {
                return built;
            }
            release_run(&["-p", "dynamo-tests", "--bin", "power", "--"], &rest)
        }
        Some("tidy") => {
            let problems = tidy::check(&workspace_root());
            for problem in &problems {
                eprintln!("tidy: {problem}");
            }
            if problems.is_empty() {
                eprintln!("tidy: ok");
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some("ci") => run_all(&[
            &["fmt", "--all", "--", "--check"],
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            TEST_COMMAND,
        ]),
        Some("demo") => {
            // A fresh cluster every time: the demo's data directory is recreated.
            let dir = std::path::Path::new("target").join("dynamo-demo");
            if let Err(error) = std::fs::remove_dir_all(&dir)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!("xtask: could not clear {}: {error}", dir.display());
                return ExitCode::FAILURE;
            }
            let dir = dir.to_string_lossy().into_owned();
            run_all(&[&[
                "run",
                "--release",
                "--quiet",
                "-p",
                "dynamo-cli",
                "--",
                "dev",
                "demo",
                "--nodes",
                "3",
                "--dir",
                &dir,
            ]])
        }
        _ => {
            eprintln!("usage: cargo xtask <task>");
            eprintln!();
            eprintln!("  ci    cargo fmt --check, clippy -D warnings, then the test command");
            eprintln!("  demo  a local 3-node cluster and the shopping-cart story against it");
            eprintln!("  sim   --seeds A..B | --reproduce SEED: the whole-cluster simulator");
            eprintln!("  bench the benchmark matrix on local clusters (target/bench-report)");
            eprintln!("  bench --scale [--long] the scale sweep: 10k, 100k, 1M (10M) keys");
            eprintln!("  chaos faults across network namespaces against 5 real nodes (root)");
            eprintln!(
                "  power power cuts of real nodes on a filesystem that drops unsynced writes (root, FUSE)"
            );
            eprintln!("  image [TAG] the container image of the release binary (dynamo:latest)");
            eprintln!(
                "  tidy  the architecture rules: dependencies, module docs, file sizes, cycles"
            );
            ExitCode::from(2)
        }
    }
}

/// Runs cargo with each argument list in turn, stopping at the first failure.
/// `cargo run --release --quiet TARGET... REST...`: a binary of the workspace, optimised.
fn release_run(target: &[&str], rest: &[String]) -> ExitCode {
    let mut args = vec!["run", "--release", "--quiet"];
    args.extend_from_slice(target);
    args.extend(rest.iter().map(String::as_str));
    run_all(&[&args])
}

/// Runs `program ARGS` (a script of the project), reporting its failure.
fn run_program(program: &str, args: &[&str]) -> ExitCode {
    eprintln!("xtask: {program} {}", args.join(" "));
    match Command::new(program).args(args).status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("xtask: `{program} {}` failed ({status})", args.join(" "));
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("xtask: could not run {program}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_all(steps: &[&[&str]]) -> ExitCode {
    for &args in steps {
        eprintln!("xtask: cargo {}", args.join(" "));
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("xtask: `cargo {}` failed ({status})", args.join(" "));
                return ExitCode::FAILURE;
            }
            Err(error) => {
                eprintln!("xtask: could not run cargo: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!("xtask: done");
    ExitCode::SUCCESS
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
