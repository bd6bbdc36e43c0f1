//! Backup and restore that keep causality (issue 29).
//!
//! A backup streams every key of the chosen buckets, with its whole version set (siblings,
//! tombstones and their dots), into a file, one export page at a time
//! ([`dynamo_protocol::Request::ExportVersions`]): each key's set is the join of what its
//! reachable replicas held when its partition was scanned, so it is consistent per key. Memory
//! holds one page. Every page is a checkpoint: an interrupted backup continues after the last
//! whole page ([`BackupOptions::resume`]).
//!
//! A restore merges each key's set into the cluster through the write path
//! ([`dynamo_protocol::Request::MergeVersions`]): a join, never an overwrite. A version the
//! cluster superseded since the backup (an overwrite, a delete) stays superseded, so restoring
//! twice, or into a cluster that moved on, loses nothing and brings back nothing deleted while
//! the delete's tombstone is still kept. A tombstone is reaped once it is older than the
//! cluster's grace period; after that nothing remembers the delete, so a restore of a backup
//! older than the grace period is refused unless the operator accepts that deleted keys may
//! come back ([`RestoreOptions::allow_resurrection`]).
//!
//! This module must not know how nodes scan or merge, or how progress is shown.

mod file;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use dynamo_protocol::{BucketProps, ErrorKind, ListCursor, MAX_LIST_KEYS, RequestOptions};

use crate::{Client, ClientError};
pub use file::{
    BACKUP_FORMAT, BackupFileError, BackupHeader, BackupReader, BackupSummary, BackupWriter, Next,
    Record, ResumePoint, resume_point,
};

/// Why a backup or a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file could not be read or written.
    #[error(transparent)]
    File(#[from] BackupFileError),
    /// The cluster refused or failed a request.
    #[error("{what}: {error}")]
    Cluster {
        /// What was asked.
        what: String,
        /// Why it failed.
        error: ClientError,
    },
    /// The request makes no sense (a bucket that does not exist, a backup too old).
    #[error("{0}")]
    Refused(String),
}

fn cluster(what: impl Into<String>) -> impl FnOnce(ClientError) -> BackupError {
    let what = what.into();
    move |error| BackupError::Cluster { what, error }
}

/// What to back up, and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Buckets to back up; empty: every bucket.
    pub buckets: Vec<String>,
    /// Continue the interrupted backup in the file instead of starting a new one.
    pub resume: bool,
    /// Keys per export page (1 to [`MAX_LIST_KEYS`]; 0 means the most).
    pub page_keys: u32,
}

/// Where a backup stands, for a progress display.
#[derive(Debug, Clone, Default)]
pub struct BackupProgress {
    /// The bucket being read.
    pub bucket: String,
    /// Its position among the buckets (from 1), and how many there are.
    pub bucket_index: usize,
    /// How many buckets the backup holds.
    pub buckets: usize,
    /// The partition the scan is in, and how many the ring has.
    pub partition: u32,
    /// Partitions of the ring.
    pub partitions: u32,
    /// Keys written so far (earlier runs of a resumed backup included).
    pub keys: u64,
    /// Bytes of the file so far.
    pub bytes: u64,
}

/// How a backup ended.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The file's totals.
    pub summary: BackupSummary,
    /// The file's size.
    pub bytes: u64,
    /// Whether an earlier run's records were continued.
    pub resumed: bool,
    /// Whether the file was complete already (nothing was read from the cluster).
    pub already_complete: bool,
    /// Bytes an earlier run had written, kept by this one.
    pub kept_bytes: u64,
    /// What may be missing from the backup (nodes down, hints or handoff pending when it
    /// started).
    pub warnings: Vec<String>,
    /// Why the earlier run's file ended where it did (a record cut short), if it did.
    pub cut: Option<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Backs the cluster's buckets up into `path`, calling `progress` after every page.
