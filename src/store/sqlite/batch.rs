//! Group commit: writes that arrive while another write is committing are run
//! together in the next transaction and made durable by one fsync.
//!
//! With `synchronous=FULL` every commit waits for the disk, and SQLite lets one
//! writer in at a time, so N concurrent writers used to pay N fsyncs one after the
//! other. Now each writer queues its work and then waits for the connection; whoever
//! gets it runs every queued job in one `BEGIN IMMEDIATE` transaction, each inside its
//! own savepoint (a job that fails is rolled back alone and changes nothing, exactly as
//! its own transaction would), and commits once. A caller returns only after the
//! commit that contains its job is durable, so acknowledgements mean what they meant.

use super::{StoreError, E};
use std::sync::{Arc, Mutex};

/// Where a job's result lands; shared between the caller and whoever runs the job.
pub(crate) trait Slot: Send + Sync {
    /// Replaces the result with an error (the batch's commit failed).
    fn fail(&self, e: StoreError);
}

/// A typed result slot.
pub(crate) struct TypedSlot<T>(Mutex<Option<Result<T, StoreError>>>);

impl<T> TypedSlot<T> {
    /// An empty slot.
    pub(crate) fn new() -> Self {
        TypedSlot(Mutex::new(None))
    }

    /// Stores the result of the job.
    pub(crate) fn set(&self, r: Result<T, StoreError>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    }

    /// Takes the result, if the job has run.
    pub(crate) fn take(&self) -> Option<Result<T, StoreError>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl<T: Send> Slot for TypedSlot<T> {
    fn fail(&self, e: StoreError) {
        self.set(Err(e));
    }
}

/// The work of one write: runs against the batch's transaction; false on failure.
pub(crate) type Work = Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> bool + Send>;

/// One queued write.
pub(crate) struct Job {
    /// The work.
    pub(crate) work: Work,
    /// Its result slot (to fail it if the commit fails).
    pub(crate) slot: Arc<dyn Slot>,
}

/// Runs `jobs` in one IMMEDIATE transaction, each in its own savepoint, and commits.
/// On a transaction-level failure every job's slot gets the error.
pub(crate) fn run_batch(
    conn: &mut rusqlite::Connection,
    jobs: Vec<Job>,
    convert: impl Fn(E) -> StoreError,
) {
    let slots: Vec<Arc<dyn Slot>> = jobs.iter().map(|j| j.slot.clone()).collect();
    let outcome = (|| -> Result<(), E> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for job in jobs {
            tx.execute_batch("SAVEPOINT borg_job")?;
            if (job.work)(&tx) {
                tx.execute_batch("RELEASE borg_job")?;
            } else {
                tx.execute_batch("ROLLBACK TO borg_job; RELEASE borg_job")?;
            }
        }
        tx.commit()?;
        Ok(())
    })();
    if let Err(e) = outcome {
        let err = convert(e);
        for s in slots {
            s.fail(err.clone());
        }
    }
}
