//! Backups and restores while the run goes on (issue 29), in runs with `backup_mix`: a client
//! exports the bucket page by page as `dynamo backup` does, through a node picked at random
//! while faults happen, and later merges a backup it took back into the cluster key by key
//! (`MergeVersions`, as `dynamo restore` does, with the admin role). The invariants that must
//! hold anyway (nothing acknowledged lost, no deleted value back, siblings only of concurrent
//! writes) are the check: a restore may bring back nothing the cluster superseded.
//!
//! A restore follows the rule `dynamo restore` enforces: only a backup younger than the
//! tombstone grace period, less the most two nodes' clocks may differ by here, since a delete
//! protects against older copies only while its tombstone exists.
//!
//! This module must not know how nodes export or merge; it sees only answers.

use dynamo_protocol::{ErrorKind, ListCursor, Request, RequestOptions, Response};
use dynamo_quorum::Object;
use rand::Rng;

use super::Sim;
use super::faults::MAX_CLOCK_OFFSET_MS;

/// How backups and restores went during a run (all zero in a run without them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backups {
    /// Backups completed.
    pub taken: u64,
    /// Backups that stopped at a failed page.
    pub failed: u64,
    /// Restores completed.
    pub restored: u64,
    /// Keys merged (acknowledged) by restores.
    pub merged: u64,
    /// Merges that failed (the restore goes on with the next key).
    pub merge_failures: u64,
    /// Restores not started because every backup was too old for the tombstone grace.
    pub too_old: u64,
}

/// Attempts of one export page, as `dynamo backup` makes.
const PAGE_ATTEMPTS: u32 = 5;

/// A backup a client completed.
#[derive(Debug, Clone)]
pub(super) struct TakenBackup {
    /// When its first page was asked for (virtual milliseconds).
    started: u64,
    entries: Vec<(Vec<u8>, Object)>,
}

/// A backup or a restore in progress.
#[derive(Debug, Clone)]
pub(super) enum BackupStep {
    /// Pages read so far, where the next starts, and how many more times a failed page is
    /// asked for (as `dynamo backup` does).
    Export {
        started: u64,
        entries: Vec<(Vec<u8>, Object)>,
        cursor: Option<ListCursor>,
        attempts_left: u32,
    },
    /// Keys still to merge, the next one last.
    Restore { remaining: Vec<(Vec<u8>, Object)> },
}

impl Sim {
    /// A new backup, or a restore of a backup young enough, picked at random.
    pub(super) fn backup_or_restore(&mut self) -> BackupStep {
        let wants_restore = !self.backups.is_empty() && self.rng.random_bool(0.5);
        if wants_restore {
            let limit = self
                .tombstone_grace_ms()
                .map(|grace| grace.saturating_sub(MAX_CLOCK_OFFSET_MS));
            let young: Vec<usize> = (0..self.backups.len())
                .filter(|&i| limit.is_none_or(|limit| self.now - self.backups[i].started < limit))
                .collect();
            if young.is_empty() {
                self.backup_counts.too_old += 1;
            } else {
                let pick = young[self.rng.random_range(0..young.len())];
                let mut remaining = self.backups[pick].entries.clone();
                remaining.reverse();
                return BackupStep::Restore { remaining };
            }
        }
        BackupStep::Export {
            started: self.now,
            entries: Vec::new(),
            cursor: None,
            attempts_left: PAGE_ATTEMPTS,
        }
    }

    /// The request a backup step sends next (`None`: a restore with nothing left).
    pub(super) fn backup_request(step: &BackupStep) -> Option<Request> {
        match step {
            BackupStep::Export { cursor, .. } => Some(Request::ExportVersions {
                bucket: super::SIM_BUCKET.into(),
                cursor: cursor.clone(),
                limit: 3,
            }),
            BackupStep::Restore { remaining } => {
                let (key, object) = remaining.last()?;
                Some(Request::MergeVersions {
                    bucket: super::SIM_BUCKET.into(),
                    key: key.clone(),
                    object: object.clone(),
                    options: RequestOptions::default(),
                    forwarded: false,
                })
            }
        }
    }

    /// The answer to a backup step's request (`None`: it failed or timed out): the step that
    /// follows, or `None` when the operation is over.
    pub(super) fn backup_answered(
        &mut self,
        step: BackupStep,
        response: Option<Response>,
    ) -> Option<BackupStep> {
        match step {
            BackupStep::Export {
                started,
                mut entries,
                cursor,
                attempts_left,
            } => {
                let page = match response {
                    Some(Response::Versions(page)) => page,
                    Some(Response::Error(error)) if refused(&error) => {
                        let message = format!("a backup's page was refused: {}", error.message);
                        self.history.record_backup_refusal(b"", message);
                        return None;
                    }
                    // The same page again, through whichever node the next attempt picks.
                    _ if attempts_left > 1 => {
                        return Some(BackupStep::Export {
                            started,
                            entries,
                            cursor,
                            attempts_left: attempts_left - 1,
                        });
                    }
                    _ => {
                        self.backup_counts.failed += 1;
                        return None;
                    }
                };
                entries.extend(page.entries);
                if let Some(next) = page.next {
                    return Some(BackupStep::Export {
                        started,
                        entries,
                        cursor: Some(next),
                        attempts_left: PAGE_ATTEMPTS,
                    });
                }
                self.backup_counts.taken += 1;
                self.backups.push(TakenBackup { started, entries });
                None
            }
            BackupStep::Restore { mut remaining } => {
                let key = remaining.pop().map(|(key, _)| key).unwrap_or_default();
                match response {
                    Some(Response::Put(_)) => self.backup_counts.merged += 1,
                    Some(Response::Error(error)) if refused(&error) => {
                        // Faults make a merge fail, never refuse it: the versions came from
                        // the cluster, and the operator may restore.
                        let message = format!("a restore's merge was refused: {}", error.message);
                        self.history.record_backup_refusal(&key, message);
                    }
                    _ => self.backup_counts.merge_failures += 1,
                }
                if remaining.is_empty() {
                    self.backup_counts.restored += 1;
                    return None;
                }
                Some(BackupStep::Restore { remaining })
            }
        }
    }
}

/// Whether an error says the request itself was wrong or not allowed (a bug here), rather than
/// that the cluster could not serve it then. A node that has not learned the bucket yet (it
/// joined, or lost its disk, and gossip has not brought the bucket table) refuses it as
/// unknown; that is not counted.
fn refused(error: &dynamo_protocol::ErrorReply) -> bool {
    match error.kind {
        ErrorKind::Forbidden => true,
        ErrorKind::BadRequest => !error.message.contains("bucket"),
        _ => false,
    }
}
