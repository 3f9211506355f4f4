//! The queue's two outcomes besides landing, each one fenced store step: a branch
//! that conflicts with the target gets a resolve task (git mode's mechanism: the
//! resolver role, in a worktree with that merge in progress) whose result re-enters
//! the queue; a branch that breaks the integration gates is rejected
//! (`integration_failed`, with the gate and the tail of its output) and, with
//! `[merge] fix = true`, gets a fix task for its role that starts from its work.

use super::order::Candidate;
use super::queue::Queue;
use super::MergeError;
use crate::run::prompt::HandoffContext;
use crate::run::resolve::{resolve_task, Resolver};
use crate::run::spec::{new_task, ResolveContext, StoredSpec};
use crate::store::merge::{MergeState, MergeStep};
use crate::store::{NewTask, TaskRow};
use std::fmt::Write;

/// How a fix task's handoff reason starts.
const FIX_REASON: &str = "the merge queue's integration gate";

/// Whether `row` is a fix task the queue created.
fn is_fix(row: &TaskRow) -> bool {
    row.spec["handoff"]["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with(FIX_REASON))
}

impl Queue<'_> {
    /// `c` conflicts with the target in `files`: its resolve task is created.
    pub(super) fn conflict(&mut self, c: &Candidate, files: Vec<String>) -> Result<(), MergeError> {
        let rows = self.store.tasks()?;
        let Some(row) = rows.iter().find(|r| r.id == c.task) else {
            return Ok(());
        };
        let spec: StoredSpec = serde_json::from_value(row.spec.clone())
            .map_err(|e| MergeError::Spec(c.task.clone(), e.to_string()))?;
        let landed = self
            .store
            .merge_target(&self.spec.target)?
            .map(|(_, e)| e)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.state == MergeState::Landed)
            .map(|e| e.task)
            .collect();
        let ctx = ResolveContext {
            of: c.task.clone(),
            ours: self.head.clone(),
            theirs: c.commit.clone(),
            ours_tasks: landed,
            theirs_task: c.task.clone(),
            files: files.clone(),
            into: Some(self.spec.target.clone()),
        };
        let existing: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let by = Resolver {
            role: &self.repo.resolver_role,
            default_retries: self.spec.retries,
            existing: &existing,
        };
        let resolve = resolve_task(row, &spec, ctx, &rows, &by);
        eprintln!(
            "borg: merge: {} conflicts with {} in {}; resolve task {}",
            c.task,
            self.spec.target,
            files.join(", "),
            resolve.id
        );
        self.created.push(resolve.id.clone());
        self.record(&MergeStep::Conflict {
            task: c.task.clone(),
            commit: c.commit.clone(),
            files,
            resolve,
        })
    }

    /// Rejects `task` (a fix task too when `fix` and `[merge] fix` say so).
    pub(super) fn reject(
        &mut self,
        task: &str,
        commit: &str,
        gate: &str,
        tail: &str,
        error: &str,
        fix: bool,
    ) -> Result<(), MergeError> {
        let rows = self.store.tasks()?;
        let fix = match rows.iter().find(|r| r.id == task) {
            // A fix task that breaks the gates again gets no fix task of its own.
            Some(row) if fix && self.spec.fix && !is_fix(row) => {
                Some(self.fix_task(row, &rows, gate, tail))
            }
            _ => None,
        };
        eprintln!("borg: merge: {task} rejected: {error}");
        if let Some(f) = &fix {
            self.created.push(f.id.clone());
        }
        self.record(&MergeStep::Rejected {
            task: task.to_string(),
            commit: commit.to_string(),
            gate: gate.to_string(),
            output_tail: tail.to_string(),
            error: error.to_string(),
            fix,
        })
    }

    /// A task for `row`'s role that starts from its work (as a handoff from it) and
    /// is asked to make the integration gate pass.
    fn fix_task(&self, row: &TaskRow, rows: &[TaskRow], gate: &str, tail: &str) -> NewTask {
        let id = (1..)
            .map(|n| format!("{}.fix-{n}", row.id))
            .find(|c| rows.iter().all(|r| &r.id != c))
            .unwrap_or_default();
        let mut task = crate::run::handoff::follow_up_spec(row, &id, &row.role);
        task.depends_on = Vec::new();
        let mut p = format!(
            "The merge queue rejected the work of task `{}`: with it merged into `{}`, the integration \
             gate `{gate}` fails. Your working directory holds that work. Make the gate pass (run it \
             yourself: `{gate}`) while keeping what the task set out to do.\n\nThe end of the gate's output:\n```\n",
            row.id, self.spec.target
        );
        let _ = writeln!(p, "{tail}\n```");
        task.prompt = p;
        let rec = crate::outcome::AttemptRecord::from_stored(row.last_record.as_ref());
        let handoff = HandoffContext {
            source_task: row.id.clone(),
            source_role: row.role.clone(),
            source_instance: rec.as_ref().map(|r| r.instance.clone()),
            reason: format!("{FIX_REASON} `{gate}` failed with its work merged"),
            state: None,
            next_steps: vec![format!("make `{gate}` pass")],
            files_changed: rec.as_ref().map(|r| r.changes()).unwrap_or_default(),
            result_text: rec.and_then(|r| r.result_text),
        };
        new_task(
            &StoredSpec {
                task,
                handoff: Some(handoff),
                resolve: None,
            },
            self.spec.retries,
        )
    }
}
