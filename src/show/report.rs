//! The report of a run: a summary table for people, JSON in the schema of DESIGN.md
//! for machines (`--json`, `--report FILE`), JUnit XML for CI systems (`--junit`),
//! and per-role metrics (tasks, success rate, mean and p95 duration, cost, tokens).

use crate::outcome::{AttemptRecord, Checks, FileDiff, LeaseViolation, Status, TestCounts, Tokens};
use crate::store::{AttemptRow, TaskRow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

mod checks;
mod git;
pub mod merge;
pub use git::GitReport;
use git::{git_cells, has_git};

/// One task in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Task id.
    pub id: String,
    /// Role.
    pub role: String,
    /// Instance of the last attempt.
    pub instance: Option<String>,
    /// Status.
    pub status: Status,
    /// Attempts started.
    pub attempts: u32,
    /// Wall time of all attempts.
    pub duration_ms: u64,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Session id of the last attempt.
    pub session_id: Option<String>,
    /// Cost of all attempts.
    pub cost_usd: f64,
    /// Tokens of all attempts.
    pub tokens: Tokens,
    /// Turns of the last attempt.
    pub num_turns: u64,
    /// Files changed by the last attempt.
    pub files_changed: Vec<FileDiff>,
    /// Tests of the last attempt.
    pub tests: TestCounts,
    /// Role the work was handed to, if any.
    pub handoff_to: Option<String>,
    /// Tasks created by handoffs from this one.
    pub handoff_tasks: Vec<String>,
    /// Error of the last attempt.
    pub error: Option<String>,
    /// Fault class of the last failed attempt.
    pub fault: Option<String>,
    /// Watchdog that stopped the last attempt.
    pub watchdog: Option<String>,
    /// Whether the last attempt leaked processes that had to be killed.
    pub leaked: bool,
    /// The result text of the last attempt.
    pub result: Option<String>,
    /// The largest resident memory of any attempt's whole process tree, MiB.
    #[serde(default)]
    pub peak_rss_mb: Option<u64>,
    /// The definition changed after it succeeded (not re-run).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub changed_after_success: bool,
    /// Decisions its agents logged (ids, oldest first).
    #[serde(default)]
    pub decisions: Vec<String>,
    /// Messages its agents sent and received.
    #[serde(default)]
    pub messages: MessageCounts,
    /// Changes its agents made to files other agents held (every attempt).
    #[serde(default)]
    pub lease_violations: Vec<LeaseViolation>,
    /// Tasks its agents created (`create_task`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_tasks: Vec<String>,
    /// Git mode: branch, commits, diffstat, resolve links (absent in template mode).
    #[serde(flatten)]
    pub git: GitReport,
    /// What borg checked of the last attempt: `verified`, `fix_rounds`, `rounds`,
    /// `review`, `out_of_scope` (each absent when not checked).
    #[serde(flatten)]
    pub checks: Checks,
}

/// Messages of a task's agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCounts {
    /// Sent by its agents.
    pub sent: u64,
    /// Addressed to the task, or read by its instance while running it.
    pub received: u64,
}

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Tasks.
    pub tasks: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// Not succeeded (failed, timed out, spawn failed, killed, interrupted...).
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Not finished yet (only while a run is going on: `borg status`).
    #[serde(default)]
    pub pending: usize,
    /// Running now (only in `borg status`).
    #[serde(default)]
    pub running: usize,
    /// Cost.
    pub cost_usd: f64,
    /// Tokens.
    pub tokens: Tokens,
    /// Attempts.
    pub attempts: u32,
}

/// Per-role metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleMetrics {
    /// Tasks.
    pub tasks: usize,
    /// Succeeded / finished.
    pub success_rate: f64,
    /// Mean task duration, ms.
    pub mean_duration_ms: u64,
    /// 95th percentile task duration, ms.
    pub p95_duration_ms: u64,
    /// Cost.
    pub cost_usd: f64,
    /// Tokens.
    pub tokens: Tokens,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Run id.
    pub run_id: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// `claude --version`.
    pub claude_version: Option<String>,
    /// Tasks, in list order.
    pub tasks: Vec<TaskReport>,
    /// Totals.
    pub totals: Totals,
    /// Per-role metrics.
    pub roles: BTreeMap<String, RoleMetrics>,
    /// Interrupted by a signal.
    pub interrupted: bool,
    /// Why the run stopped early, if it did.
    pub stop_reason: Option<String>,
    /// What the merge queue did (`borg run --merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<merge::MergeSummary>,
}

