//! `cargo xtask power`: power cuts against `dynamo` processes on hosts of their own whose data
//! directories sit on `lossyfs` (see `dynamo_tests::power`): power cut to one node after
//! another and to every node at once, mid-load, with the chaos checker once power is back.
//! Prints one table row per cut.
//!
//! Usage: `power [--nodes N] [--rounds R] [--off-seconds S] [--quiet-seconds S]
//! [--lying-disks]`. Each round cuts every node in turn, then all at once. With
//! `--lying-disks` every fsync of the store's write-ahead journal succeeds and keeps nothing:
//! the negative control, which must report lost writes. Needs root and `/dev/fuse` (it skips otherwise) and the release
//! `dynamo` and `lossyfs` binaries beside it, which `cargo xtask power` builds.

use std::process::ExitCode;
use std::time::Duration;

use dynamo_tests::power::{self, Cut, PowerCluster};

struct Args {
    nodes: usize,
    rounds: usize,
    off_seconds: u64,
    quiet_seconds: u64,
    lying_disks: bool,
}

fn parse() -> Result<Args, String> {
    let mut parsed = Args {
        nodes: 5,
        rounds: 2,
        off_seconds: 3,
        quiet_seconds: 4,
        lying_disks: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--lying-disks" {
            parsed.lying_disks = true;
            continue;
        }
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let number: u64 = value
            .parse()
            .map_err(|_| format!("not a number: {value}"))?;
        match arg.as_str() {
            "--nodes" => parsed.nodes = number.clamp(3, 9) as usize,
            "--rounds" => parsed.rounds = number.max(1) as usize,
            "--off-seconds" => parsed.off_seconds = number,
            "--quiet-seconds" => parsed.quiet_seconds = number.max(1),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(problem) => {
            eprintln!(
                "{problem}\nusage: power [--nodes N] [--rounds R] [--off-seconds S] [--quiet-seconds S] [--lying-disks]"
            );
            return ExitCode::from(2);
        }
    };
    if let Some(reason) = power::unavailable() {
        println!("skipped: this machine cannot cut power to test hosts ({reason})");
        return ExitCode::SUCCESS;
    }
    let power = match PowerCluster::start(args.nodes, Some(power::NODE_CONFIG), args.lying_disks) {
        Ok(power) => power,
        Err(reason) => {
            eprintln!("cannot start the cluster on lossy disks: {reason}");
            return ExitCode::FAILURE;
        }
    };
    let mut cuts = Vec::new();
    for round in 1..=args.rounds {
        let label = format!("round {round}: ");
        for node in 0..args.nodes {
            cuts.push(Cut::one(&label, node, args.off_seconds));
        }
        cuts.push(Cut::all(&label, args.nodes, args.off_seconds));
    }
    let outcome = power::run(&power, &cuts, 8, Duration::from_secs(args.quiet_seconds));
    println!("{}", power::report(&cuts, &outcome));
    let verdict = &outcome.verdict;
    if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        for lost in verdict.lost_writes.iter().take(5) {
            println!("lost: {lost}");
        }
        eprintln!("{}", power.cluster.logs());
        ExitCode::FAILURE
    }
}
