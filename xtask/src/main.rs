//! The project's own automation, reached through the `cargo xtask` alias in
//! `.cargo/config.toml` (see matklad/cargo-xtask).
//!
//! * `cargo xtask ci`: the checks a change must pass before it lands: formatting, clippy with
//!   warnings denied, and the test command of README.md (the one `.ci/run` runs).
//! * `cargo xtask demo`: the main job of README.md until the `node` crate runs a cluster: the
//!   ring's Figure 8 experiment and the vector-clock shopping-cart story.
//!
//! It has no dependencies so it compiles in a second. It must not know how the crates work; it
//! only runs cargo.

use std::process::{Command, ExitCode};

/// The test command of README.md and `.ci/run`. Keep the three in step.
const TEST_COMMAND: &[&str] = &["test", "--workspace"];

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    match task.as_deref() {
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
        Some("demo") => run_all(&[
            &[
                "run",
                "--release",
                "--quiet",
                "-p",
                "dynamo-ring",
                "--example",
                "ring_balance",
            ],
            &[
                "run",
                "--release",
                "--quiet",
                "-p",
                "dynamo-vclock",
                "--example",
                "shopping_cart",
            ],
        ]),
        _ => {
            eprintln!("usage: cargo xtask <task>");
            eprintln!();
            eprintln!("  ci    cargo fmt --check, clippy -D warnings, then the test command");
            eprintln!("  demo  the ring's Figure 8 table and the vector-clock shopping cart");
            ExitCode::from(2)
        }
    }
}

/// Runs cargo with each argument list in turn, stopping at the first failure.
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
