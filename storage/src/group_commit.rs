//! Group commit: writers that each need their write durable share one fsync, as databases do.
//!
//! A writer first puts its write in the engine's buffer, then takes a ticket ([`GroupCommit::
//! written`]) and waits ([`GroupCommit::wait_durable`]). If no fsync is running, it becomes the
//! leader and runs one, which covers every write whose ticket was taken before it started;
//! writers that arrive meanwhile wait for it, and the first of them whose ticket it did not
//! cover leads the next. So N concurrent writers pay about two fsyncs instead of N, and none
//! returns before an fsync that started after its write has finished.
//!
//! This module must not know the engine: the fsync is a closure.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out (writes in the buffer).
    written: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// An fsync is running.
    syncing: bool,
    /// Fsyncs run so far (for tests and status).
    syncs: u64,
}

/// Shares fsyncs between concurrent durable writers.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    finished: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under a panic elsewhere: every update is one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A ticket for a write that is now in the engine's buffer.
    pub(crate) fn written(&self) -> u64 {
        let mut state = self.lock();
        state.written += 1;
        state.written
    }

    /// Returns once the write of `ticket` is durable, running `sync` (an fsync of everything
    /// buffered) when no running fsync covers it. A failed fsync is returned to its leader; the
    /// writers it would have covered try again.
    pub(crate) fn wait_durable<E>(
        &self,
        ticket: u64,
        sync: impl Fn() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut state = self.lock();
        loop {
            if state.durable >= ticket {
                return Ok(());
            }
            if state.syncing {
                state = self
                    .finished
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.syncing = true;
            let covers = state.written;
            drop(state);
            let outcome = sync();
            state = self.lock();
            state.syncing = false;
            state.syncs += 1;
            if outcome.is_ok() {
                state.durable = state.durable.max(covers);
            }
            self.finished.notify_all();
            outcome?;
        }
    }

    /// Fsyncs run so far.
    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.lock().syncs
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Barrier};

    use super::*;

    /// Writers whose writes are all buffered before any waits share one fsync; a write
    /// buffered after an fsync finished gets a new one.
    #[test]
    fn concurrent_writers_share_an_fsync() {
        let group = Arc::new(GroupCommit::default());
        let fsyncs = Arc::new(AtomicU64::new(0));
        let all_written = Arc::new(Barrier::new(16));
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let (group, fsyncs, all_written) =
                    (group.clone(), fsyncs.clone(), all_written.clone());
                std::thread::spawn(move || {
                    let ticket = group.written();
                    all_written.wait();
                    group.wait_durable(ticket, || {
                        fsyncs.fetch_add(1, Ordering::SeqCst);
                        Ok::<(), ()>(())
                    })
                })
            })
            .collect();
        for writer in writers {
            assert_eq!(writer.join().expect("writer"), Ok(()));
        }
        assert_eq!(fsyncs.load(Ordering::SeqCst), 1);
        assert_eq!(group.syncs(), 1);
        let later = group.written();
        assert_eq!(group.wait_durable(later, || Ok::<(), ()>(())), Ok(()));
        assert_eq!(group.syncs(), 2);
    }

    /// A failed fsync makes nothing durable: the leader gets the error, and the next writer
    /// runs its own fsync rather than trusting the failed one.
    #[test]
    fn a_failed_fsync_covers_nothing() {
        let group = GroupCommit::default();
        let ticket = group.written();
        assert_eq!(
            group.wait_durable(ticket, || Err("disk full")),
            Err("disk full")
        );
        let attempts = AtomicU64::new(0);
        let retried = group.wait_durable(ticket, || {
            attempts.fetch_add(1, Ordering::SeqCst);
            Ok::<(), &str>(())
        });
        assert_eq!(retried, Ok(()));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }
}
