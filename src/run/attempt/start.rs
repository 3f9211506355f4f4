//! Stage 2 in git mode: the task's start commit and its branch.
//!
//! - A task without dependencies starts from the run's base.
//! - A task with dependencies (a handoff's source is one) starts from the base with
//!   every dependency's final commit merged in, in list order
//!   (`git merge-tree --write-tree`, no work tree needed); when a resolve task of
//!   this task has succeeded, from its merge commit instead, the remaining
//!   dependencies merged on top.
//! - A real conflict creates a resolve task, and this task waits for it.
//! - A resolve task starts at the conflicting merge's "ours", with "theirs" being
//!   merged in its worktree (the conflict markers in the files).
//! - A task parked on a usage limit resumes from its last attempt's commit.
//!
//! A marker in the instance folder says which attempt the worktree works for, so a
//! borg killed during the attempt leaves nothing a later one cannot save.

use super::admit::Admitted;
use super::publish::{self, Claimed, NotTaken, Source};
use super::Attempt;
use crate::git::commit::Message;
use crate::git::merge::Step;
use crate::git::publish::{resolve_ref, Held};
use crate::git::recover::InFlight;
use crate::git::resolve::Fingerprint;
use crate::git::worktree::Worktree;
use crate::git::{GitError, Repo};
use crate::outcome::{AttemptRecord, Status};
use crate::run::resolve::{reason, resolve_task, Resolver};
use crate::run::spec::{resolve_of, ResolveContext, StoredSpec};
use crate::store::{ClaimToken, NewTask, Store, TaskRow};
use std::sync::Arc;

/// An attempt's place in the repository.
#[derive(Debug, Clone)]
pub(crate) struct GitAttempt {
    /// The repository.
    pub repo: Arc<Repo>,
    /// The instance's worktree.
    pub wt: Worktree,
    /// The task's branch.
    pub branch: String,
    /// The task's start commit: its diff's base, and what a failed attempt's
    /// worktree is reset to.
    pub start: String,
    /// Set for a resolve task: the merge it concludes.
    pub resolve: Option<ResolveContext>,
    /// A resolve task's conflicted paths as the merge left them.
    pub conflicts: Vec<Fingerprint>,
    /// The attempt's work is committed (else a failure must not reset the worktree).
    pub sealed: bool,
    /// Milliseconds spent making the start commit and putting the worktree on it.
    pub start_ms: u64,
    /// With a shared remote: what this claim holds there (its fence).
    pub held: Option<Held>,
}

/// How preparing the branch went.
pub(crate) enum Begun {
    /// The worktree is on the task's branch.
    Ready(GitAttempt),
    /// The dependencies conflict: this resolve task must succeed first.
    Waits {
        /// The resolve task.
        task: NewTask,
        /// Why, in one line.
        why: String,
    },
    /// git failed: why.
    Failed(String),
    /// The shared remote could not be reached: why (worth trying again).
    Unavailable(String),
}

/// Where the worktree goes.
enum Plan {
    /// Check out `at` on the task's branch; the diff's base is `start`.
    At { at: String, start: String },
    /// Merging a dependency conflicts.
    Conflict(ResolveContext),
}

