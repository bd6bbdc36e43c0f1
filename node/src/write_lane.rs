//! The write lane: one thread per node that applies single-key writes in arrival order and
//! makes each run of them durable with one fsync.
//!
//! A durable write used to take a blocking-pool thread of its own: the driver woke a thread,
//! the thread buffered the write, then slept on the store's group commit until some thread's
//! fsync covered it, and every fsync woke all of its waiters at once. On a small machine those
//! hand-offs cost more CPU than the writes (the profile of issue 16: about a quarter of a
//! node's time in the scheduler during a write load). The lane keeps the same group commit
//! with one sleeper: it takes every write queued so far, applies each *buffered* under its
//! partition lock, runs one [`Store::flush`] for those that asked for `Sync`, and only then
//! reports them. So no write is answered before an fsync that started after it, as before, and
//! a failed fsync fails exactly the writes it was to cover. Its queue has no bound of its own:
//! every write in it belongs to a request in flight (bounded by the gate) or to a hint being
//! delivered or merged (bounded by the core's delivery limits).
//!
//! This module must NOT decide anything about the writes: which ones exist, their durability
//! and what their results mean are the core's. It only runs them.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use dynamo_storage::Store;

use dynamo_core::{OpId, StoreError, StoreErrorKind, StoreOp, StoreResult};

/// Most writes one fsync covers; the rest wait for the next one.
const MAX_RUN: usize = 256;

/// Called after a write succeeded (and is as durable as it asked), before it is reported.
pub(crate) type OnSuccess = Box<dyn FnOnce() + Send>;

/// What the lane reports a write's outcome to.
pub(crate) type Report = Box<dyn Fn(OpId, Result<StoreResult, StoreError>) + Send>;

/// One write for the lane.
pub(crate) struct Write {
    /// The core's operation id.
    pub(crate) id: OpId,
    /// A single-key write: [`StoreOp::Update`] or [`StoreOp::Apply`].
    pub(crate) op: StoreOp,
    /// Run once the write succeeded.
    pub(crate) on_success: Option<OnSuccess>,
}

/// The sending side of the lane; the thread ends when it is dropped.
pub(crate) struct WriteLane {
    queue: mpsc::Sender<Write>,
}

impl WriteLane {
    /// Starts the lane's thread over `store`; every outcome goes to `report`.
    pub(crate) fn start<S: Store<dynamo_quorum::Value> + Send + Sync + 'static + ?Sized>(
        name: &str,
        store: Arc<S>,
        report: Report,
    ) -> std::io::Result<(WriteLane, thread::JoinHandle<()>)> {
        let (queue, writes) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(format!("{name}-writes"))
            .spawn(move || run(&*store, &writes, &*report))?;
        Ok((WriteLane { queue }, thread))
    }

    /// Queues a write. Returns its id when the lane has stopped (its thread panicked).
    pub(crate) fn submit(&self, write: Write) -> Result<(), OpId> {
        self.queue.send(write).map_err(|error| error.0.id)
    }
}

/// The lane's loop: a run of queued writes, one fsync for it, then their reports.
fn run<S: Store<dynamo_quorum::Value> + ?Sized>(
    store: &S,
    writes: &mpsc::Receiver<Write>,
    report: &dyn Fn(OpId, Result<StoreResult, StoreError>),
) {
    let mut done = Vec::with_capacity(MAX_RUN);
    while let Ok(first) = writes.recv() {
        let mut needs_fsync = false;
        let mut next = Some(first);
        while let Some(mut write) = next {
            let durable = write.op.take_durability();
            let result = execute_guarded(store, write.op);
            needs_fsync |= durable && result.is_ok();
            done.push((write.id, durable, result, write.on_success));
            next = if done.len() < MAX_RUN {
                writes.try_recv().ok()
            } else {
                None
            };
        }
        let fsync = if needs_fsync {
            guarded(|| store.flush().map_err(StoreError::from))
        } else {
            Ok(())
        };
        for (id, durable, result, on_success) in done.drain(..) {
            let result = match (result, &fsync) {
                (Ok(_), Err(error)) if durable => Err(StoreError::new(
                    error.kind,
                    format!("the write could not be made durable: {error}"),
                )),
                (result, _) => result,
            };
            if result.is_ok()
                && let Some(on_success) = on_success
            {
                on_success();
            }
            report(id, result);
        }
    }
}

/// Runs a store operation for the node (here, on the driver or on the blocking pool).
pub(crate) fn execute_guarded<S: Store<dynamo_quorum::Value> + ?Sized>(
    store: &S,
    op: StoreOp,
) -> Result<StoreResult, StoreError> {
    guarded(|| dynamo_core::execute(store, op))
}

