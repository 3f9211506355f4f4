//! Stage 3, child: the claude child under supervision. Builds its command line,
//! environment and logs, snapshots the workspace before it starts (template mode; in
//! git mode git tells what changed), renews the claim's lease while it runs (a lost
//! claim kills it), and records its pids durably before anything else happens.

use super::admit::Admitted;
use super::prepare::Prepared;
use super::{now_ms, Attempt};
use crate::coord::files::ChildCoord;
use crate::input::config::Settings;
use crate::input::tasklist::TaskSpec;
use crate::store::{call, AttemptStart, ClaimToken, Store, StoreError};
use crate::supervise::claude::{self, ChildIdentity};
use crate::supervise::runner::Watchdogs;
use crate::supervise::runner::{self, AttemptOutput, AttemptPlan, ChildIds, Control, LiveView};
use crate::workspace::claude_config;
use crate::workspace::snapshot::Snapshot;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the child stage produced.
pub(crate) struct Ran {
    /// The runner's account of the child.
    pub out: AttemptOutput,
    /// The workspace before the child started (template mode).
    pub before: Option<Snapshot>,
    /// The heartbeat found the claim lost (taken over): why.
    pub lost: Option<String>,
}

/// Runs the child to its end.
pub(crate) async fn run(
    att: &mut Attempt,
    a: &Admitted,
    p: &Prepared,
    prompt: String,
    coord: Option<ChildCoord>,
    ctl: Control,
    live: Arc<Mutex<LiveView>>,
) -> Ran {
    att.record.resumed_session.clone_from(&p.resume);
    let uid = uuid::Uuid::new_v4().simple().to_string();
    let mut plan = plan(att, a, p, prompt, &uid);
    if let Some(c) = coord {
        with_coordination(&mut plan, c);
    }
    att.record.stdout_log = plan.stdout_log.display().to_string();
    att.record.stderr_log = plan.stderr_log.display().to_string();
    let before = match att.git {
        Some(_) => None,
        None => Some(snapshot(&plan.cwd).await),
    };
    let store = att.shared.store.clone();
    let beat = Heartbeat::start(
        &store,
        &att.claim.token,
        att.shared.settings.run.lease,
        &ctl,
    );
    let start = start_record(att, &plan, uid, p.resume.clone());
    let out = runner::run_attempt(plan, ctl, start, Some(live)).await;
    let lost = beat.stop().await;
    Ran { out, before, lost }
}

/// The child's command, environment, working directory, prompt, logs and watchdogs.
fn plan(att: &Attempt, a: &Admitted, p: &Prepared, prompt: String, uid: &str) -> AttemptPlan {
    let s = &att.shared.settings;
    let task = &a.spec.task;
    let opts = claude::options(s, &a.role, task);
    let identity = ChildIdentity {
        task: &task.id,
        instance: &att.instance.id,
        attempt: att.record.attempt,
        uid,
        workspace: &att.instance.path,
        claim_token: att.claim.token.fence,
        store: &att.shared.store_path,
    };
    let (stdout_log, stderr_log) = att.instance.attempt_logs(&task.id, att.record.attempt);
    prepare_logs(&att.instance.logs_dir(), &stdout_log);
    let env = environment(att, task, &identity);
    AttemptPlan {
        program: att.shared.claude.clone(),
        args: claude::args(s, &opts, p.resume.as_deref()),
        env,
        cwd: att.instance.project_dir(),
        prompt,
        stdout_log,
        stderr_log,
        watchdogs: watchdogs(s, task),
        max_line: s.run.max_line_bytes,
        log_cap: None,
    }
}

/// A claude child's environment: the allowlisted one with its identity, and the
/// instance's own Claude config folder when instances have one (a fix round's
/// `--resume` finds the session there).
pub(super) fn environment(
    att: &Attempt,
    task: &TaskSpec,
    identity: &ChildIdentity<'_>,
) -> Vec<(String, String)> {
    let s = &att.shared.settings;
    let mut env = claude::environment(&att.shared.parent_env, s, task, identity);
    if s.claude.config_dir.per_instance(s.run.concurrency) {
        config_dir(att, &mut env);
    }
    env
}

/// A claude child's watchdogs: the task's, else the run's.
pub(super) fn watchdogs(s: &Settings, task: &TaskSpec) -> Watchdogs {
    Watchdogs {
        timeout: task.timeout.unwrap_or(s.run.timeout),
        idle_timeout: task.idle_timeout.unwrap_or(s.run.idle_timeout),
        result_grace: task.result_grace.unwrap_or(s.run.result_grace),
        interrupt_grace: s.run.interrupt_grace,
        term_grace: s.run.term_grace,
        leak_timeout: s.run.leak_timeout,
        max_memory_kb: s.run.max_attempt_memory.map(|b| b.div_ceil(1024)),
    }
}

/// The instance's own Claude config folder as the child's `CLAUDE_CONFIG_DIR` (made
/// and seeded with the user's credentials link when missing). Should it fail, the
/// child runs with the user's folder, as `config_dir = "shared"` would, and says so.
fn config_dir(att: &Attempt, env: &mut Vec<(String, String)>) {
    let user = claude_config::user_dir(&att.shared.parent_env);
    let path = std::path::absolute(&att.instance.path).unwrap_or(att.instance.path.clone());
    match claude_config::prepare(&path, user.as_deref()) {
        Ok(dir) => {
            env.retain(|(k, _)| k != "CLAUDE_CONFIG_DIR");
            env.push(("CLAUDE_CONFIG_DIR".into(), dir.display().to_string()));
        }
        Err(e) => tracing::warn!(
            instance = %att.instance.id,
            "cannot make the instance's Claude config folder ({e}); using the shared one"
        ),
    }
}

