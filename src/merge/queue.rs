//! One run of the queue on one target, as a sequence of named steps: claim the
//! target (a lease with a fencing token in the store), create its branch when it is
//! new, record what git says landed but the store does not know yet (a borg killed
//! between moving the branch and recording it), then passes over the ready tasks in
//! batches (`batch.rs`) until a pass changes nothing, and give the claim back.

use super::gate::GateEnv;
use super::order::{standings, Candidate, Standing};
use super::{MergeError, QueueSpec};
use crate::git::target::Facts;
use crate::git::Repo;
use crate::run::attempt::now_ms;
use crate::store::merge::{Landing, MergeStep, TargetClaim};
use crate::store::{Store, TaskRow};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a claim on a target lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(120);

/// The queue at work on a target.
pub(super) struct Queue<'a> {
    /// What to do.
    pub spec: &'a QueueSpec,
    /// The repository.
    pub repo: &'a Repo,
    /// The store.
    pub store: &'a Arc<dyn Store>,
    /// The claim held.
    pub claim: TargetClaim,
    /// The target's head now.
    pub head: String,
    /// The commit the integration gates' baseline is taken at.
    pub baseline_at: String,
    /// Where gates run and log.
    pub gates: GateEnv,
    /// Tasks created by this run (resolve and fix tasks).
    pub created: Vec<String>,
    /// Tasks dropped from this pass (they wait for the next one).
    pub deferred: HashSet<String>,
    /// Something changed in this pass.
    pub progress: bool,
    /// Gate runs in this borg (candidates and baselines).
    pub runs: u32,
    /// Candidate gate runs not counted in the store yet.
    pub unrecorded_runs: i64,
    /// The head's tree and commit time.
    pub head_facts: Facts,
    /// Trees and commit times of the commits the queue merges.
    pub known: HashMap<String, Facts>,
    /// When the claim was last renewed.
    renewed: Instant,
}

impl<'a> Queue<'a> {
    /// Claims the target and puts its branch in place (created at `spec.base` when
    /// it does not exist).
    pub fn open(
        spec: &'a QueueSpec,
        repo: &'a Repo,
        store: &'a Arc<dyn Store>,
    ) -> Result<Self, MergeError> {
        let refname = spec.refname();
        // In a mirror: fetched from the remote with the task branches.
        let now = repo.read_branch(&refname)?;
        let start = now.clone().unwrap_or_else(|| spec.base.clone());
        let claim = store.claim_target(
            &spec.target,
            &spec.list,
            &start,
            &spec.owner,
            LEASE,
            now_ms(),
        )?;
        if now.is_none()
            && !repo.compare_and_swap(&refname, &spec.base, None, "borg merge: new target")?
        {
            return Err(MergeError::Moved(spec.target.clone()));
        }
        let head_facts = repo
            .facts(&[start.as_str()])?
            .remove(&start)
            .ok_or_else(|| MergeError::Moved(spec.target.clone()))?;
        let row = store
            .merge_target(&spec.target)?
            .map(|(r, _)| r)
            .ok_or_else(|| MergeError::Moved(spec.target.clone()))?;
        let mut q = Queue {
            spec,
            repo,
            store,
            claim,
            head: start,
            baseline_at: row.start,
            gates: spec.gates.clone(),
            created: Vec::new(),
            deferred: HashSet::new(),
            progress: false,
            runs: 0,
            unrecorded_runs: 0,
            head_facts,
            known: HashMap::new(),
            renewed: Instant::now(),
        };
        if now.is_none() && !q.publish(None, &spec.base)? {
            q.reread()?;
        }
        Ok(q)
    }

    /// Runs the queue until a pass changes nothing, then gives the claim back.
    pub fn run(mut self) -> Result<Vec<String>, MergeError> {
        let out = self.passes();
        if self.unrecorded_runs > 0 {
            let runs = MergeStep::GateRuns(self.unrecorded_runs);
            let counted = self.store.record_merge(&self.claim, &runs, now_ms());
            if out.is_ok() {
                counted?;
            }
        }
        let released = self.store.release_target(&self.claim, now_ms());
        out?;
        released?;
        Ok(self.created)
    }

    fn passes(&mut self) -> Result<(), MergeError> {
        self.reconcile()?;
        loop {
            self.progress = false;
            self.deferred.clear();
            let ready = self.ready()?;
            self.learn(&ready)?;
            for batch in ready.chunks(self.spec.batch.max(1)) {
                self.batch(batch.to_vec())?;
            }
            if !self.progress {
                return Ok(());
            }
        }
    }

    /// What the target's first-parent history landed that the store has not
    /// recorded: recorded now (the branch is the truth).
    pub(super) fn reconcile(&mut self) -> Result<(), MergeError> {
        let Some((row, entries)) = self.store.merge_target(&self.spec.target)? else {
            return Ok(());
        };
        if row.head.as_deref().unwrap_or(&row.start) == self.head {
            // The branch is where the store last recorded it: nothing to learn.
            return Ok(());
        }
        let known: HashSet<(&str, &str)> = entries
            .iter()
            .filter_map(|e| Some((e.task.as_str(), e.merged.as_deref()?)))
            .collect();
        let landed = self
            .repo
            .landed_between(Some(&row.start), &self.head, &self.spec.target)?;
        let missing: Vec<Landing> = landed
            .into_iter()
            .filter(|l| !known.contains(&(l.task.as_str(), l.merged.as_str())))
            .map(|l| Landing {
                task: l.task,
                commit: l.commit,
                merged: l.merged,
            })
            .collect();
        if missing.is_empty() && row.head.as_deref() == Some(self.head.as_str()) {
            return Ok(());
        }
        for l in &missing {
            tracing::info!(task = %l.task, merged = %l.merged, "landed by an earlier borg; recorded now");
        }
        let step = MergeStep::Landed {
            head: self.head.clone(),
            tasks: missing,
        };
        self.record(&step)
    }

    /// The ready tasks in order; rejections found on the way are recorded.
    fn ready(&mut self) -> Result<Vec<Candidate>, MergeError> {
        let rows: Vec<TaskRow> = self.store.tasks()?;
        let entries = self
            .store
            .merge_target(&self.spec.target)?
            .map(|(_, e)| e)
            .unwrap_or_default();
        let mut ready = Vec::new();
        for s in standings(&rows, &self.spec.scope, &entries) {
            match s {
                Standing::Ready(c) => ready.push(c),
                Standing::Waits { task, why } => tracing::debug!(%task, "{why}"),
                Standing::Reject { task, commit, why } => {
                    self.reject(&task, &commit, "not merged", &why, &why, false)?;
                }
            }
        }
        Ok(ready)
    }

    /// Reads the trees and commit times of the ready commits, with one git.
    fn learn(&mut self, ready: &[Candidate]) -> Result<(), MergeError> {
        let missing: Vec<&str> = ready
            .iter()
            .map(|c| c.commit.as_str())
            .filter(|c| !self.known.contains_key(*c))
            .collect();
        let more = self.repo.facts(&missing)?;
        self.known.extend(more);
        Ok(())
    }

    /// Records a step with the claim (fenced), renewing the lease when due.
    pub fn record(&mut self, step: &MergeStep) -> Result<(), MergeError> {
        self.store.record_merge(&self.claim, step, now_ms())?;
        self.progress = true;
        self.renew()
    }

    /// Renews the lease once a third of it has passed.
    pub fn renew(&mut self) -> Result<(), MergeError> {
        if self.renewed.elapsed() > LEASE / 3 {
            self.store.renew_target(&self.claim, LEASE, now_ms())?;
            self.renewed = Instant::now();
        }
        Ok(())
    }
}