/// Prepares the task's branch in the instance's worktree (on the blocking pool: it
/// runs git).
pub(crate) async fn begin(att: &Attempt, a: &Admitted, rows: Vec<TaskRow>) -> Begun {
    let Some(repo) = att.shared.git.clone() else {
        return Begun::Failed("not in git mode".into());
    };
    let job = Job {
        wt: Worktree::of_instance(&att.instance.path),
        instance: att.instance.path.clone(),
        inflight: InFlight {
            task: att.claim.task.id.clone(),
            attempt: att.record.attempt,
            role: att.claim.task.role.clone(),
            instance: att.instance.id.clone(),
            branch: repo.branch(&att.claim.task.id),
            start: String::new(),
        },
        me: att.claim.task.clone(),
        token: att.claim.token.clone(),
        lease: att.shared.settings.run.lease,
        spec: a.spec.clone(),
        rows,
        store: att.shared.store.clone(),
        retries: att.shared.settings.run.retries,
        base: repo.base.clone(),
        repo,
    };
    tokio::task::spawn_blocking(move || job.run())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Everything the blocking part needs.
struct Job {
    repo: Arc<Repo>,
    wt: Worktree,
    instance: std::path::PathBuf,
    inflight: InFlight,
    me: TaskRow,
    token: ClaimToken,
    lease: std::time::Duration,
    spec: StoredSpec,
    rows: Vec<TaskRow>,
    store: Arc<dyn Store>,
    retries: u32,
    /// The base tasks without dependencies start from: the repository's, or with a
    /// shared remote the one the store records now (a list enqueued after this
    /// worker started may have chosen it).
    base: String,
}

impl Job {
    fn run(mut self) -> Begun {
        let began = std::time::Instant::now();
        if !self.wt.exists() {
            return Begun::Failed(format!(
                "{} is not a git worktree (the instance was made in template mode); remove the instance or use another workspaces folder",
                self.wt.dir.display()
            ));
        }
        if let Err(e) = self.save_leftovers() {
            return Begun::Failed(format!("cannot save what an earlier attempt left: {e}"));
        }
        let held = match self.repo.remote.is_some().then(|| self.take_fence()) {
            Some(Ok(h)) => match self.recorded_base() {
                Ok(()) => Some(h),
                Err(e) => return Begun::Unavailable(e),
            },
            Some(Err(b)) => return *b,
            None => None,
        };
        let plan = match self.plan() {
            Ok(p) => p,
            Err(e) => return Begun::Failed(format!("cannot make the start commit: {e}")),
        };
        let (at, start) = match plan {
            Plan::At { at, start } => (at, start),
            Plan::Conflict(ctx) => return self.waits(ctx, held.as_ref()),
        };
        self.inflight.start = start.clone();
        if let Err(e) = self.inflight.mark(&self.instance) {
            return Begun::Failed(format!("cannot write {}: {e}", self.instance.display()));
        }
        match self.checkout(&at) {
            Ok(conflicts) => {
                let ms = began.elapsed().as_millis() as u64;
                tracing::debug!(task = %self.me.id, start = %start, ms, "branch ready");
                Begun::Ready(GitAttempt {
                    branch: self.inflight.branch.clone(),
                    start,
                    resolve: self.spec.resolve.clone(),
                    wt: self.wt,
                    repo: self.repo,
                    sealed: false,
                    start_ms: ms,
                    conflicts,
                    held,
                })
            }
            Err(e) => {
                InFlight::clear(&self.instance);
                Begun::Failed(format!(
                    "cannot put the worktree on {}: {e}",
                    self.inflight.branch
                ))
            }
        }
    }

    /// An earlier attempt of this borg whose work could not be settled (a git error)
    /// left its marker: its work is saved under its ref before anything else.
    fn save_leftovers(&self) -> Result<(), GitError> {
        let Some(old) = InFlight::read(&self.instance) else {
            return Ok(());
        };
        let msg = old.message("saved before the next task");
        let kept = self.wt.save_interrupted(&self.repo, &old, &msg)?;
        InFlight::clear(&self.instance);
        tracing::warn!(task = %old.task, attempt = old.attempt, kept = ?kept, "saved what an unsettled attempt left");
        Ok(())
    }

    /// With a shared remote: the claim takes the task's fence there, then what the
    /// task builds on is fetched.
    fn take_fence(&self) -> Result<Held, Box<Begun>> {
        let held = publish::take_fence(&self.claimed()).map_err(|e| match e {
            NotTaken::Lost(why) => Begun::Failed(format!("the claim was lost: {why}")),
            NotTaken::Remote(why) => {
                Begun::Unavailable(format!("cannot take the task's fence on {why}"))
            }
        })?;
        publish::fetch_sources(&self.repo, &self.sources())
            .map_err(|e| Box::new(Begun::Unavailable(e)))?;
        Ok(held)
    }

    /// The base the store records (fetched when this mirror lacks it).
    fn recorded_base(&mut self) -> Result<(), String> {
        let rec = self.store.fleet(crate::git::repo::BASE_KEY);
        let rec = rec.map_err(|e| format!("cannot read the run's base: {e}"))?;
        let Some(b) = rec.as_ref().and_then(|v| v.get("base")?.as_str()) else {
            return Ok(());
        };
        if b != self.base {
            let mut repo = (*self.repo).clone();
            repo.ensure_base(b).map_err(|e| e.to_string())?;
            self.base = b.to_string();
        }
        Ok(())
    }

    /// The claim, as the remote protocol needs it.
    fn claimed(&self) -> Claimed<'_> {
        Claimed {
            repo: &self.repo,
            store: self.store.as_ref(),
            token: &self.token,
            task: &self.me,
            attempt: self.inflight.attempt,
            lease: self.lease,
        }
    }

    /// The commits the task builds on and where the remote keeps them: the results of
    /// the tasks it depends on (resolve tasks and a handoff's source included), a
    /// resolve task's two sides, its own work when it resumes after a usage limit.
    fn sources(&self) -> Vec<Source> {
        let branch = |id: &str, commit: String| Source {
            commit,
            remote: self.repo.remote_branch(id),
            local: self.repo.fetched_branch(id),
            of: id.to_string(),
        };
        let mut out: Vec<Source> = self
            .rows
            .iter()
            .filter_map(|r| commit_of(r).map(|c| branch(&r.id, c)))
            .collect();
        if let Some(ctx) = &self.spec.resolve {
            let r = resolve_ref(&self.me.id);
            out.push(Source {
                commit: ctx.ours.clone(),
                remote: r.clone(),
                local: r,
                of: format!("the merge {} waits for", ctx.of),
            });
            out.push(branch(&ctx.theirs_task, ctx.theirs.clone()));
        }
        if let Some(c) = self.parked_work() {
            out.push(branch(&self.me.id, c));
        }
        out
    }

    /// The last attempt's commit when it parked on a usage limit (its work resumes).
    fn parked_work(&self) -> Option<String> {
        AttemptRecord::from_stored(self.me.last_record.as_ref())
            .filter(|r| r.status == Some(Status::RateLimited))
            .and_then(|r| r.git.commit)
    }

    /// The commit to check out and the start commit.
    fn plan(&self) -> Result<Plan, GitError> {
        if let Some(ctx) = &self.spec.resolve {
            return Ok(Plan::At {
                at: ctx.ours.clone(),
                start: ctx.ours.clone(),
            });
        }
        let last = AttemptRecord::from_stored(self.me.last_record.as_ref());
        if let Some(r) = last.filter(|r| r.status == Some(Status::RateLimited)) {
            if let (Some(at), Some(start)) = (r.git.commit, r.git.base) {
                return Ok(Plan::At { at, start });
            }
        }
        self.merged_start()
    }

    /// The base (or the latest resolution) with every dependency merged in order.
    fn merged_start(&self) -> Result<Plan, GitError> {
        let (mut cur, mut merged) = (self.base.clone(), Vec::new());
        // A merge queue's resolution is of the target, not of this task's start.
        let resolved = self.rows.iter().filter(|r| {
            resolve_of(r) == Some(self.me.id.as_str())
                && r.status == Status::Succeeded
                && r.spec["resolve"].get("into").is_none_or(|v| v.is_null())
        });
        if let Some((r, c)) = resolved
            .filter_map(|r| commit_of(r).map(|c| (r, c)))
            .next_back()
        {
            cur = c;
            if let Some(ctx) = r
                .spec
                .get("resolve")
                .and_then(|v| serde_json::from_value::<ResolveContext>(v.clone()).ok())
            {
                merged = ctx.ours_tasks;
                merged.push(ctx.theirs_task);
            }
        }
        for dep in self.dependencies() {
            let Some(theirs) = commit_of(dep) else {
                tracing::warn!(task = %self.me.id, dep = %dep.id, "dependency has no commit; nothing of it to merge");
                continue;
            };
            let msg = merge_message(&self.me.id, &dep.id);
            match self.repo.merge_step(&cur, &theirs, &msg)? {
                Step::Conflict(files) => {
                    return Ok(Plan::Conflict(ResolveContext {
                        of: self.me.id.clone(),
                        ours: cur,
                        theirs,
                        ours_tasks: merged,
                        theirs_task: dep.id.clone(),
                        files,
                        into: None,
                    }))
                }
                step => cur = step.start(&cur).to_string(),
            }
            if !merged.contains(&dep.id) {
                merged.push(dep.id.clone());
            }
        }
        Ok(Plan::At {
            at: cur.clone(),
            start: cur,
        })
    }

    /// The tasks whose results are merged, in list order (resolve tasks aside).
    fn dependencies(&self) -> Vec<&TaskRow> {
        let mut ids: Vec<&str> = self.me.depends_on.iter().map(String::as_str).collect();
        if let Some(h) = &self.spec.handoff {
            if !ids.contains(&h.source_task.as_str()) {
                ids.push(&h.source_task);
            }
        }
        ids.iter()
            .filter_map(|id| self.rows.iter().find(|r| r.id == *id))
            .filter(|r| resolve_of(r).is_none())
            .collect()
    }

    /// Puts the worktree on the branch at `at`; a resolve task's merge is started,
    /// and what it left in the conflicted files is returned.
    fn checkout(&self, at: &str) -> Result<Vec<Fingerprint>, GitError> {
        self.wt.switch(&self.repo, &self.inflight.branch, at)?;
        let Some(ctx) = &self.spec.resolve else {
            return Ok(Vec::new());
        };
        let msg = format!("Merge {} into the start of {}", ctx.theirs_task, ctx.of);
        let files = self.wt.start_merge(&self.repo, &ctx.theirs, &msg)?;
        Ok(self.wt.fingerprints(&files))
    }

    /// The resolve task this task must wait for (with a shared remote, its start is
    /// pushed there first, so any host can run it).
    fn waits(&self, ctx: ResolveContext, held: Option<&Held>) -> Begun {
        let existing: Vec<String> = match self.store.statuses() {
            Ok(s) => s.into_iter().map(|(id, _)| id).collect(),
            Err(e) => return Begun::Failed(format!("cannot read the store: {e}")),
        };
        let why = reason(&ctx);
        let by = Resolver {
            role: &self.repo.resolver_role,
            default_retries: self.retries,
            existing: &existing,
        };
        let ours = ctx.ours.clone();
        let task = resolve_task(&self.me, &self.spec, ctx, &self.rows, &by);
        if let Some(h) = held {
            if let Err(e) = publish::push_resolve_start(&self.claimed(), h, &task.id, &ours) {
                return Begun::Unavailable(e);
            }
        }
        tracing::info!(task = %self.me.id, resolve = %task.id, "{why}");
        Begun::Waits { task, why }
    }
}

/// The final commit of a task's last attempt.
fn commit_of(row: &TaskRow) -> Option<String> {
    AttemptRecord::from_stored(row.last_record.as_ref()).and_then(|r| r.git.commit)
}

/// The message of borg's merge commit of `dep` into the start of `task`.
fn merge_message(task: &str, dep: &str) -> Message {
    Message {
        subject: format!("Merge {dep} into the start of {task}"),
        trailers: vec![
            ("Borg-Task".into(), task.into()),
            ("Borg-Merge".into(), dep.into()),
        ],
    }
}