/// Adds the child's coordination: borg's MCP server and hooks (their flags go before
/// the user's `extra_args`, which keep the last word), its variable, and an allow
/// rule for borg's tools (needed in every permission mode but bypassPermissions).
pub(super) fn with_coordination(plan: &mut AttemptPlan, c: ChildCoord) {
    let rule = format!("mcp__{}", crate::coord::files::SERVER);
    let mut allowed = false;
    for a in plan.args.iter_mut() {
        if let Some(list) = a.strip_prefix("--allowedTools=") {
            if !list.split(',').any(|t| t == rule) {
                *a = format!("{a},{rule}");
            }
            allowed = true;
        }
    }
    let mut extra = c.args;
    if !allowed {
        extra.push(format!("--allowedTools={rule}"));
    }
    // Right after the fixed flags (`-p ... --permission-mode=`), before the user's.
    let at = plan
        .args
        .iter()
        .position(|a| a.starts_with("--permission-mode="))
        .map_or(plan.args.len(), |i| i + 1);
    plan.args.splice(at..at, extra);
    plan.env.extend(c.env);
}

/// A snapshot of the project, taken on the blocking pool: it walks and stats the whole
/// tree, which must not hold up the async workers draining other attempts' pipes.
pub(crate) async fn snapshot(project: &Path) -> Snapshot {
    let dir = project.to_path_buf();
    tokio::task::spawn_blocking(move || Snapshot::take(&dir).unwrap_or_default())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Creates the logs directory if missing and the stdout log (`borg logs --follow`
/// finds it from the start). The stderr log is made by its stream at its first byte:
/// most children write nothing there, and a file create is among the costliest
/// steps of an attempt on some filesystems. A `mkdir` of an existing directory takes
/// the directory's lock, hence the check first.
pub(super) fn prepare_logs(dir: &Path, stdout_log: &Path) {
    if !dir.is_dir() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stdout_log);
}

/// The durable record of the child's start, written once its pids are known and
/// before it is reported running; an error (the claim was lost) kills it at once.
pub(super) fn start_record(
    att: &Attempt,
    plan: &AttemptPlan,
    uid: String,
    resume: Option<String>,
) -> impl FnOnce(&ChildIds) -> Result<(), String> + Send + 'static {
    let (store, token, instance) = (
        att.shared.store.clone(),
        att.claim.token.clone(),
        att.instance.id.clone(),
    );
    let (stdout_log, stderr_log) = (
        plan.stdout_log.display().to_string(),
        plan.stderr_log.display().to_string(),
    );
    move |ids: &ChildIds| {
        let start = AttemptStart {
            instance,
            uid,
            shim_pid: ids.reaper_pid as i64,
            pid: ids.pid as i64,
            pgid: ids.pgid as i64,
            start_time: ids.start_time,
            boot_id: crate::supervise::procs::boot_id(),
            stdout_log,
            stderr_log,
            resume_session: resume,
            now_ms: now_ms(),
        };
        store
            .start_attempt(&token, &start)
            .map_err(|e| e.to_string())
    }
}

/// Renews the claim's lease while the child runs; a lost claim stops the child. So
/// does a store that could not be reached for a whole lease (measured on this host's
/// monotonic clock from the last renewal that worked): by then another host may have
/// taken the task over, and this attempt's work would be discarded anyway.
pub(super) struct Heartbeat {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Option<String>>,
}

impl Heartbeat {
    pub(super) fn start(
        store: &Arc<dyn Store>,
        token: &ClaimToken,
        lease: Duration,
        ctl: &Control,
    ) -> Self {
        let stop = CancellationToken::new();
        let (store, token, done, kill) =
            (store.clone(), token.clone(), stop.clone(), ctl.kill.clone());
        let task = tokio::spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(200));
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = done.cancelled() => return None,
                    _ = tokio::time::sleep(until_beat(every)) => {}
                }
                let tk = token.clone();
                let sent = tokio::time::Instant::now();
                let r = call(&store, move |st| st.heartbeat(&tk, lease, now_ms())).await;
                let why = match r {
                    Ok(()) => {
                        renewed = sent;
                        continue;
                    }
                    Err(e @ StoreError::StaleClaim { .. }) => e.to_string(),
                    Err(e) if renewed.elapsed() >= lease => format!(
                        "the lease of task {} could not be renewed for {} s ({e}); another host may own it now",
                        token.task,
                        lease.as_secs()
                    ),
                    Err(e) => {
                        tracing::warn!("heartbeat of task {}: {e}", token.task);
                        continue;
                    }
                };
                tracing::warn!("{why}; stopping the attempt");
                kill.cancel();
                return Some(why);
            }
        });
        Heartbeat { stop, task }
    }

    /// Stops renewing; says why the claim was lost, if it was.
    /// (See [`until_beat`] for when the renewals happen.)
    pub(super) async fn stop(self) -> Option<String> {
        self.stop.cancel();
        self.task.await.ok().flatten()
    }
}

/// The time to the next heartbeat: the next multiple of `every` on the wall clock, so
/// that the heartbeats of all running attempts fall at the same moment and the store
/// commits them together (one transaction, one fsync) instead of one by one.
fn until_beat(every: Duration) -> Duration {
    let period = every.as_millis().max(1) as i64;
    Duration::from_millis((period - now_ms().rem_euclid(period)) as u64)
}