pub async fn backup(
    client: &Client,
    path: &Path,
    options: &BackupOptions,
    mut progress: impl FnMut(&BackupProgress),
) -> Result<BackupReport, BackupError> {
    let limit = match options.page_keys {
        0 => MAX_LIST_KEYS,
        n => n.min(MAX_LIST_KEYS),
    };
    // A resumed backup keeps the buckets its first run chose (none named: every bucket).
    let point = if options.resume {
        Some(resume_point(path)?)
    } else {
        None
    };
    let names = match &point {
        Some(point) if !options.buckets.is_empty() && options.buckets != point.header.buckets => {
            return Err(BackupError::Refused(format!(
                "{} was started for {}; resume it without --bucket, or with the same ones",
                path.display(),
                describe_buckets(&point.header.buckets)
            )));
        }
        Some(point) => point.header.buckets.clone(),
        None => options.buckets.clone(),
    };
    if let Some(point) = point.as_ref().filter(|point| point.complete) {
        return Ok(BackupReport {
            summary: point.summary,
            bytes: point.valid_len,
            resumed: true,
            already_complete: true,
            kept_bytes: point.valid_len,
            cut: None,
            warnings: Vec::new(),
        });
    }
    let existing = client
        .list_buckets()
        .await
        .map_err(cluster("listing the buckets"))?;
    let chosen: Vec<BucketProps> = if names.is_empty() {
        existing
    } else {
        let mut chosen = Vec::new();
        for name in &names {
            let Some(props) = existing.iter().find(|props| &props.name == name) else {
                return Err(BackupError::Refused(format!("there is no bucket {name:?}")));
            };
            chosen.push(props.clone());
        }
        chosen
    };
    let partitions = client
        .ring()
        .await
        .map_err(cluster("reading the ring"))?
        .map_or(0, |ring| ring.partition_count());
    let warnings = incompleteness(client).await?;

    let (mut writer, mut summary, done, current, cut) = if let Some(point) = point {
        let writer = BackupWriter::continue_at(path, point.valid_len)?;
        (writer, point.summary, point.done, point.current, point.cut)
    } else {
        if path.exists() {
            return Err(BackupError::Refused(format!(
                "{} exists: name a new file, or continue an interrupted backup with --resume",
                path.display()
            )));
        }
        let header = BackupHeader {
            format: BACKUP_FORMAT,
            started_ms: now_ms(),
            written_by: env!("CARGO_PKG_VERSION").to_owned(),
            buckets: names,
        };
        let writer = BackupWriter::create(path, &header)?;
        (writer, BackupSummary::default(), Vec::new(), None, None)
    };
    let resumed = options.resume;
    let kept_bytes = writer.written();
    // The bucket a resumed backup was in goes first, from where it stopped.
    let mut plan: Vec<(BucketProps, Option<ListCursor>, bool)> = Vec::new();
    if let Some((props, cursor)) = current {
        plan.push((props, cursor, false));
    }
    for props in chosen {
        if !done.contains(&props.name) && plan.iter().all(|(p, _, _)| p.name != props.name) {
            plan.push((props, None, true));
        }
    }
    let buckets = done.len() + plan.len();
    for (index, (props, mut cursor, new_bucket)) in plan.into_iter().enumerate() {
        let mut shown = BackupProgress {
            bucket: props.name.clone(),
            bucket_index: done.len() + index + 1,
            buckets,
            partition: cursor.as_ref().map_or(0, |c| c.partition),
            partitions,
            keys: summary.keys,
            bytes: writer.written(),
        };
        progress(&shown);
        if new_bucket {
            writer.append(&Record::Bucket(props.clone()))?;
            summary.buckets += 1;
        }
        loop {
            let page = export_page(client, &props.name, cursor.as_ref(), limit).await?;
            summary.keys += page.entries.len() as u64;
            summary.deleted += page
                .entries
                .iter()
                .filter(|(_, object)| dynamo_quorum::is_deleted(object))
                .count() as u64;
            cursor.clone_from(&page.next);
            writer.append(&Record::Page(page))?;
            // A checkpoint: a crash of this process keeps every page up to here.
            writer.flush()?;
            shown.partition = cursor.as_ref().map_or(partitions, |c| c.partition);
            shown.keys = summary.keys;
            shown.bytes = writer.written();
            progress(&shown);
            if cursor.is_none() {
                break;
            }
        }
    }
    writer.append(&Record::End(summary))?;
    let bytes = writer.finish()?;
    Ok(BackupReport {
        summary,
        bytes,
        resumed,
        already_complete: false,
        kept_bytes,
        cut,
        warnings,
    })
}