/// A panic in the store is an error for this operation, not a lost answer, a dead lane or a
/// dead driver.
fn guarded<T>(work: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(failed("the store panicked on this operation")))
}

/// A store error that is this node's fault (the disk, the engine, the lane itself).
pub(crate) fn failed(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Failed, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_quorum::Value;
    use dynamo_storage::Durability;
    use dynamo_storage::{MemoryStore, StoreOptions};
    use dynamo_vclock::VClock;
    use std::sync::Mutex;

    fn update(key: &str, durability: Durability) -> StoreOp {
        StoreOp::Update {
            partition: 0,
            key: key.as_bytes().to_vec(),
            context: VClock::new(),
            value: Value::Data(b"v".to_vec()),
            now: dynamo_core::Time::from_millis(1),
            durability,
        }
    }

    /// Every write is reported once, in the order it was queued, and is in the store by then.
    #[test]
    fn every_write_is_applied_and_reported_once_in_order() {
        let store = Arc::new(MemoryStore::<Value>::open(&StoreOptions::new("n1", 1)).unwrap());
        let reports = Arc::new(Mutex::new(Vec::new()));
        let (lane, thread) = {
            let reports = reports.clone();
            let store_seen = store.clone();
            WriteLane::start(
                "n1",
                store.clone(),
                Box::new(move |id, result| {
                    let stored = store_seen.get(0, b"k3").map(|set| set.is_some());
                    reports
                        .lock()
                        .unwrap()
                        .push((id, result.is_ok(), stored.unwrap_or(false)));
                }),
            )
            .unwrap()
        };
        let succeeded = Arc::new(Mutex::new(0));
        for i in 0..200u64 {
            let durability = if i % 2 == 0 {
                Durability::Sync
            } else {
                Durability::Buffered
            };
            let succeeded = succeeded.clone();
            let key = format!("k{}", i % 7);
            lane.submit(Write {
                id: OpId(i),
                op: update(&key, durability),
                on_success: Some(Box::new(move || *succeeded.lock().unwrap() += 1)),
            })
            .unwrap_or_else(|_| panic!("the lane stopped"));
        }
        drop(lane);
        thread.join().unwrap();
        let reports = reports.lock().unwrap();
        let ids: Vec<u64> = reports.iter().map(|(id, _, _)| id.0).collect();
        assert_eq!(ids, (0..200).collect::<Vec<_>>());
        assert!(reports.iter().all(|(_, ok, _)| *ok));
        // k3 is written by op 3; every report from there on sees it.
        assert!(reports.iter().skip(3).all(|(_, _, stored)| *stored));
        assert_eq!(*succeeded.lock().unwrap(), 200);
    }

    /// Writes what `durable` says durably, the rest buffered, then loses power: what survives
    /// is what the lane's fsyncs covered.
    fn survivors_of_a_crash(durable: impl Fn(u64) -> bool) -> usize {
        let options = StoreOptions::new("n1", 1);
        let store = Arc::new(MemoryStore::<Value>::open(&options).unwrap());
        let (lane, thread) = WriteLane::start(
            "n1",
            store.clone(),
            Box::new(|_, result| assert!(result.is_ok())),
        )
        .unwrap();
        for i in 0..50u64 {
            let durability = if durable(i) {
                Durability::Sync
            } else {
                Durability::Buffered
            };
            let op = update(&format!("k{i}"), durability);
            let write = Write {
                id: OpId(i),
                op,
                on_success: None,
            };
            assert!(lane.submit(write).is_ok());
        }
        drop(lane);
        thread.join().unwrap();
        let store = Arc::try_unwrap(store).unwrap().crash(&options).unwrap();
        (0..50)
            .filter(|i| store.get(0, format!("k{i}").as_bytes()).unwrap().is_some())
            .count()
    }

    /// The lane writes buffered and fsyncs once per run, so a durable write makes every write
    /// queued before it durable too, as fjall's in-order journal does (paper 6.1: a write is
    /// acknowledged once it is as durable as it asked); buffered writes alone are not.
    #[test]
    fn a_durable_write_is_fsynced_with_the_writes_before_it() {
        assert_eq!(survivors_of_a_crash(|_| false), 0);
        assert_eq!(survivors_of_a_crash(|i| i == 49), 50);
        assert_eq!(survivors_of_a_crash(|_| true), 50);
    }

    #[test]
    fn only_single_key_writes_change_durability() {
        let mut sync = update("k", Durability::Sync);
        assert!(sync.take_durability());
        assert!(matches!(
            sync,
            StoreOp::Update {
                durability: Durability::Buffered,
                ..
            }
        ));
        assert!(!update("k", Durability::Buffered).take_durability());
        let mut get = StoreOp::Get {
            partition: 0,
            key: b"k".to_vec(),
        };
        assert!(!get.take_durability());
    }
}
