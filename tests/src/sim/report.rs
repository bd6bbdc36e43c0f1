//! What a run found, and its story as a person reads it: the same text from the tests and from
//! the `sim` binary.
//!
//! This module must not run anything: it formats a finished run.

use super::{SimConfig, Violation, invariants};

/// What the store faults of a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreFaults {
    /// Writes refused because the disk was full.
    pub refused_full: u64,
    /// Fsyncs that failed (each stops its node until a restart).
    pub fsync_failures: u64,
}

/// The outcome of one run.
#[derive(Debug)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Hash of every event processed: equal for equal runs.
    pub trace_hash: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated, in milliseconds.
    pub virtual_ms: u64,
    /// Client operations acknowledged.
    pub acknowledged: usize,
    /// Replica requests sent to a spare in place of a silent or failed replica (paper 4.6).
    pub stand_ins: u64,
    /// Store writes a full disk refused, and fsyncs that failed (issue 26's store faults).
    pub store_faults: StoreFaults,
    /// Listings clients completed while the run went on.
    pub listings: usize,
    /// How client-side reads ended (all zero in a run without them).
    pub copy_reads: super::CopyReads,
    /// How backups and restores during the run went (all zero in a run without them).
    pub backups: super::Backups,
    /// What every invariant found.
    pub violations: Vec<Violation>,
    /// Every line that named the key followed (`Sim::with_story`), first to last.
    pub followed: Vec<String>,
    /// The last events, for a failure report.
    pub trace_tail: Vec<String>,
    /// The configuration.
    pub config: SimConfig,
}

impl SimReport {
    /// The report as a person reads it, the same from the tests and from `sim`: what failed,
    /// then the events that led there (the last `lines` of the trace, or every line naming the
    /// followed key), then how to replay it.
    pub fn story(&self, lines: usize) -> String {
        use std::fmt::Write as _;
        let failures = self.failures();
        let verdict = if failures.is_empty() {
            "passed"
        } else {
            "FAILED"
        };
        let mut text = format!("seed {} {verdict} ({:?})\n", self.seed, self.config);
        for violation in &failures {
            let _ = writeln!(text, "  {violation}");
        }
        let (what, trace) = if self.followed.is_empty() {
            ("last events", &self.trace_tail)
        } else {
            ("every event naming the key", &self.followed)
        };
        let _ = writeln!(text, "  {what}:");
        let skip = trace.len().saturating_sub(lines);
        for line in &trace[skip..] {
            let _ = writeln!(text, "    {line}");
        }
        let _ = writeln!(
            text,
            "  replay: cargo xtask sim --reproduce {0} [--key K]; smallest failing run: cargo xtask sim --shrink {0}",
            self.seed
        );
        text
    }

    /// Violations of invariants that must hold (not those marked expected to fail).
    pub fn failures(&self) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| !invariants::expected_to_fail(v.invariant))
            .collect()
    }
}
