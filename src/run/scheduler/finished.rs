//! The end of an attempt, as the run loop sees it: its slot is free again, the run's
//! scope grows by the handoff (or resolve) tasks it created, the policy reacts
//! (breaker, parking, retry notes), and the progress display counts it. An attempt
//! that never ran because its task now waits for a resolve task only frees its slot
//! and adds the resolve task.

use super::Scheduler;
use crate::outcome::Status;
use crate::outcome::{AttemptRecord, FaultClass};
use crate::run::attempt::AttemptDone;
use crate::run::policy::react;
use crate::show::progress::Event;
use crate::store::{call as db, AttemptFinish, Disposition};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::task::JoinError;

impl Scheduler<'_> {
    /// An attempt task ended.
    pub(super) async fn on_finished(
        &mut self,
        joined: Result<(tokio::task::Id, AttemptDone), JoinError>,
    ) {
        let done = match joined {
            Ok((id, d)) => {
                self.launched.remove(&id);
                d
            }
            Err(e) => return self.on_panicked(e).await,
        };
        tracing::info!(task = %done.task, status = %done.classified.status, cause = ?done.classified.cause, "attempt finished");
        self.fleet.release(&done.instance, &done.role);
        self.lives.remove(&done.task);
        if let Some((resolve, why)) = &done.waits_for {
            let note = format!(
                "{}: {why}; it waits for the resolve task {resolve}",
                done.task
            );
            self.progress.event(&Event::Note(note));
            self.adopt(&done, "resolve").await;
            return;
        }
        self.summary.cost_usd += done.record.cost_usd;
        if let Some(at) = done.retry_at {
            self.retry_at.push(at);
        }
        if let Some(e) = &done.lost_claim {
            let note = format!("{}: result discarded: {e}", done.task);
            self.progress.event(&Event::Note(note));
        }
        self.adopt(&done, "handoff").await;
        self.merge_after(done.classified.status == Status::Succeeded);
        if done.classified.status == Status::Interrupted {
            self.summary.stopped_tasks.push(done.task.clone());
        }
        // A usage limit parks the fleet (in the store, by the policy below).
        self.parked_stale |= done.classified.status == Status::RateLimited;
        let s = &self.shared.settings;
        react(
            &done,
            s,
            &mut self.breaker,
            &mut self.summary,
            &self.store,
            self.progress,
        )
        .await;
        self.count(&done).await;
    }

    /// An attempt task panicked (a bug) or was cancelled: its instance and role slot
    /// are freed, and its task fails with the panic's message (in the store, with its
    /// claim, so that the instance is free there too), instead of staying busy for the
    /// rest of the run.
    async fn on_panicked(&mut self, e: JoinError) {
        let Some(l) = self.launched.remove(&e.id()) else {
            tracing::error!("an attempt task failed: {e}");
            return;
        };
        let why = match e.try_into_panic() {
            Ok(p) => p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into()),
            Err(e) => e.to_string(),
        };
        let error = format!("borg's attempt task panicked (a bug in borg): {why}");
        tracing::error!(task = %l.task, "{error}");
        self.fleet.release(&l.instance, &l.role);
        self.lives.remove(&l.task);
        self.fail_panicked(&l, &error).await;
        self.progress.event(&Event::Finished {
            task: l.task,
            status: Status::Failed,
            duration_ms: 0,
            cost_usd: 0.0,
            error: Some(error),
            done: self.counts.0 .1 + 1,
            total: self.counts.0 .0,
        });
    }

    /// Records the panicked attempt as failed (permanent, cause `internal`), which also
    /// frees its instance in the store.
    async fn fail_panicked(&self, l: &super::Launched, error: &str) {
        let record = AttemptRecord {
            task: l.task.clone(),
            attempt: l.attempt,
            instance: l.instance.clone(),
            role: l.role.clone(),
            status: Some(Status::Failed),
            fault: Some(FaultClass::Permanent),
            cause: Some("internal".into()),
            error: Some(error.to_string()),
            started_at: chrono::Utc::now().to_rfc3339(),
            ..AttemptRecord::default()
        };
        let fin = AttemptFinish {
            status: Status::Failed,
            record: serde_json::to_value(&record).unwrap_or_default(),
            disposition: Disposition::Final(Status::Failed),
            new_tasks: vec![],
            converted_handoffs: vec![],
            cost_usd: 0.0,
            now_ms: crate::run::attempt::now_ms(),
        };
        let token = l.token.clone();
        if let Err(e) = db(&self.store, move |st| st.finish_attempt(&token, &fin)).await {
            tracing::error!(task = %l.task, "cannot record the failed attempt: {e}");
        }
    }

    /// The tasks an attempt created (handoff or resolve tasks) belong to this run, and
    /// so do the tasks its agent created (the store put those in this run's scope
    /// already).
    async fn adopt(&mut self, done: &AttemptDone, kind: &str) {
        for t in &done.agent_tasks {
            if self.scope.ids.insert(t.clone()) {
                if !self.opts.scope.is_empty() {
                    self.opts.scope.push(t.clone());
                }
                let note = format!("task {} created by the agent of {}", t, done.task);
                self.progress.event(&Event::Note(note));
            }
        }
        if self.scope.scoped && !done.new_tasks.is_empty() {
            let (me, ids) = (self.owner.id.clone(), done.new_tasks.clone());
            if let Err(e) = db(&self.store, move |st| st.add_scope(&me, &ids)).await {
                tracing::error!("cannot add the handoff tasks to this run: {e}");
            }
        }
        for t in &done.new_tasks {
            self.scope.ids.insert(t.clone());
            if !self.opts.scope.is_empty() {
                self.opts.scope.push(t.clone());
            }
            let note = format!("{kind}: {} created from {}", t, done.task);
            self.progress.event(&Event::Note(note));
        }
    }

    /// Tells the progress display; counting reads every task's status, so it is done
    /// at most a few times a second.
    async fn count(&mut self, done: &AttemptDone) {
        let ((mut total, mut finished), at) = self.counts;
        // Only a success surely ends its task: any other attempt may be retried, so
        // the count is read again rather than guessed.
        let surely_ended = done.classified.status == crate::outcome::Status::Succeeded;
        if !surely_ended || at.elapsed() >= Duration::from_millis(300) || self.running.is_empty() {
            (total, finished) = count_done(&self.store, &self.opts.scope).await;
            self.counts = ((total, finished), Instant::now());
        } else {
            finished = (finished + 1).min(total);
            self.counts.0 = (total, finished);
        }
        self.progress.event(&Event::Finished {
            task: done.task.clone(),
            status: done.classified.status,
            duration_ms: done.record.duration_ms,
            cost_usd: done.record.cost_usd,
            error: done.classified.error.clone(),
            done: finished,
            total,
        });
        self.progress.totals(finished, total, self.summary.cost_usd);
    }
}

/// (tasks in scope, terminal ones).
pub(super) async fn count_done(
    store: &std::sync::Arc<dyn crate::store::Store>,
    scope: &[String],
) -> (usize, usize) {
    let rows = db(store, |st| st.statuses()).await.unwrap_or_default();
    let set: HashSet<&String> = scope.iter().collect();
    let inscope = rows
        .iter()
        .filter(|(id, _)| scope.is_empty() || set.contains(id));
    inscope.fold((0, 0), |(n, done), (_, st)| {
        (n + 1, done + usize::from(st.is_terminal()))
    })
}