/// Builds one task's report from its row and attempts.
pub fn task_report(t: &TaskRow, attempts: &[AttemptRow], not_started: Option<&str>) -> TaskReport {
    let recs: Vec<AttemptRecord> = attempts
        .iter()
        .filter_map(|a| AttemptRecord::from_stored(a.record.as_ref()))
        .collect();
    let last = recs.last();
    let mut status = t.status;
    let mut error = last.and_then(|r| r.error.clone());
    if !status.is_terminal() {
        status = match last.and_then(|r| r.status) {
            Some(Status::Interrupted) => Status::Interrupted,
            Some(Status::RateLimited) => Status::RateLimited,
            Some(s) if s != Status::Succeeded => s,
            _ => {
                if let Some(why) = not_started {
                    error = Some(format!("not started: {why}"));
                }
                Status::Skipped
            }
        };
    }
    if t.status == Status::Skipped && error.is_none() {
        error = Some("not run: a dependency did not succeed".into());
    }
    let mut tokens = Tokens::default();
    for r in &recs {
        tokens.add(&r.tokens);
    }
    let spec_handoff = t
        .spec
        .get("handoff_to")
        .and_then(|v| v.as_str())
        .map(String::from);
    TaskReport {
        id: t.id.clone(),
        role: t.role.clone(),
        instance: last.map(|r| r.instance.clone()),
        status,
        attempts: t.attempts as u32,
        duration_ms: recs.iter().map(|r| r.duration_ms).sum(),
        exit_code: last.and_then(|r| r.exit_code),
        session_id: last.and_then(|r| r.session_id.clone()),
        // A float sum of nothing is -0.0; start from +0.0 so tables never show "$-0.0000".
        cost_usd: recs.iter().fold(0.0, |a, r| a + r.cost_usd),
        tokens,
        num_turns: last.map(|r| r.num_turns).unwrap_or(0),
        files_changed: last.map(|r| r.files_changed.clone()).unwrap_or_default(),
        tests: last.and_then(|r| r.tests).unwrap_or_default(),
        handoff_to: spec_handoff,
        handoff_tasks: Vec::new(),
        error: if status == Status::Succeeded {
            None
        } else {
            error
        },
        fault: last.and_then(|r| r.fault).map(|f| f.as_str().to_string()),
        watchdog: last
            .and_then(|r| r.watchdog)
            .map(|w| w.as_str().to_string()),
        leaked: last.is_some_and(|r| r.leaked),
        result: last.and_then(|r| r.result_text.clone()),
        peak_rss_mb: recs.iter().filter_map(|r| r.peak_rss_mb).max(),
        changed_after_success: false,
        decisions: last.map(|r| r.decisions.clone()).unwrap_or_default(),
        messages: MessageCounts::default(),
        lease_violations: recs
            .iter()
            .flat_map(|r| r.lease_violations.clone())
            .collect(),
        created_tasks: last.map(|r| r.created_tasks.clone()).unwrap_or_default(),
        git: GitReport::of(t, last),
        checks: last.map(|r| r.checks.clone()).unwrap_or_default(),
    }
}

/// A task's report while a run may still be going on: unfinished tasks keep their
/// live state (pending, running) instead of the end-of-run reading.
pub fn live_task_report(t: &TaskRow, attempts: &[AttemptRow]) -> TaskReport {
    let mut r = task_report(t, attempts, None);
    if !t.status.is_terminal() {
        r.status = t.status;
        r.error = None;
    }
    r
}

