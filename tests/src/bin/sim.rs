//! `sim`: runs the whole-cluster simulator over a range of seeds, or replays one seed.
//!
//! ```text
//! sim --seeds 0..200          # run seeds 0 to 199; exit 1 if an invariant fails
//! sim --reproduce 42          # replay seed 42 telling its story: store operations, replies
//! sim --reproduce 42 --key k7 # ... and every event that names key k7, first to last
//! sim --shrink 42             # the smallest fault schedule of seed 42 that still fails
//! ```
//!
//! `cargo xtask sim` runs it in release mode. A failing seed prints the seed, the violations
//! and the last events of its trace (as `tests/sim.rs` does); `--reproduce SEED` replays it
//! exactly (same trace hash), with the detail a plain run skips.

use std::process::ExitCode;
use std::time::Instant;

use dynamo_tests::sim::{Sim, SimConfig, SimReport, invariants, shrink};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--seeds", range] => match parse_range(range) {
            Some((from, to)) => run_range(from, to),
            None => usage(&format!("seeds must look like A..B, got {range:?}")),
        },
        ["--reproduce", seed] => match seed.parse::<u64>() {
            Ok(seed) => reproduce(seed, None),
            Err(_) => usage(&format!("the seed must be a number, got {seed:?}")),
        },
        ["--reproduce", seed, "--key", key] => match seed.parse::<u64>() {
            Ok(seed) => reproduce(seed, Some((*key).to_owned())),
            Err(_) => usage(&format!("the seed must be a number, got {seed:?}")),
        },
        ["--shrink", seed] => match seed.parse::<u64>() {
            Ok(seed) => shrink_seed(seed),
            Err(_) => usage(&format!("the seed must be a number, got {seed:?}")),
        },
        _ => usage("expected --seeds A..B, --reproduce SEED [--key K] or --shrink SEED"),
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "sim: {problem}\nusage: sim --seeds A..B | sim --reproduce SEED [--key K] | sim --shrink SEED"
    );
    ExitCode::from(2)
}

fn parse_range(range: &str) -> Option<(u64, u64)> {
    let (from, to) = range.split_once("..")?;
    let (from, to) = (from.parse().ok()?, to.parse().ok()?);
    (from < to).then_some((from, to))
}

fn run_range(from: u64, to: u64) -> ExitCode {
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut expected = 0;
    let mut events = 0;
    let mut acknowledged = 0;
    let mut stand_ins = 0;
    let (mut refused_full, mut fsync_failures) = (0, 0);
    let mut listings = 0;
    let mut copy_reads = dynamo_tests::sim::CopyReads::default();
    let mut backups = dynamo_tests::sim::Backups::default();
    for seed in from..to {
        let report = Sim::new(SimConfig::random(seed)).run();
        events += report.events;
        acknowledged += report.acknowledged;
        stand_ins += report.stand_ins;
        refused_full += report.store_faults.refused_full;
        fsync_failures += report.store_faults.fsync_failures;
        listings += report.listings;
        copy_reads.answered += report.copy_reads.answered;
        copy_reads.diverged += report.copy_reads.diverged;
        copy_reads.too_few += report.copy_reads.too_few;
        backups.taken += report.backups.taken;
        backups.failed += report.backups.failed;
        backups.restored += report.backups.restored;
        backups.merged += report.backups.merged;
        backups.merge_failures += report.backups.merge_failures;
        backups.too_old += report.backups.too_old;
        expected += report.violations.len() - report.failures().len();
        if !report.failures().is_empty() {
            print_failure(&report);
            failed.push(seed);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let seeds = to - from;
    println!(
        "{seeds} seeds in {seconds:.1} s ({:.1} seeds/s, {events} events, {acknowledged} acknowledged writes, {stand_ins} stand-ins)",
        seeds as f64 / seconds
    );
    println!(
        "store faults: {refused_full} writes refused by a full disk, {fsync_failures} failed fsyncs; {listings} listings during the runs"
    );
    println!(
        "client-side reads: {} answered from R equal copies, {} sent to a coordinator because copies differed, {} because too few replicas answered",
        copy_reads.answered, copy_reads.diverged, copy_reads.too_few
    );
    println!(
        "backups during the runs: {} taken, {} stopped by a failed page; restores: {} done, {} keys merged, {} merges failed, {} not started (every backup older than the tombstone grace allows)",
        backups.taken,
        backups.failed,
        backups.restored,
        backups.merged,
        backups.merge_failures,
        backups.too_old
    );
    for (name, why) in invariants::EXPECTED_TO_FAIL {
        println!("expected to fail: {name} ({why})");
    }
    if expected > 0 {
        println!("{expected} violations of invariants expected to fail");
    }
    if failed.is_empty() {
        println!("{seeds} passed, 0 failed");
        ExitCode::SUCCESS
    } else {
        println!(
            "{} passed, {} failed: seeds {failed:?}",
            seeds - failed.len() as u64,
            failed.len()
        );
        ExitCode::FAILURE
    }
}

fn reproduce(seed: u64, key: Option<String>) -> ExitCode {
    let report = Sim::new(SimConfig::random(seed)).with_story(key).run();
    // The whole story when a key is followed; the last events otherwise.
    print!("{}", report.story(usize::MAX));
    println!(
        "seed {seed}: trace hash {:016x}, {} events, {} ms virtual, {} acknowledged writes, {} stand-ins",
        report.trace_hash, report.events, report.virtual_ms, report.acknowledged, report.stand_ins
    );
    if report.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn shrink_seed(seed: u64) -> ExitCode {
    let original = SimConfig::random(seed);
    let faults = original.fault_schedule().len();
    let (smallest, report) = shrink(original);
    if report.failures().is_empty() {
        println!("seed {seed} does not fail; nothing to shrink");
        return ExitCode::SUCCESS;
    }
    println!(
        "seed {seed} still fails with {} of its {faults} faults and {} operations per client:",
        smallest.fault_schedule().len(),
        smallest.ops_per_client
    );
    for (at, fault) in smallest.fault_schedule() {
        println!("  at +{at} ms: {fault:?}");
    }
    print_failure(&report);
    ExitCode::FAILURE
}

fn print_failure(report: &SimReport) {
    print!("{}", report.story(40));
}
