//! One attempt of one claimed task, end to end: prepare the instance (carry over the
//! files its dependencies changed), build the prompt, run the child, work out what it
//! did (transcript + workspace diff), classify the outcome, append to session.md and
//! decide what happens to the task next (done, retry, park, handoffs).

use crate::input::config::Settings;
use crate::input::roles::RoleSet;
use crate::input::tasklist::TaskSpec;
use crate::outcome::fault::{self, Classified, EndFacts};
use crate::outcome::{AttemptRecord, FaultClass, FileChange, Status};
use crate::run::prompt::{self, DepOutcome, HandoffContext};
use crate::store::{
    call, AttemptStart, Claim, ClaimToken, HandoffRow, HandoffState, Store, TaskRow,
};
use crate::supervise::claude::{self, ChildIdentity};
use crate::supervise::runner::{self, AttemptPlan, Control, LiveView, Watchdogs};
use crate::workspace::instance::{Instance, SessionEntry};
use crate::workspace::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A task as kept in the store's `spec` column: the list's definition, plus the
/// context of the handoff it came from, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSpec {
    /// The task definition.
    #[serde(flatten)]
    pub task: TaskSpec,
    /// Set when a handoff created this task.
    #[serde(default)]
    pub handoff: Option<HandoffContext>,
}

/// What the run loop shares with every attempt.
pub struct Shared {
    /// Settings.
    pub settings: Settings,
    /// Roles.
    pub roles: RoleSet,
    /// The claude binary.
    pub claude: PathBuf,
    /// borg's own environment (the child's is built from its allowlisted part).
    pub parent_env: BTreeMap<String, String>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The store's path (exported to the child for `borg handoff request`).
    pub store_path: PathBuf,
    /// The workspaces folder.
    pub workspaces: crate::workspace::instance::Workspaces,
}

/// The end of an attempt, as the run loop needs it.
#[derive(Debug, Clone)]
pub struct AttemptDone {
    /// Task id.
    pub task: String,
    /// Role.
    pub role: String,
    /// Instance.
    pub instance: String,
    /// The record written to the store.
    pub record: AttemptRecord,
    /// The classification.
    pub classified: Classified,
    /// Tasks created by handoffs.
    pub new_tasks: Vec<String>,
    /// The store refused the result (the claim was lost): nothing was recorded.
    pub lost_claim: Option<String>,
}