/// Totals and per-role metrics of a list of task reports.
pub fn totals(tasks: &[TaskReport]) -> (Totals, BTreeMap<String, RoleMetrics>) {
    let mut t = Totals {
        tasks: tasks.len(),
        ..Default::default()
    };
    let mut by_role: BTreeMap<String, Vec<&TaskReport>> = BTreeMap::new();
    for r in tasks {
        match r.status {
            Status::Succeeded => t.succeeded += 1,
            Status::Skipped => t.skipped += 1,
            Status::Pending | Status::RateLimited => t.pending += 1,
            Status::Running => t.running += 1,
            _ => t.failed += 1,
        }
        t.cost_usd += r.cost_usd;
        t.tokens.add(&r.tokens);
        t.attempts += r.attempts;
        by_role.entry(r.role.clone()).or_default().push(r);
    }
    let roles = by_role
        .into_iter()
        .map(|(role, rs)| {
            let finished: Vec<&&TaskReport> = rs
                .iter()
                .filter(|r| r.status.is_terminal() && r.status != Status::Skipped)
                .collect();
            let mut durs: Vec<u64> = finished.iter().map(|r| r.duration_ms).collect();
            durs.sort_unstable();
            let mut tokens = Tokens::default();
            rs.iter().for_each(|r| tokens.add(&r.tokens));
            let m = RoleMetrics {
                tasks: rs.len(),
                success_rate: if finished.is_empty() {
                    0.0
                } else {
                    finished
                        .iter()
                        .filter(|r| r.status == Status::Succeeded)
                        .count() as f64
                        / finished.len() as f64
                },
                mean_duration_ms: if durs.is_empty() {
                    0
                } else {
                    durs.iter().sum::<u64>() / durs.len() as u64
                },
                p95_duration_ms: percentile(&durs, 0.95),
                cost_usd: rs.iter().map(|r| r.cost_usd).sum(),
                tokens,
            };
            (role, m)
        })
        .collect();
    (t, roles)
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The summary table for a terminal.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let rows: Vec<Vec<String>> = r
        .tasks
        .iter()
        .map(|t| {
            [
                t.id.clone(),
                t.role.clone(),
                checks::status_cell(t),
                t.attempts.to_string(),
                format!("{:.1}s", t.duration_ms as f64 / 1000.0),
                format!("${:.4}", t.cost_usd),
                t.files_changed.len().to_string(),
                checks::tests_cell(t),
            ]
            .into_iter()
            .chain(git_cells(r, t))
            .collect()
        })
        .collect();
    let mut head = vec![
        "TASK", "ROLE", "STATUS", "TRIES", "TIME", "COST", "FILES", "TESTS",
    ];
    if has_git(r) {
        head.push("LINES");
    }
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let _ = write!(l, "{:<width$}  ", c, width = w[i]);
        }
        l.trim_end().to_string()
    };
    out.push_str(&line(
        &head.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    ));
    out.push('\n');
    for (row, t) in rows.iter().zip(&r.tasks) {
        out.push_str(&line(row));
        out.push('\n');
        if let Some(e) = &t.error {
            let _ = writeln!(
                out,
                "    └ {}",
                e.lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect::<String>()
            );
        }
    }
    if let Some(m) = &r.merge {
        out.push('\n');
        out.push_str(&m.text());
    }
    let tt = &r.totals;
    let _ = writeln!(out, "\n{} tasks: {} succeeded, {} failed, {} skipped; {} attempts; ${:.4}; {} in / {} out tokens", tt.tasks, tt.succeeded, tt.failed, tt.skipped, tt.attempts, tt.cost_usd, tt.tokens.input, tt.tokens.output);
    if let Some(s) = &r.stop_reason {
        let _ = writeln!(out, "stopped early: {s}");
    }
    out
}

/// JUnit XML: one testcase per task.
pub fn junit(r: &Report) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let secs = |ms: u64| format!("{:.3}", ms as f64 / 1000.0);
    let total_ms: u64 = r.tasks.iter().map(|t| t.duration_ms).sum();
    let _ = writeln!(
        x,
        "<testsuites name=\"borg\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{}\">",
        r.totals.tasks,
        r.totals.failed,
        r.totals.skipped,
        secs(total_ms)
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"borg run {}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">",
        esc(&r.run_id),
        r.totals.tasks,
        r.totals.failed,
        r.totals.skipped,
        secs(total_ms),
        esc(&r.started_at)
    );
    for t in &r.tasks {
        let _ = write!(
            x,
            "    <testcase name=\"{}\" classname=\"borg.{}\" time=\"{}\">",
            esc(&t.id),
            esc(&t.role),
            secs(t.duration_ms)
        );
        match t.status {
            Status::Succeeded => {}
            Status::Skipped => {
                let _ = write!(
                    x,
                    "\n      <skipped message=\"{}\"/>",
                    esc(t.error.as_deref().unwrap_or("skipped"))
                );
            }
            s => {
                let msg = t.error.as_deref().unwrap_or(s.as_str());
                let _ = write!(
                    x,
                    "\n      <failure message=\"{}\" type=\"{}\">{}</failure>",
                    esc(msg.lines().next().unwrap_or("")),
                    s,
                    esc(msg)
                );
            }
        }
        if let Some(out) = &t.result {
            let _ = write!(x, "\n      <system-out>{}</system-out>", esc(out));
        }
        x.push_str(if t.status == Status::Succeeded && t.result.is_none() {
            "</testcase>\n"
        } else {
            "\n    </testcase>\n"
        });
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// Escapes text for XML attributes and content; drops characters XML 1.0 forbids.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        assert_eq!(percentile(&[], 0.95), 0);
        assert_eq!(percentile(&[5], 0.95), 5);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.95), 95);
    }

    #[test]
    fn xml_escaping_removes_control_characters() {
        assert_eq!(esc("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
