//! Follow-up claude children of an attempt, after its own: a fix round (the task's
//! own session resumed with `--resume`, in the same worktree) and a review (a
//! session of the reviewer role, on the task's branch, answering through
//! `--json-schema`). They run under the same supervision and watchdogs as the
//! attempt's child, with logs of their own (`logs/<task>.<n>.<name>.stdout.jsonl`),
//! and each is recorded in the store as the attempt's running child, so that a borg
//! restarted meanwhile finds (and stops) the right process.

use super::child::{environment, prepare_logs, start_record, watchdogs, with_coordination};
use super::Attempt;
use crate::coord::files::ChildCoord;
use crate::input::roles::Role;
use crate::input::tasklist::TaskSpec;
use crate::supervise::claude::{self, ChildIdentity};
use crate::supervise::runner::{self, AttemptOutput, AttemptPlan, Control, LiveView};
use std::sync::{Arc, Mutex};

/// One follow-up child.
pub(crate) struct FollowUp<'a> {
    /// The role it runs as (its model, tools and permission mode).
    pub role: &'a Role,
    /// The task's definition (timeouts, environment, budget).
    pub task: TaskSpec,
    /// The session to resume.
    pub resume: Option<String>,
    /// Its prompt.
    pub prompt: String,
    /// Its name in the log files: `fix1`, `review1`.
    pub name: String,
    /// Flags of its own (`--json-schema=...`), before the user's `extra_args`.
    pub extra: Vec<String>,
    /// Its coordination, when it gets some.
    pub coord: Option<ChildCoord>,
}

/// What a follow-up child did, and where its stdout is kept.
pub(crate) struct FollowedUp {
    /// The runner's account.
    pub out: AttemptOutput,
    /// Its raw stdout log.
    pub stdout_log: String,
}

/// Runs a follow-up child to its end.
pub(crate) async fn run(
    att: &Attempt,
    f: FollowUp<'_>,
    ctl: Control,
    live: Arc<Mutex<LiveView>>,
) -> FollowedUp {
    let s = &att.shared.settings;
    let uid = uuid::Uuid::new_v4().simple().to_string();
    let opts = claude::options(s, f.role, &f.task);
    let identity = ChildIdentity {
        task: &f.task.id,
        instance: &att.instance.id,
        attempt: att.record.attempt,
        uid: &uid,
        workspace: &att.instance.path,
        claim_token: att.claim.token.fence,
        store: &att.shared.store_path,
    };
    let dir = att.instance.logs_dir();
    let base = format!("{}.{}.{}", f.task.id, att.record.attempt, f.name);
    let stdout_log = dir.join(format!("{base}.stdout.jsonl"));
    let stderr_log = dir.join(format!("{base}.stderr.log"));
    prepare_logs(&dir, &stdout_log);
    let mut args = claude::args(s, &opts, f.resume.as_deref());
    let users = args.len() - s.claude.extra_args.len();
    args.splice(users..users, f.extra);
    let mut plan = AttemptPlan {
        program: att.shared.claude.clone(),
        args,
        env: environment(att, &f.task, &identity),
        cwd: att.instance.project_dir(),
        prompt: f.prompt,
        stdout_log: stdout_log.clone(),
        stderr_log,
        watchdogs: watchdogs(s, &f.task),
        max_line: s.run.max_line_bytes,
        log_cap: None,
    };
    if let Some(c) = f.coord {
        with_coordination(&mut plan, c);
    }
    let start = start_record(att, &plan, uid, f.resume.clone());
    let out = runner::run_attempt(plan, ctl, start, Some(live)).await;
    FollowedUp {
        out,
        stdout_log: stdout_log.display().to_string(),
    }
}