/// Runs one claimed task on `instance`.
pub async fn run(
    shared: Arc<Shared>,
    claim: Claim,
    instance: Instance,
    ctl: Control,
    live: Arc<Mutex<LiveView>>,
    disposition: impl FnOnce(&Classified, &TaskRow) -> crate::store::Disposition,
) -> AttemptDone {
    let spec: Option<StoredSpec> = serde_json::from_value(claim.task.spec.clone()).ok();
    let attempt = claim.attempt as u32;
    let task_id = claim.task.id.clone();
    let mut record = AttemptRecord {
        task: task_id.clone(),
        attempt,
        instance: instance.id.clone(),
        role: claim.task.role.clone(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ..Default::default()
    };
    // A task that cannot run at all ends here, as a permanent failure.
    let checked = match spec {
        None => Err((
            permanent(
                "the stored task definition is unreadable".into(),
                "bad_spec",
            ),
            None,
        )),
        Some(spec) => match shared.roles.get(&spec.task.role) {
            Ok(r) => Ok((r.clone(), spec)),
            Err(e) => Err((permanent(e.to_string(), "unknown_role"), Some(spec))),
        },
    };
    let (role, spec) = match checked {
        Ok(x) => x,
        Err((c, spec)) => {
            return finish(
                &shared,
                &claim.token,
                record,
                c,
                &claim.task,
                &instance,
                spec.as_ref(),
                disposition,
            )
            .await;
        }
    };

    // Dependencies: their outcomes go into the prompt, their changed files into this
    // instance (instances are isolated; a tester must see what the developer wrote).
    let mut deps = Vec::new();
    let mut sources: Vec<(String, Vec<FileChange>)> = Vec::new();
    let mut dep_ids = spec.task.depends_on.clone();
    if let Some(h) = &spec.handoff {
        if !dep_ids.contains(&h.source_task) {
            dep_ids.push(h.source_task.clone());
        }
    }
    for d in &dep_ids {
        let id = d.clone();
        let row = call(&shared.store, move |st| st.task(&id))
            .await
            .ok()
            .flatten();
        let Some(row) = row else { continue };
        let rec = AttemptRecord::from_stored(row.last_record.as_ref());
        if let Some(rec) = &rec {
            if rec.instance != instance.id && !rec.instance.is_empty() {
                sources.push((rec.instance.clone(), rec.files_changed.clone()));
            }
        }
        if spec.task.depends_on.contains(d) {
            deps.push(DepOutcome {
                id: row.id.clone(),
                role: row.role.clone(),
                status: row.status,
                files_changed: rec
                    .as_ref()
                    .map(|r| r.files_changed.clone())
                    .unwrap_or_default(),
                result_text: rec
                    .as_ref()
                    .and_then(|r| r.result_text.clone().or_else(|| r.error.clone())),
            });
        }
    }
    let project = instance.project_dir();
    for (src, files) in &sources {
        crate::workspace::instance::carry_over(
            &shared.workspaces.root.join(src).join("project-files"),
            &project,
            files,
        );
    }
    let history = instance.recent_history(prompt::HISTORY).unwrap_or_default();
    let text = prompt::build(
        &role,
        &history,
        &spec.task.prompt,
        &deps,
        spec.handoff.as_ref(),
    );

    // A task parked on a usage limit resumes its session so its work is kept.
    let last = AttemptRecord::from_stored(claim.task.last_record.as_ref());
    let resume = last
        .filter(|r| r.status == Some(Status::RateLimited))
        .and_then(|r| r.session_id);
    record.resumed_session.clone_from(&resume);

    let s = &shared.settings;
    let opts = claude::options(s, &role, &spec.task);
    let uid = uuid::Uuid::new_v4().simple().to_string();
    let identity = ChildIdentity {
        task: &task_id,
        instance: &instance.id,
        attempt,
        uid: &uid,
        workspace: &instance.path,
        claim_token: claim.token.fence,
        store: &shared.store_path,
    };
    let env = claude::environment(&shared.parent_env, s, &spec.task, &identity);
    let (stdout_log, stderr_log) = instance.attempt_logs(&task_id, attempt);
    prepare_logs(&instance.logs_dir(), &[&stdout_log, &stderr_log]);
    record.stdout_log = stdout_log.display().to_string();
    record.stderr_log = stderr_log.display().to_string();
    let plan = AttemptPlan {
        program: shared.claude.clone(),
        args: claude::args(s, &opts, resume.as_deref()),
        env,
        cwd: project.clone(),
        prompt: text,
        stdout_log: stdout_log.clone(),
        stderr_log: stderr_log.clone(),
        watchdogs: Watchdogs {
            timeout: spec.task.timeout.unwrap_or(s.run.timeout),
            idle_timeout: spec.task.idle_timeout.unwrap_or(s.run.idle_timeout),
            result_grace: spec.task.result_grace.unwrap_or(s.run.result_grace),
            interrupt_grace: s.run.interrupt_grace,
            term_grace: s.run.term_grace,
            leak_timeout: s.run.leak_timeout,
        },
        max_line: s.run.max_line_bytes,
    };
    let before = snapshot(&project).await;

    // Heartbeats renew the lease while the child runs; a lost claim stops the child.
    let hb_stop = tokio_util::sync::CancellationToken::new();
    let hb = {
        let (store, token, lease, stop, kill) = (
            shared.store.clone(),
            claim.token.clone(),
            s.run.lease,
            hb_stop.clone(),
            ctl.kill.clone(),
        );
        tokio::spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(every) => {}
                }
                let tk = token.clone();
                let r = call(&store, move |st| st.heartbeat(&tk, lease, now_ms())).await;
                if let Err(e @ crate::store::StoreError::StaleClaim { .. }) = r {
                    tracing::warn!("{e}; stopping the attempt");
                    kill.cancel();
                    return Some(e.to_string());
                }
            }
        })
    };
    let start_rec = {
        let (store, token, inst, uid, so, se, res) = (
            shared.store.clone(),
            claim.token.clone(),
            instance.id.clone(),
            uid.clone(),
            stdout_log.display().to_string(),
            stderr_log.display().to_string(),
            resume.clone(),
        );
        move |ids: &runner::ChildIds| -> Result<(), String> {
            let start = AttemptStart {
                instance: inst,
                uid,
                shim_pid: ids.shim_pid as i64,
                pid: ids.pid as i64,
                pgid: ids.pgid as i64,
                start_time: ids.start_time,
                boot_id: crate::supervise::procs::boot_id(),
                stdout_log: so,
                stderr_log: se,
                resume_session: res,
                now_ms: now_ms(),
            };
            store
                .start_attempt(&token, &start)
                .map_err(|e| e.to_string())
        }
    };
    let out = runner::run_attempt(plan, ctl, start_rec, Some(live)).await;
    hb_stop.cancel();
    let lost = hb.await.ok().flatten();

    let after = snapshot(&project).await;
    let mut files = before.diff(&after);
    crate::workspace::snapshot::merge_tool_files(&mut files, &out.summary.tool_files, &project);
    let facts = EndFacts {
        exit: out.exit,
        stderr_tail: &out.stderr_tail,
        watchdog: out.watchdog,
        interrupted: out.interrupted,
        spawn_error: out.spawn_error.as_deref(),
    };
    let classified = fault::classify(&out.summary, &facts);
    let sm = &out.summary;
    record.exit_code = out.exit.and_then(|e| e.code);
    record.signal = out.exit.and_then(|e| e.signal);
    record.watchdog = out.watchdog;
    record.leaked = out.leaked;
    record.session_id.clone_from(&sm.session_id);
    record.cost_usd = sm.cost_usd;
    record.tokens = sm.tokens;
    record.num_turns = sm.num_turns;
    record.files_changed = files;
    record.tests = sm.tests;
    record.result_text = sm.result.as_ref().and_then(|r| r.result.clone());
    record.duration_ms = out.duration.as_millis() as u64;
    record.oversized_lines = sm.oversized_lines;
    record.stop_latency_ms = out.stop_latency.map(|d| d.as_millis() as u64);
    let mut done = finish(
        &shared,
        &claim.token,
        record,
        classified,
        &claim.task,
        &instance,
        Some(&spec),
        disposition,
    )
    .await;
    if done.lost_claim.is_none() {
        done.lost_claim = lost;
    }
    done
}

