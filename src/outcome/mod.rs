//! What the child did: the line splitter and the transcript parser (stream-json), the test-summary
//! recogniser, the fault classification, and the vocabulary of outcomes shared by
//! every stage (task and attempt statuses, file changes, test counts, token counts,
//! fault classes).

pub mod fault;
pub mod lines;
pub mod testnames;
pub mod testsummary;
pub mod transcript;
pub mod verified;

pub use verified::Checks;

use serde::{Deserialize, Serialize};
use std::fmt;

/// Status of a task or of one attempt, as written in reports and the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not started yet (dependencies pending or waiting for a slot).
    Pending,
    /// A child is running for it.
    Running,
    /// The claude run ended without error.
    Succeeded,
    /// The claude run ended in an error (API error, max turns, no result, ...).
    Failed,
    /// The wall-clock timeout fired.
    TimedOut,
    /// Never ran because a dependency did not succeed (or a handoff was rejected).
    Skipped,
    /// Stopped by a signal to borg (Ctrl-C, SIGTERM, SIGHUP) or by borg dying.
    Interrupted,
    /// The child could not be started at all.
    SpawnFailed,
    /// Killed by a signal nobody in borg sent.
    Killed,
    /// Stopped by a usage limit; the fleet parks and the task resumes later.
    RateLimited,
    /// The agent changed files it was not allowed to: another attempt's lease (with
    /// `[coord] on_violation = "fail"`), or outside its role's `writable` scope.
    OutOfScope,
    /// The agent said it was done, but borg's verification gates (or its reviewer)
    /// kept finding problems after every fix round.
    VerifyFailed,
    /// The task's work broke the integration gates of the merge queue (found by
    /// bisection), so it was not merged.
    IntegrationFailed,
}

impl Status {
    /// The snake_case name used in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Skipped => "skipped",
            Status::Interrupted => "interrupted",
            Status::SpawnFailed => "spawn_failed",
            Status::Killed => "killed",
            Status::RateLimited => "rate_limited",
            Status::OutOfScope => "out_of_scope",
            Status::VerifyFailed => "verify_failed",
            Status::IntegrationFailed => "integration_failed",
        }
    }

    /// Parses the snake_case name back (used by the store).
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            "timed_out" => Status::TimedOut,
            "skipped" => Status::Skipped,
            "interrupted" => Status::Interrupted,
            "spawn_failed" => Status::SpawnFailed,
            "killed" => Status::Killed,
            "rate_limited" => Status::RateLimited,
            "out_of_scope" => Status::OutOfScope,
            "verify_failed" => Status::VerifyFailed,
            "integration_failed" => Status::IntegrationFailed,
            _ => return None,
        })
    }

    /// True once nothing more will happen to a task in this state.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            Status::Pending | Status::Running | Status::RateLimited
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a file changed during an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The file did not exist before.
    Created,
    /// The file existed and its content changed (or a tool edited it).
    Modified,
    /// The file existed before and is gone.
    Deleted,
    /// The file moved (git mode: `git diff -M`; the old path is in `from`).
    Renamed,
}

/// One changed file, relative to the instance's `project-files/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct FileChange {
    /// Path relative to `project-files/`, with `/` separators.
    pub path: String,
    /// What happened to it.
    pub change: ChangeKind,
}

/// One changed file with what git knows of it (git mode): where a renamed file came
/// from and how many lines were inserted and deleted. In template mode only the path
/// and the change are known, and the JSON is the same as a [`FileChange`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileDiff {
    /// Path and change.
    #[serde(flatten)]
    pub file: FileChange,
    /// The old path of a renamed file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Lines inserted (git mode; binary files count 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insertions: Option<u64>,
    /// Lines deleted (git mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletions: Option<u64>,
}

impl From<FileChange> for FileDiff {
    fn from(file: FileChange) -> FileDiff {
        FileDiff {
            file,
            from: None,
            insertions: None,
            deletions: None,
        }
    }
}

/// The totals of a diff: files, lines inserted, lines deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diffstat {
    /// Files changed.
    pub files: u64,
    /// Lines inserted.
    pub insertions: u64,
    /// Lines deleted.
    pub deletions: u64,
}

/// Test counts recognised in the Bash tool results of a transcript.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCounts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed (or errored).
    pub failed: u64,
    /// Tests ignored or skipped.
    pub ignored: u64,
}

/// Token usage of an attempt (from `modelUsage`, else `usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Input tokens, cache reads and writes excluded.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read: u64,
    /// Tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation: u64,
}

impl Tokens {
    /// Adds another count to this one.
    pub fn add(&mut self, other: &Tokens) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_creation += other.cache_creation;
    }
}

/// What kind of fault ended a failed attempt; decides retry, breaker and parking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultClass {
    /// Worth retrying: API 5xx/529, network errors, idle watchdog, no result line, killed.
    Transient,
    /// Retrying cannot help this task: max turns, budget, prompt too long, bad arguments.
    Permanent,
    /// Nothing will work for any task: bad key, missing binary. Opens the breaker.
    FleetWide,
    /// A usage limit: the fleet parks until it resets.
    UsageLimit,
    /// borg itself stopped the attempt (Ctrl-C, shutdown); not the child's fault.
    Interrupted,
    /// borg's coordination server (`borg mcp`) was not connected when the child
    /// started, so its leases and messages could not work: the attempt is failed.
    CoordinationUnavailable,
    /// The agent broke the rules of the fleet (changed a file another attempt held,
    /// or one outside its role's scope).
    OutOfScope,
    /// borg's own checks (gates, review) still failed when the fix rounds were spent:
    /// more attempts of the same kind would not help, so it is not retried.
    Verification,
    /// The merge queue's integration gates failed with this task's work.
    Integration,
}

