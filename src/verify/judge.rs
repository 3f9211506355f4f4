//! A gate's result judged against its baseline (the same gate at the task's start
//! commit), so that an agent is not blamed for what was already broken:
//!
//! - a run that exits 0 passes;
//! - a run killed at its timeout fails;
//! - when the run names its failing tests, those that also failed at the baseline
//!   are `preexisting` and the others `regressions`; it fails only on regressions;
//! - when it names none (counts only, or nothing), it fails when the baseline
//!   exited 0, when its failures grew, or when the baseline had test counts and the
//!   run has none (its tests no longer ran);
//! - without a baseline (`[verify] baseline = false`, or no start commit), it passes
//!   only by exiting 0, and every failure it names is a regression.

use super::exec::GateOutput;
use crate::outcome::verified::GateRun;
use crate::outcome::TestCounts;
use serde::{Deserialize, Serialize};

/// A gate's result at a start commit, as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Exit code (None: killed).
    pub exit_code: Option<i32>,
    /// Killed at its timeout.
    #[serde(default)]
    pub timed_out: bool,
    /// Test counts.
    #[serde(default)]
    pub tests: Option<TestCounts>,
    /// Failing test names.
    #[serde(default)]
    pub failing: Vec<String>,
    /// Wall time.
    #[serde(default)]
    pub duration_ms: u64,
}

impl From<&GateOutput> for Baseline {
    fn from(o: &GateOutput) -> Baseline {
        Baseline {
            exit_code: o.exit_code,
            timed_out: o.timed_out,
            tests: o.tests,
            failing: o.failing.clone(),
            duration_ms: o.duration_ms,
        }
    }
}

/// The record of one gate run: `out` judged against `base`.
pub fn judge(command: &str, out: &GateOutput, base: Option<&Baseline>, log: &str) -> GateRun {
    let mut run = GateRun {
        command: command.to_string(),
        exit_code: out.exit_code,
        duration_ms: out.duration_ms,
        timed_out: out.timed_out,
        tests: out.tests,
        failing: out.failing.clone(),
        baseline_exit_code: base.and_then(|b| b.exit_code),
        log: log.to_string(),
        output_tail: out.output_tail.clone(),
        ..GateRun::default()
    };
    let (pre, new): (Vec<String>, Vec<String>) = match base {
        Some(b) => out
            .failing
            .iter()
            .cloned()
            .partition(|n| b.failing.contains(n)),
        None => (Vec::new(), out.failing.clone()),
    };
    run.preexisting = pre;
    run.regressions = new;
    let (passed, how) = verdict(out, base, &run.regressions);
    run.passed = passed;
    run.compared_by = Some(how.to_string());
    run
}

/// Whether the run passes, and how that was decided.
fn verdict(
    out: &GateOutput,
    base: Option<&Baseline>,
    regressions: &[String],
) -> (bool, &'static str) {
    if out.ok() {
        return (true, "exit");
    }
    if out.timed_out || out.interrupted {
        return (false, "exit");
    }
    let Some(b) = base else {
        return (false, "exit");
    };
    if !out.failing.is_empty() {
        return (regressions.is_empty(), "names");
    }
    if b.exit_code == Some(0) {
        return (false, "counts");
    }
    match (out.tests, b.tests) {
        (Some(now), Some(then)) => (now.failed <= then.failed, "counts"),
        (None, Some(_)) => (false, "counts"),
        // Neither gave counts and both exited non-zero: as broken as it was.
        (_, None) => (true, "exit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i32, failing: &[&str], failed: Option<u64>) -> GateOutput {
        GateOutput {
            exit_code: Some(code),
            failing: failing.iter().map(|s| s.to_string()).collect(),
            tests: failed.map(|f| TestCounts {
                passed: 3,
                failed: f,
                ignored: 0,
            }),
            ..GateOutput::default()
        }
    }

    #[test]
    fn names_split_preexisting_from_regressions() {
        let base = Baseline::from(&out(1, &["t.old"], Some(1)));
        let r = judge("x", &out(1, &["t.old"], Some(1)), Some(&base), "");
        assert!(r.passed);
        assert_eq!(r.preexisting, ["t.old"]);
        assert!(r.regressions.is_empty());
        let r = judge("x", &out(1, &["t.new", "t.old"], Some(2)), Some(&base), "");
        assert!(!r.passed);
        assert_eq!(r.regressions, ["t.new"]);
        assert_eq!(r.compared_by.as_deref(), Some("names"));
    }

    #[test]
    fn counts_and_exit_rules() {
        let green = Baseline::from(&out(0, &[], Some(0)));
        assert!(!judge("x", &out(1, &[], None), Some(&green), "").passed);
        let red = Baseline::from(&out(1, &[], Some(2)));
        assert!(judge("x", &out(1, &[], Some(2)), Some(&red), "").passed);
        assert!(!judge("x", &out(1, &[], Some(3)), Some(&red), "").passed);
        assert!(!judge("x", &out(1, &[], None), Some(&red), "").passed);
        let broken = Baseline::from(&out(2, &[], None));
        assert!(judge("x", &out(2, &[], None), Some(&broken), "").passed);
        assert!(!judge("x", &out(1, &["a"], None), None, "").passed);
        let mut hung = out(0, &[], None);
        hung.exit_code = None;
        hung.timed_out = true;
        assert!(!judge("x", &hung, Some(&broken), "").passed);
    }
}