/// A snapshot of the project, taken on the blocking pool: it walks and stats the whole
/// tree, which must not hold up the async workers draining other attempts' pipes.
async fn snapshot(project: &std::path::Path) -> Snapshot {
    let dir = project.to_path_buf();
    tokio::task::spawn_blocking(move || Snapshot::take(&dir).unwrap_or_default())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Creates the logs directory if missing and both log files, one after the other.
/// Created concurrently by the two stream consumers, the files contended for the
/// directory's lock (a dispatch-bound run spent ~4% of its CPU spinning on it); a
/// `mkdir` of an existing directory takes that lock too, hence the check first.
fn prepare_logs(dir: &std::path::Path, logs: &[&std::path::Path]) {
    if !dir.is_dir() {
        let _ = std::fs::create_dir_all(dir);
    }
    for log in logs {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log);
    }
}

/// Records the attempt: session.md, then the store (with the handoff tasks it creates).
#[allow(clippy::too_many_arguments)]
async fn finish(
    shared: &Arc<Shared>,
    token: &ClaimToken,
    mut record: AttemptRecord,
    classified: Classified,
    task: &TaskRow,
    instance: &Instance,
    spec: Option<&StoredSpec>,
    disposition: impl FnOnce(&Classified, &TaskRow) -> crate::store::Disposition,
) -> AttemptDone {
    record.status = Some(classified.status);
    record.fault = classified.fault;
    record.cause.clone_from(&classified.cause);
    record.error.clone_from(&classified.error);
    record.resets_at = classified.resets_at;
    let summary = record
        .result_text
        .clone()
        .or_else(|| record.error.clone())
        .unwrap_or_default();
    let entry = SessionEntry {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        task_id: record.task.clone(),
        attempt: record.attempt,
        prompt: spec.map(|s| s.task.prompt.clone()).unwrap_or_default(),
        status: classified.status,
        files_changed: record.files_changed.clone(),
        summary: summary.chars().take(2000).collect(),
    };
    if let Err(e) = instance.append_session(&entry) {
        tracing::warn!(
            "cannot append to {}: {e}",
            instance.session_path().display()
        );
    }
    let disp = disposition(&classified, task);
    let mut new_tasks = Vec::new();
    let mut converted = Vec::new();
    if classified.status == Status::Succeeded {
        let id = task.id.clone();
        let handoffs = call(&shared.store, move |st| st.handoffs(Some(&id)))
            .await
            .unwrap_or_default();
        let mut taken: Vec<String> = Vec::new();
        // A handoff is converted when it is still open: pending, or accepted by a
        // person before this attempt ended (then no task exists for it yet).
        let open = |h: &&HandoffRow| {
            (h.state == HandoffState::Pending
                || (h.state == HandoffState::Accepted && h.new_task.is_none()))
                && (h.fence == token.fence || record.resumed_session.is_some())
        };
        let wants_ids =
            spec.is_some_and(|s| s.task.handoff_to.is_some()) || handoffs.iter().any(|h| open(&h));
        // Only read every id (to pick free follow-up ids) when a handoff needs one.
        let all_ids: Vec<String> = if wants_ids {
            call(&shared.store, |st| st.statuses())
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.0)
                .collect()
        } else {
            Vec::new()
        };
        if let Some(to) = spec.and_then(|s| s.task.handoff_to.clone()) {
            let req = crate::store::HandoffRequest {
                to_role: to,
                reason: "declared in the task list (handoff_to)".into(),
                state: None,
                next_steps: vec![],
            };
            if let Some(t) = crate::run::handoff::handoff_task(
                task,
                spec,
                &instance.id,
                &req,
                &record,
                &all_ids,
                &mut taken,
            ) {
                new_tasks.push(t);
            }
        }
        // A resumed session's earlier (usage-limited) attempt may have asked too.
        for h in handoffs.iter().filter(open) {
            if let Some(t) = crate::run::handoff::handoff_task(
                task,
                spec,
                &instance.id,
                &h.request,
                &record,
                &all_ids,
                &mut taken,
            ) {
                converted.push((h.id, t.id.clone()));
                new_tasks.push(t);
            }
        }
    }
    let created: Vec<String> = new_tasks.iter().map(|t| t.id.clone()).collect();
    let fin = crate::store::AttemptFinish {
        status: classified.status,
        record: serde_json::to_value(&record).unwrap_or_default(),
        disposition: disp,
        new_tasks,
        converted_handoffs: converted,
        cost_usd: record.cost_usd,
        now_ms: now_ms(),
    };
    let tk = token.clone();
    let lost = call(&shared.store, move |st| st.finish_attempt(&tk, &fin))
        .await
        .err()
        .map(|e| e.to_string());
    AttemptDone {
        task: task.id.clone(),
        role: task.role.clone(),
        instance: instance.id.clone(),
        record,
        classified,
        new_tasks: if lost.is_none() { created } else { Vec::new() },
        lost_claim: lost,
    }
}

/// A permanent failure found before the child could start.
fn permanent(error: String, cause: &str) -> Classified {
    Classified {
        status: Status::Failed,
        fault: Some(FaultClass::Permanent),
        error: Some(error),
        cause: Some(cause.into()),
        resets_at: None,
        limit_kind: None,
    }
}

/// Now, epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
