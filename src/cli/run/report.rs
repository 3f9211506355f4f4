//! `borg run`, last step: the report of the run's tasks (or of the whole store without
//! a list), written where asked (`--report`, `--junit`), printed (`--json` or the
//! table), and the exit code it implies.

use crate::cli::RunArgs;
use crate::error::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK};
use crate::outcome::Status;
use crate::run::spec::source_of;
use crate::run::summary::RunSummary;
use crate::show::report::{self, Report, TaskReport};
use crate::store::{Store, TaskRow};
use anyhow::Context;
use std::collections::{HashMap, HashSet};

/// What the report is made of besides the store.
pub(super) struct RunFacts<'a> {
    /// The run's id (its owner id).
    pub run_id: &'a str,
    /// When it started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The CLI's version.
    pub claude_version: Option<String>,
    /// The list's task ids (empty: the whole store).
    pub scope: &'a [String],
    /// Tasks changed after they succeeded (reported, not re-run).
    pub changed_after_success: &'a [String],
    /// How the run ended.
    pub summary: &'a RunSummary,
    /// What the merge queue did (`--merge`).
    pub merge: Option<report::merge::MergeSummary>,
}

/// Builds the report from the store.
pub(super) fn build(store: &dyn Store, f: &RunFacts<'_>) -> anyhow::Result<Report> {
    let rows = store.tasks()?;
    let in_run: HashSet<&String> = f.summary.scope.iter().collect();
    let not_started = f
        .summary
        .stop
        .as_ref()
        .map(|s| s.short().to_string())
        .or(f.summary.interrupted.then(|| "interrupted".to_string()));
    let mut tasks = Vec::new();
    for t in rows
        .iter()
        .filter(|t| f.scope.is_empty() || in_run.contains(&t.id))
    {
        let attempts = store.attempts(&t.id)?;
        let mut r = report::task_report(t, &attempts, not_started.as_deref());
        r.changed_after_success = f.changed_after_success.contains(&t.id);
        let (sent, received) = store.message_counts(&t.id).unwrap_or_default();
        r.messages = report::MessageCounts { sent, received };
        tasks.push(r);
    }
    link_handoffs(&mut tasks, &rows);
    explain_unresolved(&mut tasks);
    let (totals, role_metrics) = report::totals(&tasks);
    let now = chrono::Utc::now();
    Ok(Report {
        run_id: f.run_id.to_string(),
        started_at: f
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        claude_version: f.claude_version.clone(),
        tasks,
        totals,
        roles: role_metrics,
        interrupted: f.summary.interrupted,
        stop_reason: f.summary.stop.as_ref().map(|s| s.message().to_string()),
        merge: f.merge.clone(),
    })
}

/// Every task a handoff created names its source: that gives each source its
/// follow-ups, declared or requested alike.
fn link_handoffs(tasks: &mut [TaskReport], rows: &[TaskRow]) {
    let index: HashMap<String, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    for t in rows {
        if let Some(&i) = source_of(t).and_then(|src| index.get(src)) {
            let r = &mut tasks[i];
            r.handoff_to.get_or_insert_with(|| t.role.clone());
            r.handoff_tasks.push(t.id.clone());
        }
    }
}

/// Git mode: each task lists its resolve tasks; one skipped because its resolve task
/// did not succeed says so, with the resolve task's error.
fn explain_unresolved(tasks: &mut [TaskReport]) {
    let links: Vec<(String, String)> = tasks
        .iter()
        .filter_map(|r| Some((r.git.resolve_of.clone()?, r.id.clone())))
        .collect();
    for (of, id) in links {
        if let Some(t) = tasks.iter_mut().find(|t| t.id == of) {
            t.git.resolve_tasks.push(id);
        }
    }
    let failed: Vec<(String, String, String)> = tasks
        .iter()
        .filter(|r| r.status != Status::Succeeded)
        .filter_map(|r| {
            let of = r.git.resolve_of.clone()?;
            let why = r.error.clone().unwrap_or_else(|| r.status.to_string());
            Some((of, r.id.clone(), why))
        })
        .collect();
    for (of, id, why) in failed {
        if let Some(t) = tasks
            .iter_mut()
            .find(|t| t.id == of && t.status == Status::Skipped)
        {
            let first = why.lines().next().unwrap_or("").to_string();
            t.error = Some(format!(
                "not run: its resolve task {id} did not succeed: {first}"
            ));
        }
    }
}

/// Writes the report files, prints it, and returns the exit code.
pub(super) fn deliver(rep: &Report, a: &RunArgs, summary: &RunSummary) -> anyhow::Result<i32> {
    if let Some(p) = &a.report {
        std::fs::write(p, serde_json::to_string_pretty(rep)?)
            .with_context(|| format!("writing the report {}", p.display()))?;
    }
    if let Some(p) = &a.junit {
        std::fs::write(p, report::junit(rep))
            .with_context(|| format!("writing the JUnit report {}", p.display()))?;
    }
    if a.json {
        crate::cli::print_json(rep)?;
    } else {
        eprint!("\n{}", report::table(rep));
    }
    Ok(exit_code(rep, a, summary))
}

/// 130 interrupted (with what was stopped), 1 stopped early or a task did not
/// succeed, 0 all succeeded.
fn exit_code(rep: &Report, a: &RunArgs, summary: &RunSummary) -> i32 {
    if summary.interrupted {
        let stopped = if summary.stopped_tasks.is_empty() {
            "none".to_string()
        } else {
            summary.stopped_tasks.join(", ")
        };
        let done = rep
            .tasks
            .iter()
            .filter(|t| t.status.is_terminal() && t.status != Status::Interrupted)
            .count();
        eprintln!("borg: interrupted: stopped {stopped}; {done} of {} tasks had finished; run the same command again to resume", rep.tasks.len());
        return EXIT_INTERRUPTED;
    }
    if let Some(s) = &summary.stop {
        // The table ends with the same message ("stopped early: ..."): say it once.
        if a.json {
            eprintln!("borg: {}", s.message());
        }
        return EXIT_FAILED;
    }
    if rep.tasks.iter().all(|t| t.status == Status::Succeeded) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}