/// "buckets a, b" or "every bucket".
fn describe_buckets(names: &[String]) -> String {
    if names.is_empty() {
        "every bucket".into()
    } else {
        format!("buckets {}", names.join(", "))
    }
}

/// Attempts of one export page before the backup stops (it can be resumed).
const PAGE_ATTEMPTS: u32 = 5;

/// One export page, asked again (after 1, 2, 4, 8 s) while the cluster cannot serve it: a
/// replica that is up must answer for its versions to be in the page.
async fn export_page(
    client: &Client,
    bucket: &str,
    cursor: Option<&ListCursor>,
    limit: u32,
) -> Result<dynamo_protocol::VersionPage, BackupError> {
    let mut attempt = 1;
    loop {
        match client.export_page(bucket, cursor.cloned(), limit).await {
            Ok(page) => return Ok(page),
            Err(error) if attempt < PAGE_ATTEMPTS && transient(&error) => {
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                attempt += 1;
            }
            Err(error) => return Err(cluster(format!("exporting bucket {bucket}"))(error)),
        }
    }
}

/// Whether a failed request may succeed if asked again.
fn transient(error: &ClientError) -> bool {
    match error {
        ClientError::Unreachable(_) => true,
        ClientError::Server(reply) => matches!(
            reply.kind,
            ErrorKind::Unavailable
                | ErrorKind::Timeout
                | ErrorKind::NotReady
                | ErrorKind::Overloaded
        ),
        _ => false,
    }
}

/// What the cluster's state says a backup started now may miss: versions only a down node
/// holds, versions held as hints (read once delivered), partitions being handed over.
async fn incompleteness(client: &Client) -> Result<Vec<String>, BackupError> {
    let status = client
        .status()
        .await
        .map_err(cluster("reading the cluster's status"))?;
    let mut warnings = Vec::new();
    let down: Vec<&str> = status
        .members
        .iter()
        .filter(|m| m.in_ring && !m.up)
        .map(|m| m.id.as_str())
        .collect();
    if !down.is_empty() {
        warnings.push(format!(
            "{} down when the backup started: versions only they held may be missing",
            down.join(", ")
        ));
    }
    let hints: usize = status.members.iter().map(|m| m.pending_hints).sum();
    if hints > 0 {
        warnings.push(format!(
            "{} held {hints} hints: versions written only to fallbacks may be missing",
            status.node
        ));
    }
    if status.handoff.queued > 0 || !status.handoff.running.is_empty() {
        warnings.push(format!(
            "{} was handing partitions over: versions not yet moved may be missing",
            status.node
        ));
    }
    Ok(warnings)
}

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Buckets to restore; empty: every bucket in the file.
    pub buckets: Vec<String>,
    /// Merges in flight at once.
    pub concurrency: usize,
    /// Restore a backup older than the cluster's tombstone grace period, accepting that keys
    /// deleted after the backup, whose tombstones were reaped, come back.
    pub allow_resurrection: bool,
    /// Quorum overrides and timeout for each merge.
    pub options: RequestOptions,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            concurrency: 32,
            allow_resurrection: false,
            options: RequestOptions::default(),
        }
    }
}

/// Where a restore stands, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreProgress {
    /// Bytes of the file read.
    pub bytes: u64,
    /// The file's size.
    pub total_bytes: u64,
    /// Keys merged.
    pub keys: u64,
    /// Keys whose merge failed.
    pub failed: u64,
}

/// How a restore ended.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Keys merged (acknowledged by W replicas).
    pub keys: u64,
    /// Buckets restored, and those created because the cluster lacked them.
    pub buckets: u32,
    /// Buckets created.
    pub created: Vec<String>,
    /// Keys whose merge failed (restoring again is safe and merges them).
    pub failed: u64,
    /// The first failures, at most [`MAX_REPORTED_FAILURES`].
    pub failures: Vec<String>,
    /// Things the operator should know (a bucket whose properties differ from the backup's).
    pub notes: Vec<String>,
    /// Bytes of the file read.
    pub bytes: u64,
    /// Why the backup is incomplete (interrupted, or cut or damaged), if it is: what it held
    /// was restored.
    pub incomplete: Option<String>,
}

