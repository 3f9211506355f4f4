//! The merge queue inside the run loop (`borg run --merge`): a task that succeeded
//! (its gates and review passed) asks for a pass of the queue; a pass runs on the
//! blocking pool, never on the loop's thread, one at a time: what succeeds while one
//! runs is batched into the next. Its end is an event of its own
//! ([`Scheduler::on_merged`]): the resolve and fix tasks it created join the run (and
//! are dispatched like the others), and the run ends only when both its tasks and the
//! queue are done: once every task is terminal, a last pass runs if anything finished
//! since the last one started. Each step of a pass is durable in the store
//! (`MergeStore`), so a borg killed mid-pass and run again continues the queue.

use super::Scheduler;
use crate::run::integrate::{IntegrateError, Merging};
use crate::show::progress::Event;
use crate::store::call as db;
use tokio::task::{JoinError, JoinHandle};

/// What a pass gave back: the tasks it created, or why it stopped.
pub(super) type PassResult = Result<Result<Vec<String>, IntegrateError>, JoinError>;

/// The queue's state in the run loop.
pub(super) struct MergeLoop {
    /// The queue.
    hook: Merging,
    /// The pass running now.
    running: Option<JoinHandle<Result<Vec<String>, IntegrateError>>>,
    /// A pass is wanted (a task succeeded, or the run just started).
    wanted: bool,
    /// An attempt ended since the last pass started (a final pass is due).
    stale: bool,
}

impl MergeLoop {
    /// The queue of `hook`; the run's first pass lands what earlier runs finished.
    pub(super) fn new(hook: Merging) -> MergeLoop {
        MergeLoop {
            hook,
            running: None,
            wanted: true,
            stale: true,
        }
    }
}

/// Waits for the running pass (pending forever when none runs: a `select!` arm that
/// borrows only the queue's field of the loop).
pub(super) async fn pass_end(m: &mut Option<MergeLoop>) -> PassResult {
    match m.as_mut().and_then(|m| m.running.as_mut()) {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

impl Scheduler<'_> {
    /// A pass is running (the run is not over, and the loop waits for its end).
    pub(super) fn merge_running(&self) -> bool {
        self.merge.as_ref().is_some_and(|m| m.running.is_some())
    }

    /// An attempt ended: a success asks for a pass; any end makes the final pass due.
    pub(super) fn merge_after(&mut self, succeeded: bool) {
        if let Some(m) = &mut self.merge {
            m.stale = true;
            m.wanted |= succeeded;
        }
    }

    /// Starts a pass when one is wanted and none runs (never after a stop).
    pub(super) fn start_merge(&mut self) {
        let stopped = !self.dispatching();
        let Some(m) = &mut self.merge else {
            return;
        };
        if !m.wanted || m.running.is_some() || stopped {
            return;
        }
        m.wanted = false;
        m.stale = false;
        let hook = m.hook.0.clone();
        m.running = Some(tokio::task::spawn_blocking(move || hook.pass()));
    }

    /// Every task is terminal: a last pass when something ended since the last one
    /// began; true when it started (the run goes on).
    pub(super) fn final_merge(&mut self) -> bool {
        match &mut self.merge {
            Some(m) if m.stale && m.running.is_none() => m.wanted = true,
            _ => return false,
        }
        self.start_merge();
        self.merge_running()
    }

    /// A pass ended: the tasks it created join the run; an error stops the queue
    /// (the run's tasks go on; the error is the run's).
    pub(super) async fn on_merged(&mut self, r: PassResult) {
        if let Some(m) = &mut self.merge {
            m.running = None;
        }
        let created = match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return self.merge_failed(e.to_string()),
            Err(e) => return self.merge_failed(format!("the merge queue stopped: {e}")),
        };
        if created.is_empty() {
            return;
        }
        if self.scope.scoped {
            let (me, ids) = (self.owner.id.clone(), created.clone());
            if let Err(e) = db(&self.store, move |st| st.add_scope(&me, &ids)).await {
                tracing::error!("cannot add the merge queue's tasks to this run: {e}");
            }
        }
        for t in created {
            if self.scope.ids.insert(t.clone()) && !self.opts.scope.is_empty() {
                self.opts.scope.push(t.clone());
            }
            let note = format!("merge: {t} created by the merge queue");
            self.progress.event(&Event::Note(note));
        }
    }

    /// The queue stopped: no more passes; the run's tasks go on. Stopped with the
    /// run (Ctrl-C), it is only said: the queue continues at the next run.
    fn merge_failed(&mut self, e: String) {
        tracing::error!("{e}");
        self.progress.event(&Event::Note(e.clone()));
        self.merge = None;
        if self.dispatching() {
            self.summary.merge_error.get_or_insert(e);
        }
    }
}
