//! `dynamo backup` and `dynamo restore`: the client library's backup and restore
//! (`dynamo_client::backup`) with a progress bar on stderr and a summary a person reads (or
//! JSON).
//!
//! This module must not know the backup file's layout or how nodes export and merge.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};
use dynamo_client::backup::{self, BackupError, BackupFileError, BackupOptions, RestoreOptions};
use dynamo_protocol::RequestOptions;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::{BackupArgs, CompareArgs, RestoreArgs};

/// `dynamo compare-backups`: exit 0 when both hold the same keys with the same versions.
pub(crate) fn compare(args: &CompareArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let comparison = backup::compare(&args.first, &args.second)?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "same": comparison.same,
                "only_first": comparison.only_first,
                "only_second": comparison.only_second,
                "differ": comparison.differ,
                "examples": comparison.examples,
            })
        );
    } else {
        outln!(
            "{} keys equal, {} differ, {} only in {}, {} only in {} ({:.1} s)",
            comparison.same,
            comparison.differ,
            comparison.only_first,
            args.first.display(),
            comparison.only_second,
            args.second.display(),
            started.elapsed().as_secs_f64()
        );
        for example in &comparison.examples {
            outln!("  {example}");
        }
    }
    Ok(if comparison.equal() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn bar(template: &str, length: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// "1 bucket", "3 buckets".
fn bucket_count(count: u32) -> String {
    if count == 1 {
        "1 bucket".into()
    } else {
        format!("{count} buckets")
    }
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// `dynamo backup`: every key of the buckets with all its versions, into a file.
pub(crate) async fn backup(args: BackupArgs) -> Result<ExitCode> {
    let BackupArgs {
        out,
        buckets,
        resume,
        page_keys,
        connection,
    } = args;
    let client = connection.client()?;
    let options = BackupOptions {
        buckets,
        resume,
        page_keys,
    };
    let started = Instant::now();
    let progress = bar("{elapsed:>4} [{bar:30}] {msg}", 1);
    let report = backup::backup(&client, &out, &options, |at| {
        let total = u64::from(at.partitions.max(1)) * at.buckets.max(1) as u64;
        let done = (at.bucket_index.saturating_sub(1) as u64) * u64::from(at.partitions)
            + u64::from(at.partition);
        progress.set_length(total);
        progress.set_position(done.min(total));
        progress.set_message(format!(
            "bucket {} ({}/{}), partition {}/{}, {} keys, {:.1} MB",
            at.bucket,
            at.bucket_index,
            at.buckets,
            at.partition,
            at.partitions,
            at.keys,
            megabytes(at.bytes)
        ));
    })
    .await;
    let report = match report {
        Ok(report) => report,
        // Only a backup that stopped while reading the cluster or writing the file continues.
        Err(error @ (BackupError::Refused(_) | BackupError::File(_)))
            if !matches!(error, BackupError::File(BackupFileError::Io { .. })) =>
        {
            return Err(error.into());
        }
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!(
                "the backup into {} stopped; `dynamo backup --resume --out {}` continues it",
                out.display(),
                out.display()
            )));
        }
    };
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let summary = report.summary;
    if connection.json {
        outln!(
            "{}",
            serde_json::json!({
                "file": out.display().to_string(),
                "buckets": summary.buckets,
                "keys": summary.keys,
                "deleted": summary.deleted,
                "bytes": report.bytes,
                "seconds": seconds,
                "resumed": report.resumed,
                "kept_bytes": report.kept_bytes,
                "warnings": report.warnings,
                "already_complete": report.already_complete,
            })
        );
    } else if report.already_complete {
        outln!(
            "{} is complete already: {} keys of {}",
            out.display(),
            summary.keys,
            bucket_count(summary.buckets)
        );
    } else {
        if let Some(cut) = &report.cut {
            outln!("the earlier run ended with a cut record, dropped: {cut}");
        }
        for warning in &report.warnings {
            outln!("warning: {warning}");
        }
        let kept = if report.resumed {
            format!(
                ", resumed after the {:.1} MB an earlier run wrote",
                megabytes(report.kept_bytes)
            )
        } else {
            String::new()
        };
        let this_run = report.bytes - report.kept_bytes;
        outln!(
            "backed up {} keys ({} deleted) of {} into {}: {:.1} MB; {:.1} MB in {:.1} s ({:.1} MB/s){kept}",
            summary.keys,
            summary.deleted,
            bucket_count(summary.buckets),
            out.display(),
            megabytes(report.bytes),
            megabytes(this_run),
            seconds,
            megabytes(this_run) / seconds.max(1e-3),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynamo restore`: merges a backup into the cluster.
pub(crate) async fn restore(args: RestoreArgs) -> Result<ExitCode> {
    let RestoreArgs {
        file,
        buckets,
        concurrency,
        w,
        allow_resurrection,
        connection,
    } = args;
    let client = connection.client()?;
    let options = RestoreOptions {
        buckets,
        concurrency: usize::from(concurrency),
        allow_resurrection,
        options: RequestOptions {
            w,
            timeout_ms: Some(connection.timeout_ms),
            ..RequestOptions::default()
        },
    };
    let started = Instant::now();
    let progress = bar("{elapsed:>4} [{bar:30}] {bytes}/{total_bytes} {msg}", 1);
    let report = backup::restore(&client, &file, &options, |at| {
        progress.set_length(at.total_bytes);
        progress.set_position(at.bytes);
        progress.set_message(format!("{} keys merged, {} failed", at.keys, at.failed));
    })
    .await
    .with_context(|| format!("restoring {}", file.display()))?;
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if connection.json {
        outln!(
            "{}",
            serde_json::json!({
                "file": file.display().to_string(),
                "buckets": report.buckets,
                "created": report.created,
                "keys": report.keys,
                "failed": report.failed,
                "failures": report.failures,
                "notes": report.notes,
                "bytes": report.bytes,
                "seconds": seconds,
                "incomplete": report.incomplete,
            })
        );
    } else {
        for note in &report.notes {
            outln!("note: {note}");
        }
        outln!(
            "restored {} keys of {} from {} ({} created): {:.1} MB in {:.1} s ({:.1} MB/s)",
            report.keys,
            bucket_count(report.buckets),
            file.display(),
            report.created.len(),
            megabytes(report.bytes),
            seconds,
            megabytes(report.bytes) / seconds.max(1e-3),
        );
        for failure in &report.failures {
            outln!("failed: {failure}");
        }
    }
    if report.failed > 0 {
        eprintln!(
            "error: {} keys were not restored; restoring again is safe and merges them",
            report.failed
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(why) = &report.incomplete {
        eprintln!("error: the backup is incomplete, and only what it holds was restored: {why}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
