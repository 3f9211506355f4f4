//! What borg checked itself after an attempt, as recorded with it and shown in the
//! report: each verification gate's result (command, exit code, duration, test counts
//! and failing test names, judged against the baseline: regressions and preexisting
//! failures), the fix rounds run (each resumed session), and the review verdict.
//!
//! The agent's own claim stays in the record's `tests`; `verified` is what borg ran.

use super::{TestCounts, Tokens};
use serde::{Deserialize, Serialize};

/// Everything borg checked for one attempt; every field absent when nothing was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    /// The gates of the last round, and what they found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
    /// How many fix rounds ran (set whenever gates or a review ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_rounds: Option<u32>,
    /// Each fix round: why, the resumed session, its cost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<FixRound>,
    /// The last review verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// Paths changed outside the role's `writable` scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_scope: Vec<String>,
}

/// What the gates found, summed over the gates of the last round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    /// Tests passed.
    pub passed: u64,
    /// Tests failed.
    pub failed: u64,
    /// Tests ignored or skipped.
    pub ignored: u64,
    /// Failures that are new: not failing at the start commit.
    pub regressions: Vec<String>,
    /// Failures that already failed at the start commit (not the agent's doing).
    pub preexisting: Vec<String>,
    /// Each gate run, in order.
    pub gates: Vec<GateRun>,
}

impl Verified {
    /// The test counts, when any gate gave some.
    pub fn counts(&self) -> Option<TestCounts> {
        self.gates
            .iter()
            .any(|g| g.tests.is_some())
            .then_some(TestCounts {
                passed: self.passed,
                failed: self.failed,
                ignored: self.ignored,
            })
    }
}

/// One run of one gate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateRun {
    /// The command line.
    pub command: String,
    /// Its exit code (None: killed, e.g. at its timeout).
    pub exit_code: Option<i32>,
    /// Wall time.
    pub duration_ms: u64,
    /// Whether the gate passed, judged against the baseline.
    pub passed: bool,
    /// Killed at `[verify] timeout`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// The test counts its output (or its JUnit XML) gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestCounts>,
    /// Names of the failing tests, when the runner gives names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
    /// New failures of this gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regressions: Vec<String>,
    /// Failures it also had at the start commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preexisting: Vec<String>,
    /// How the baseline judged it: `names`, `counts`, `exit` (no baseline), or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared_by: Option<String>,
    /// The baseline's exit code, when a baseline was needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_exit_code: Option<i32>,
    /// Where its output is kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log: String,
    /// The tail of its output (bounded), for prompts and reports.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_tail: String,
}

/// One fix round: the same session resumed in the same worktree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FixRound {
    /// 1-based.
    pub round: u32,
    /// `gate` or `review`.
    pub why: String,
    /// The failing gate's command, for a gate round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// The regressions named in its prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regressions: Vec<String>,
    /// The session resumed.
    pub session_id: String,
    /// How the resumed run ended.
    pub status: String,
    /// Its error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its cost.
    pub cost_usd: f64,
    /// Its tokens.
    pub tokens: Tokens,
    /// Its turns.
    pub num_turns: u64,
    /// Its wall time.
    pub duration_ms: u64,
    /// Git mode: the commit of its work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Its raw stdout log.
    pub stdout_log: String,
}

/// A reviewer's verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// `approve` or `changes_requested`.
    pub verdict: String,
    /// Its comments.
    pub comments: Vec<Comment>,
    /// The reviewing role.
    pub role: String,
    /// The instance that reviewed.
    pub instance: String,
    /// The review's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// How many reviews ran (one per round that reached the review).
    pub reviews: u32,
    /// The reviews' cost (included in the task's).
    pub cost_usd: f64,
}

/// One review comment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// The file, relative to the repository root.
    #[serde(default)]
    pub path: String,
    /// The line, when it names one.
    #[serde(default)]
    pub line: Option<u64>,
    /// What to change.
    #[serde(default)]
    pub body: String,
}

impl Checks {
    /// Whether anything was checked.
    pub fn is_empty(&self) -> bool {
        self == &Checks::default()
    }
}
