//! One batch: each branch merged onto the candidate with `git merge-tree
//! --write-tree` (a merge commit per task, no work tree), the integration gates run
//! once on the result, and the target moved by compare-and-swap when they pass.
//! When they fail, the batch is bisected by halves: a half that passes lands, a half
//! that fails is bisected again, until the branches that break it are single; those
//! are rejected and the rest land. For one breaking branch among `n` that is at most
//! `1 + 2·log2(n)` gate runs.
//!
//! A branch that conflicts with the target itself gets a resolve task; one that
//! conflicts only with a branch before it in the batch waits for the next pass (that
//! branch lands first, and the conflict, if it is still one, is then with the target).

use super::order::Candidate;
use super::queue::Queue;
use super::MergeError;
use crate::git::commit::Message;
use crate::git::merge::Step;
use crate::git::target::Facts;
use crate::git::worktree::Worktree;
use crate::store::merge::{Landing, MergeStep};
use crate::verify::judge::{judge, Baseline};

/// Branches merged one after the other onto the target's head.
pub(super) struct Chain {
    /// The result.
    pub head: String,
    /// Its tree and commit time.
    pub facts: Facts,
    /// Each task and its merge commit (or the commit that already contained it).
    pub items: Vec<(Candidate, String)>,
}

/// Why a candidate failed its gates.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    /// The gate.
    pub gate: String,
    /// The tail of its output.
    pub tail: String,
    /// Its new failures, when named.
    pub regressions: Vec<String>,
}