impl FaultClass {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultClass::Transient => "transient",
            FaultClass::Permanent => "permanent",
            FaultClass::FleetWide => "fleet_wide",
            FaultClass::UsageLimit => "usage_limit",
            FaultClass::Interrupted => "interrupted",
            FaultClass::CoordinationUnavailable => "coordination_unavailable",
            FaultClass::OutOfScope => "out_of_scope",
            FaultClass::Verification => "verification",
            FaultClass::Integration => "integration",
        }
    }
}

/// Which watchdog stopped an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watchdog {
    /// The wall-clock `timeout`.
    Timeout,
    /// `idle_timeout`: no stdout for too long.
    Idle,
    /// `result_grace`: still alive too long after its `result` line.
    ResultGrace,
    /// `max_attempt_memory`: the whole tree's resident memory passed the limit.
    Memory,
}

impl Watchdog {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Watchdog::Timeout => "timeout",
            Watchdog::Idle => "idle_timeout",
            Watchdog::ResultGrace => "result_grace",
            Watchdog::Memory => "memory",
        }
    }
}

/// How the child process ended, as borg saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code when it exited normally.
    pub code: Option<i32>,
    /// Signal number when a signal killed it.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// The conventional shell number: the code, or 128 + signal.
    pub fn shell_code(&self) -> Option<i32> {
        self.code.or(self.signal.map(|s| 128 + s))
    }
}

/// Everything recorded about one finished attempt (stored as JSON, shown in reports).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Task id.
    pub task: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Instance that ran it.
    pub instance: String,
    /// Role.
    pub role: String,
    /// Attempt status.
    pub status: Option<Status>,
    /// Fault class when not succeeded.
    pub fault: Option<FaultClass>,
    /// Short stable cause key (api_500, auth_401, idle ...).
    pub cause: Option<String>,
    /// Error text.
    pub error: Option<String>,
    /// claude's exit code.
    pub exit_code: Option<i32>,
    /// Signal that killed claude.
    pub signal: Option<i32>,
    /// Watchdog that fired.
    pub watchdog: Option<Watchdog>,
    /// Something of the tree had to be killed at the end.
    pub leaked: bool,
    /// Session id.
    pub session_id: Option<String>,
    /// Cost of this attempt.
    pub cost_usd: f64,
    /// Tokens of this attempt.
    pub tokens: Tokens,
    /// Turns.
    pub num_turns: u64,
    /// Files changed.
    pub files_changed: Vec<FileDiff>,
    /// Tests recognised.
    pub tests: Option<TestCounts>,
    /// The result text.
    pub result_text: Option<String>,
    /// RFC 3339 start time.
    pub started_at: String,
    /// Wall time.
    pub duration_ms: u64,
    /// Raw stdout log path.
    pub stdout_log: String,
    /// Stderr log path.
    pub stderr_log: String,
    /// Usage-limit reset, epoch seconds.
    pub resets_at: Option<i64>,
    /// Oversized (unparsed) stdout lines.
    pub oversized_lines: u64,
    /// Stop latency (first stop action to tree gone), ms.
    pub stop_latency_ms: Option<u64>,
    /// Session resumed by this attempt.
    pub resumed_session: Option<String>,
    /// The largest resident memory of the attempt's whole process tree, MiB (rounded
    /// up), sampled from `/proc` by the reaper; None when never measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mb: Option<u64>,
    /// `session = "continue"` could not resume the instance's session, so the attempt
    /// ran in a fresh one: which session, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_fallback: Option<String>,
    /// Status of borg's MCP server in the child's init line (`connected`, `failed`,
    /// `pending`), when coordination was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordination: Option<String>,
    /// Files this attempt changed while another attempt held them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lease_violations: Vec<LeaseViolation>,
    /// Decisions this attempt's agent logged (ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<String>,
    /// Tasks this attempt's agent created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_tasks: Vec<String>,
    /// Git mode: what the attempt did in the repository.
    #[serde(flatten)]
    pub git: GitFacts,
    /// What borg checked itself: gates, fix rounds, review (absent when nothing was
    /// checked).
    #[serde(flatten)]
    pub checks: Checks,
}

/// What an attempt did in the repository (git mode); every field absent in template
/// mode, so template-mode records and reports are as they were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitFacts {
    /// The task's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The start commit (the base with the dependencies merged in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The attempt's final commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Where the final commit is kept: `refs/borg/attempts/<task>/<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_ref: Option<String>,
    /// Totals of the diff from `base` to `commit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diffstat: Option<Diffstat>,
    /// Milliseconds spent making the start commit and putting the worktree on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    /// Milliseconds spent committing the attempt's work and reading its diff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_ms: Option<u64>,
}

/// A change to a file another attempt held a lease on (found after a shell command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseViolation {
    /// The file, relative to the repository root.
    pub path: String,
    /// The holder's instance.
    pub holder_instance: String,
    /// The holder's task.
    pub holder_task: String,
    /// The lease's pattern.
    pub lease: String,
    /// The tool that made the change.
    pub tool: String,
}

impl AttemptRecord {
    /// Decodes a record as stored with an attempt row; `None` when there is none or it
    /// does not decode (an older or damaged row), which readers show as "no details".
    ///
    /// Deserializes from the borrowed JSON so callers need not clone the stored value.
    pub fn from_stored(v: Option<&serde_json::Value>) -> Option<Self> {
        v.and_then(|v| Self::deserialize(v).ok())
    }

    /// The files changed, path and change only (what prompts and session.md show).
    pub fn changes(&self) -> Vec<FileChange> {
        self.files_changed.iter().map(|f| f.file.clone()).collect()
    }
}
