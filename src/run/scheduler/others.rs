//! What the run loop learns from a store it shares with other hosts, besides its own
//! attempts: the store going away and coming back (a pause: no new task starts, running
//! ones go on, and the loop looks again every few seconds), tasks that other hosts
//! finished (shown in the progress like its own), and a named list that grew (`borg
//! worker --list`).

use super::Scheduler;
use crate::outcome::Status;
use crate::run::attempt::now_ms;
use crate::show::progress::Event;
use crate::store::{call as db, StoreError};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How often an unreachable store is tried again.
pub(super) const OUTAGE_RETRY: Duration = Duration::from_secs(2);

/// Whether an error means the store is away for now (a pause, not the end of the run).
pub(super) fn is_outage(e: &StoreError) -> bool {
    matches!(e, StoreError::Unreachable { .. })
}

impl Scheduler<'_> {
    /// The store could not be reached: say so once, and start nothing until it is back.
    pub(super) fn store_away(&mut self, e: &StoreError) {
        if self.store_down.is_none() {
            self.store_down = Some(Instant::now());
            let note =
                format!("{e}; no new task starts until the store is back (running tasks go on)");
            tracing::warn!("{note}");
            self.progress.event(&Event::Note(note));
        }
    }

    /// A store call worked: if the store had been away, say it is back.
    pub(super) fn store_back(&mut self) {
        if let Some(since) = self.store_down.take() {
            let note = format!(
                "the store is reachable again after {} s; starting tasks again",
                since.elapsed().as_secs()
            );
            tracing::warn!("{note}");
            self.progress.event(&Event::Note(note));
        }
    }

    /// Tasks of this run that another host finished since the last look: shown like
    /// this run's own (only when the run has a list: a worker on the whole store does
    /// not narrate the fleet).
    pub(super) async fn follow_others(&mut self) {
        if self.opts.scope.is_empty() {
            return;
        }
        let Ok(rows) = db(&self.store, |st| st.statuses()).await else {
            return;
        };
        let mut newly: Vec<(String, Status)> = Vec::new();
        for (id, st) in rows {
            if !self.scope.ids.contains(&id) {
                continue;
            }
            let was = self.seen.insert(id.clone(), st);
            if st.is_terminal() && was.is_some_and(|w| !w.is_terminal()) {
                newly.push((id, st));
            }
        }
        for (id, st) in newly {
            self.report_other(id, st).await;
        }
    }

    /// One task another host finished, as a progress event.
    async fn report_other(&mut self, id: String, st: Status) {
        let key = id.clone();
        let attempts = db(&self.store, move |s| s.attempts(&key))
            .await
            .unwrap_or_default();
        let Some(last) = attempts.last() else {
            return;
        };
        if last.owner == self.owner.id {
            return; // ours: on_finished shows it
        }
        let rec = last.record.clone().unwrap_or_default();
        let (total, done) = super::finished::count_done(&self.store, &self.opts.scope).await;
        self.counts = ((total, done), Instant::now());
        self.progress.event(&Event::Finished {
            task: id,
            status: st,
            duration_ms: rec.get("duration_ms").and_then(|v| v.as_u64()).unwrap_or(0),
            cost_usd: rec.get("cost_usd").and_then(|v| v.as_f64()).unwrap_or(0.0),
            error: rec.get("error").and_then(|v| v.as_str()).map(String::from),
            done,
            total,
        });
        self.progress.totals(done, total, self.summary.cost_usd);
    }

    /// The statuses the run starts from (so only later changes count as news).
    pub(super) async fn remember_statuses(&mut self) {
        if let Ok(rows) = db(&self.store, |st| st.statuses()).await {
            self.seen = rows.into_iter().collect();
        }
    }

    /// A worker on a named list takes in the tasks added to it since the last look.
    pub(super) async fn refresh_list(&mut self) {
        let Some(name) = self.opts.list.clone() else {
            return;
        };
        let Ok(ids) = db(&self.store, move |st| crate::run::lists::members(st, &name)).await else {
            return;
        };
        let fresh: Vec<String> = ids
            .into_iter()
            .filter(|i| !self.scope.ids.contains(i))
            .collect();
        if fresh.is_empty() {
            return;
        }
        let (me, add) = (self.owner.id.clone(), fresh.clone());
        if db(&self.store, move |st| st.add_scope(&me, &add))
            .await
            .is_ok()
        {
            let set: HashSet<String> = fresh.into_iter().collect();
            self.scope.ids.extend(set);
        }
    }

    /// When the loop must look again at the latest: soon while the store is away.
    pub(super) fn outage_deadline(&self) -> Option<i64> {
        self.store_down
            .map(|_| now_ms() + OUTAGE_RETRY.as_millis() as i64)
    }
}