impl Queue<'_> {
    /// Merges, gates and lands one batch (bisecting it when it fails).
    pub(super) fn batch(&mut self, items: Vec<Candidate>) -> Result<(), MergeError> {
        let chain = self.build(&items)?;
        match self.test(&chain)? {
            None => self.land(chain),
            Some(f) => self.bisect(chain.items.into_iter().map(|(c, _)| c).collect(), f),
        }
    }

    /// Merges `items` onto the head, in order.
    pub(super) fn build(&mut self, items: &[Candidate]) -> Result<Chain, MergeError> {
        let repo = self.repo;
        let missing: Vec<&str> = items
            .iter()
            .map(|c| c.commit.as_str())
            .filter(|c| !self.known.contains_key(*c))
            .collect();
        if !missing.is_empty() {
            let more = repo.facts(&missing)?;
            self.known.extend(more);
        }
        let known = std::mem::take(&mut self.known);
        let mut m = repo.merger(&self.head, self.head_facts.clone(), &known);
        let mut out = Vec::new();
        for c in items {
            if self.deferred.contains(&c.task) {
                continue;
            }
            if c.depends_on.iter().any(|d| self.deferred.contains(d)) {
                self.deferred.insert(c.task.clone());
                continue;
            }
            let mut msg = Message {
                subject: c.subject.clone(),
                trailers: c.trailers.clone(),
            };
            msg.trailers
                .push(("Borg-Queue".into(), self.spec.target.clone()));
            let step = match m.merge(&c.commit, &msg) {
                Ok(s) => s,
                Err(e) => {
                    self.known = known;
                    return Err(e.into());
                }
            };
            match step {
                Step::Merged(x) => out.push((c.clone(), x)),
                Step::Contained | Step::FastForward(_) => {
                    out.push((c.clone(), m.head().to_string()))
                }
                Step::Conflict(files) => {
                    if m.head() == self.head {
                        self.conflict(c, files)?;
                    }
                    self.deferred.insert(c.task.clone());
                }
            }
        }
        let chain = Chain {
            head: m.head().to_string(),
            facts: m.head_facts(),
            items: out,
        };
        self.known = known;
        Ok(chain)
    }

    /// Runs the gates on the chain's result; None when they pass (or there is
    /// nothing new to gate).
    pub(super) fn test(&mut self, chain: &Chain) -> Result<Option<Failure>, MergeError> {
        if chain.head == self.head || self.spec.commands.is_empty() {
            return Ok(None);
        }
        self.runs += 1;
        let wt = Worktree::scratch_at(self.repo, &self.spec.dir, &chain.head)?;
        // Counted in the store when the queue stops (one transaction fewer per batch).
        self.unrecorded_runs += 1;
        let cmds = self.spec.commands.clone();
        let log = self.gates.log.display().to_string();
        for (i, cmd) in cmds.iter().enumerate() {
            let label = format!(
                "{} at {} ({} task(s)), gate {}/{}",
                self.spec.target,
                crate::git::short(&chain.head),
                chain.items.len(),
                i + 1,
                cmds.len()
            );
            let out = self.gates.run(cmd, &self.spec.dir, &label);
            if out.interrupted || self.gates.stopping() {
                return Err(MergeError::Stopped);
            }
            let base = if !out.ok() && !out.timed_out && self.spec.baseline {
                let b = self.baseline(cmd);
                Worktree::scratch_at(self.repo, &self.spec.dir, &chain.head)?;
                b?
            } else {
                None
            };
            let j = judge(cmd, &out, base.as_ref(), &log);
            tracing::info!(gate = %cmd, exit = ?out.exit_code, passed = j.passed, ms = out.duration_ms, "integration gate");
            if !j.passed {
                let mut regressions = j.regressions;
                if regressions.is_empty() && out.timed_out {
                    regressions.push("the gate timed out".into());
                }
                return Ok(Some(Failure {
                    gate: cmd.clone(),
                    tail: out.output_tail,
                    regressions,
                }));
            }
            if i + 1 < cmds.len() {
                // The next gate sees the candidate as it is, not what this one left.
                wt.scrub(self.repo)?;
            }
        }
        self.renew()?;
        Ok(None)
    }

    /// The gate's result at the baseline commit (the store's, or run now in the
    /// integration worktree); None when it could not be had.
    fn baseline(&mut self, cmd: &str) -> Result<Option<Baseline>, MergeError> {
        let at = (self.spec.dir.as_path(), self.baseline_at.as_str());
        let b = self.gates.baseline(self.store, self.repo, at, cmd);
        if self.gates.stopping() {
            return Err(MergeError::Stopped);
        }
        Ok(b)
    }

    /// Moves the target to the chain's result (compare-and-swap) and records it.
    pub(super) fn land(&mut self, chain: Chain) -> Result<(), MergeError> {
        if chain.items.is_empty() {
            return Ok(());
        }
        let refname = self.spec.refname();
        if chain.head != self.head {
            let old = self.head.clone();
            if !self.publish(Some(&old), &chain.head)? {
                return self.reread();
            }
            let why = format!("borg merge: {} task(s)", chain.items.len());
            if !self
                .repo
                .compare_and_swap(&refname, &chain.head, Some(&self.head), &why)?
            {
                return Err(MergeError::Moved(self.spec.target.clone()));
            }
        }
        let tasks = chain
            .items
            .iter()
            .map(|(c, m)| Landing {
                task: c.task.clone(),
                commit: c.commit.clone(),
                merged: m.clone(),
            })
            .collect();
        self.head = chain.head.clone();
        self.head_facts = chain.facts.clone();
        self.record(&MergeStep::Landed {
            head: chain.head,
            tasks,
        })
    }

    /// `items`, merged onto the head, fail the gates (`f`): finds the branches that
    /// break them by halves; the others land.
    fn bisect(&mut self, items: Vec<Candidate>, f: Failure) -> Result<(), MergeError> {
        if items.len() <= 1 {
            return match items.first() {
                Some(c) => self.rejected(c, &f),
                None => Ok(()),
            };
        }
        let mut left = items;
        let right = left.split_off(left.len() / 2);
        let chain = self.build(&left)?;
        match self.test(&chain)? {
            None => {
                self.land(chain)?;
                // head + left passes, head + left + right did not: right breaks it.
                self.bisect(right, f)
            }
            Some(lf) => {
                self.bisect(chain.items.into_iter().map(|(c, _)| c).collect(), lf)?;
                let chain = self.build(&right)?;
                match self.test(&chain)? {
                    None => self.land(chain),
                    Some(rf) => self.bisect(chain.items.into_iter().map(|(c, _)| c).collect(), rf),
                }
            }
        }
    }

    /// Rejects a branch that breaks the gates.
    fn rejected(&mut self, c: &Candidate, f: &Failure) -> Result<(), MergeError> {
        let mut error = format!(
            "the integration gate `{}` failed with its work merged",
            f.gate
        );
        if !f.regressions.is_empty() {
            error.push_str(&format!(": {}", f.regressions.join(", ")));
        }
        self.reject(&c.task, &c.commit, &f.gate, &f.tail, &error, true)
    }
}
