//! Group commit on a dedicated writer thread: every write of a store goes to one
//! thread that owns the write connection; writes that arrive while it is committing
//! are run together in its next transaction and made durable by one fsync.
//!
//! With `synchronous=FULL` every commit waits for the disk, and SQLite lets one
//! writer in at a time, so N concurrent writers used to pay N fsyncs one after the
//! other. The writer takes everything queued, runs it in one `BEGIN IMMEDIATE`
//! transaction, each job inside its own savepoint (a job that fails is rolled back
//! alone and changes nothing, exactly as its own transaction would), commits once, and
//! only then wakes the callers: acknowledgements mean what they meant.
//!
//! Why a thread and not "whoever holds the connection mutex commits for the others":
//! that leader scheme made every caller whose job was already durable queue for the
//! (unfair) mutex just to learn it, so under load a caller could wait out several
//! batches. Here the queue is FIFO and a caller waits at most for the batch in flight
//! plus its own (the claims bench's p99 fell from 25 ms to the figure in the README).

use super::{StoreError, E};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Most jobs run in one transaction: bounds how long the first job of a batch waits.
const MAX_BATCH: usize = 256;

/// Where a job's result lands; shared between the caller and the writer thread.
pub(crate) trait Slot: Send + Sync {
    /// Replaces the result with an error (the batch's commit failed).
    fn fail(&self, e: StoreError);
    /// The batch holding the job is over (committed or failed): wakes the caller.
    fn finish(&self);
}

/// A typed result slot the caller blocks on.
pub(crate) struct TypedSlot<T> {
    state: Mutex<(Option<Result<T, StoreError>>, bool)>,
    done: Condvar,
}

impl<T> TypedSlot<T> {
    /// An empty slot.
    pub(crate) fn new() -> Self {
        TypedSlot {
            state: Mutex::new((None, false)),
            done: Condvar::new(),
        }
    }

    /// Stores the result of the job (not yet visible to the caller: see `finish`).
    pub(crate) fn set(&self, r: Result<T, StoreError>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 = Some(r);
    }

    /// Waits until the batch holding the job is over, and takes the result.
    pub(crate) fn wait(&self) -> Result<T, StoreError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !st.1 {
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.0.take().unwrap_or_else(|| {
            Err(StoreError::Other(
                "a store write was lost: its batch ended without a result".into(),
            ))
        })
    }
}

impl<T: Send> Slot for TypedSlot<T> {
    fn fail(&self, e: StoreError) {
        self.set(Err(e));
    }

    fn finish(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.done.notify_one();
    }
}

/// The work of one write: runs against the batch's transaction, with the writer's error
/// conversion (which names the database); false on failure.
pub(crate) type Work =
    Box<dyn FnOnce(&rusqlite::Transaction<'_>, &dyn Fn(E) -> StoreError) -> bool + Send>;

/// One queued write.
pub(crate) struct Job {
    /// The work.
    pub(crate) work: Work,
    /// Its result slot (to fail it if the commit fails, and to wake its caller).
    pub(crate) slot: Arc<dyn Slot>,
}

/// The writer thread of one store, and the queue into it. Dropping it lets the thread
/// finish what is queued, close its connection and exit, and waits for that.
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread. `prepare` runs on it before each batch (the busy handler's
    /// per-thread timeout); `convert` names the database in errors.
    pub(crate) fn start(
        mut conn: rusqlite::Connection,
        prepare: impl Fn() + Send + 'static,
        convert: impl Fn(E) -> StoreError + Send + 'static,
    ) -> std::io::Result<Writer> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("borg-store-writer".into())
            .spawn(move || {
                while let Ok(first) = jobs.recv() {
                    let mut batch = vec![first];
                    batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
                    prepare();
                    let slots: Vec<Arc<dyn Slot>> = batch.iter().map(|j| j.slot.clone()).collect();
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_batch(&mut conn, batch, &convert)
                    }));
                    let failure = match ran {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(convert(e)),
                        // A job's code panicked mid-batch: the transaction was rolled
                        // back when it unwound; nobody's write happened.
                        Err(_) => Some(StoreError::Other(
                            "a store write panicked; the batch holding it was rolled back".into(),
                        )),
                    };
                    for s in slots {
                        if let Some(e) = &failure {
                            s.fail(e.clone());
                        }
                        s.finish();
                    }
                }
            })?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues a job; false if the writer thread is gone (the job will never run).
    pub(crate) fn submit(&self, job: Job) -> bool {
        self.queue.as_ref().is_some_and(|q| q.send(job).is_ok())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `jobs` in one IMMEDIATE transaction, each in its own savepoint, and commits.
/// An error here is the whole batch's: the caller fails every job's slot with it.
fn run_batch(
    conn: &mut rusqlite::Connection,
    jobs: Vec<Job>,
    convert: &dyn Fn(E) -> StoreError,
) -> Result<(), E> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for job in jobs {
        tx.prepare_cached("SAVEPOINT borg_job")?.execute([])?;
        if (job.work)(&tx, convert) {
            tx.prepare_cached("RELEASE borg_job")?.execute([])?;
        } else {
            tx.prepare_cached("ROLLBACK TO borg_job")?.execute([])?;
            tx.prepare_cached("RELEASE borg_job")?.execute([])?;
        }
    }
    tx.commit()?;
    Ok(())
}