/// Failures a restore keeps the text of.
pub const MAX_REPORTED_FAILURES: usize = 10;

/// Merges the backup in `path` into the cluster, calling `progress` after every page.
pub async fn restore(
    client: &Client,
    path: &Path,
    options: &RestoreOptions,
    mut progress: impl FnMut(&RestoreProgress),
) -> Result<RestoreReport, BackupError> {
    let (mut reader, header) = BackupReader::open(path)?;
    let status = client
        .status()
        .await
        .map_err(cluster("reading the cluster's status"))?;
    let grace_ms = status.reaper.grace_ms;
    // Checked again before every page: a long restore may outlive the grace period.
    let too_old = || {
        let age_ms = now_ms().saturating_sub(header.started_ms);
        (grace_ms > 0 && age_ms >= grace_ms && !options.allow_resurrection).then(|| {
            BackupError::Refused(format!(
                "this backup was taken {} ago, and the cluster reaps tombstones older than {}: \
                 keys deleted since the backup may be forgotten, and restoring would bring \
                 them back. Restore anyway with --allow-resurrection",
                show_duration(age_ms),
                show_duration(grace_ms)
            ))
        })
    };
    if let Some(refusal) = too_old() {
        return Err(refusal);
    }
    let mut existing: HashMap<String, BucketProps> = client
        .list_buckets()
        .await
        .map_err(cluster("listing the buckets"))?
        .into_iter()
        .map(|props| (props.name.clone(), props))
        .collect();
    let concurrency = options.concurrency.max(1);
    let mut report = RestoreReport::default();
    let mut shown = RestoreProgress {
        total_bytes: reader.length(),
        ..RestoreProgress::default()
    };
    let mut bucket: Option<String> = None;
    let mut complete = false;
    let mut found: Vec<String> = Vec::new();
    loop {
        match reader.next_record()? {
            Next::Record(Record::Header(_)) => {
                return Err(BackupError::Refused(format!(
                    "{}: a second header; the file is damaged",
                    path.display()
                )));
            }
            Next::Record(Record::Bucket(props)) => {
                bucket = None;
                found.push(props.name.clone());
                if !options.buckets.is_empty() && !options.buckets.contains(&props.name) {
                    continue;
                }
                match existing.get(&props.name) {
                    None => {
                        client
                            .create_bucket(props.clone())
                            .await
                            .map_err(cluster(format!("creating bucket {}", props.name)))?;
                        report.created.push(props.name.clone());
                        existing.insert(props.name.clone(), props.clone());
                    }
                    Some(current) if current != &props => report.notes.push(format!(
                        "bucket {} exists with other properties than in the backup; it keeps its own",
                        props.name
                    )),
                    Some(_) => {}
                }
                report.buckets += 1;
                bucket = Some(props.name);
            }
            Next::Record(Record::Page(page)) => {
                let Some(name) = &bucket else {
                    continue;
                };
                if let Some(refusal) = too_old() {
                    return Err(refusal);
                }
                let mut merges = FuturesUnordered::new();
                let mut entries = page.entries.into_iter();
                loop {
                    while merges.len() < concurrency {
                        let Some((key, object)) = entries.next() else {
                            break;
                        };
                        merges.push(async move {
                            let outcome = client
                                .merge_versions(name, &key, object, options.options)
                                .await;
                            (key, outcome)
                        });
                    }
                    let Some((key, outcome)) = merges.next().await else {
                        break;
                    };
                    match outcome {
                        Ok(_) => report.keys += 1,
                        Err(error) => {
                            report.failed += 1;
                            if report.failures.len() < MAX_REPORTED_FAILURES {
                                report.failures.push(format!(
                                    "{name}/{}: {error}",
                                    String::from_utf8_lossy(&key)
                                ));
                            }
                        }
                    }
                }
            }
            Next::Record(Record::End(_)) => {
                complete = true;
                break;
            }
            Next::End => {
                report.incomplete = Some(format!(
                    "{} ends without its end record: the backup was interrupted (finish it \
                     with `dynamo backup --resume`)",
                    path.display()
                ));
                break;
            }
            Next::Cut(why) => {
                report.incomplete = Some(why);
                break;
            }
        }
        report.bytes = reader.offset();
        shown.bytes = report.bytes;
        shown.keys = report.keys;
        shown.failed = report.failed;
        progress(&shown);
    }
    report.bytes = reader.offset();
    let missing: Vec<&String> = options
        .buckets
        .iter()
        .filter(|name| !found.contains(name))
        .collect();
    // In an incomplete backup, the bucket may be in the part that is missing.
    if complete && !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|name| name.as_str()).collect();
        return Err(BackupError::Refused(format!(
            "{} holds no bucket {}; it holds {}",
            path.display(),
            names.join(", "),
            describe_buckets(&found)
        )));
    }
    Ok(report)
}

/// How two backups differ, key by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Keys with equal version sets in both.
    pub same: u64,
    /// Keys in the first backup only.
    pub only_first: u64,
    /// Keys in the second backup only.
    pub only_second: u64,
    /// Keys whose version sets differ.
    pub differ: u64,
    /// The first differences found (bucket/key and how), at most [`MAX_REPORTED_FAILURES`].
    pub examples: Vec<String>,
}

impl Comparison {
    /// Whether the two backups hold the same keys with the same versions.
    pub fn equal(&self) -> bool {
        self.only_first == 0 && self.only_second == 0 && self.differ == 0
    }

    fn example(&mut self, bucket: &str, key: &[u8], how: &str) {
        if self.examples.len() < MAX_REPORTED_FAILURES {
            let key = String::from_utf8_lossy(key);
            self.examples.push(format!("{bucket}/{key}: {how}"));
        }
    }
}

/// Every (bucket, key) of a backup with a hash of its version set, one record at a time.
fn for_each_key(path: &Path, mut visit: impl FnMut(&str, Vec<u8>, u64)) -> Result<(), BackupError> {
    use std::hash::{Hash as _, Hasher as _};
    let (mut reader, _) = BackupReader::open(path)?;
    let mut bucket = String::new();
    loop {
        match reader.next_record()? {
            Next::Record(Record::Bucket(props)) => bucket = props.name,
            Next::Record(Record::Page(page)) => {
                for (key, object) in page.entries {
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    postcard::to_stdvec(&object)
                        .unwrap_or_default()
                        .hash(&mut hasher);
                    visit(&bucket, key, hasher.finish());
                }
            }
            Next::Record(Record::Header(_)) => {}
            Next::Record(Record::End(_)) => return Ok(()),
            Next::End => {
                return Err(BackupError::Refused(format!(
                    "{} is incomplete (it has no end record): finish it with `dynamo backup --resume`",
                    path.display()
                )));
            }
            Next::Cut(why) => return Err(BackupError::Refused(why)),
        }
    }
}

/// Compares two backups key by key (for example one of a cluster and one of the cluster it
/// was restored into): the keys and version sets of both, in any order. Holds a hash of every
/// key of the first in memory (about 100 bytes a key).
pub fn compare(first: &Path, second: &Path) -> Result<Comparison, BackupError> {
    let mut keys: HashMap<(String, Vec<u8>), u64> = HashMap::new();
    for_each_key(first, |bucket, key, hash| {
        keys.insert((bucket.to_owned(), key), hash);
    })?;
    let mut comparison = Comparison::default();
    for_each_key(second, |bucket, key, hash| {
        match keys.remove(&(bucket.to_owned(), key.clone())) {
            Some(first) if first == hash => comparison.same += 1,
            Some(_) => {
                comparison.differ += 1;
                comparison.example(bucket, &key, "the version sets differ");
            }
            None => {
                comparison.only_second += 1;
                comparison.example(bucket, &key, "only in the second");
            }
        }
    })?;
    comparison.only_first = keys.len() as u64;
    let mut left: Vec<_> = keys.into_keys().collect();
    left.sort();
    for (bucket, key) in left.iter().take(MAX_REPORTED_FAILURES) {
        comparison.example(bucket, key, "only in the first");
    }
    Ok(comparison)
}

/// A duration for a person: "3 days", "5 hours", "42 minutes", "17 seconds".
fn show_duration(ms: u64) -> String {
    let duration = Duration::from_millis(ms);
    let seconds = duration.as_secs();
    match seconds {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s if s >= 2 * 60 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}
