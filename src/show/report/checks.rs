//! What borg checked itself, in a task's report and in the table: the JSON keeps the
//! agent's own claim (`tests`) beside what borg verified (`verified`, `fix_rounds`,
//! each round, `review`); the TESTS cell shows both when they differ (`3/3 claimed,
//! 2/3 verified`), the most useful single fact a user can see.

use super::TaskReport;
use crate::outcome::TestCounts;

/// The TESTS cell: the claim, what was verified, or both when they differ.
pub(super) fn tests_cell(t: &TaskReport) -> String {
    let frac = |c: &TestCounts| format!("{}/{}", c.passed, c.passed + c.failed);
    let claimed = (t.tests != TestCounts::default()).then_some(t.tests);
    let verified = t.checks.verified.as_ref().and_then(|v| v.counts());
    match (claimed, verified) {
        (None, None) => "-".into(),
        (Some(c), None) => frac(&c),
        (None, Some(v)) => format!("{} verified", frac(&v)),
        (Some(c), Some(v)) if frac(&c) == frac(&v) => frac(&c),
        (Some(c), Some(v)) => format!("{} claimed, {} verified", frac(&c), frac(&v)),
    }
}

/// The STATUS cell: the status, and `reviewed` when a reviewer approved the work.
pub(super) fn status_cell(t: &TaskReport) -> String {
    match &t.checks.review {
        Some(r) if r.verdict == "approve" => format!("{} (reviewed)", t.status),
        _ => t.status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::verified::{GateRun, Verified};

    #[test]
    fn claimed_and_verified() {
        let mut t = TaskReport {
            id: "t".into(),
            role: "developer".into(),
            instance: None,
            status: crate::outcome::Status::Succeeded,
            attempts: 1,
            duration_ms: 0,
            exit_code: None,
            session_id: None,
            cost_usd: 0.0,
            tokens: Default::default(),
            num_turns: 0,
            files_changed: vec![],
            tests: TestCounts {
                passed: 3,
                failed: 0,
                ignored: 0,
            },
            handoff_to: None,
            handoff_tasks: vec![],
            error: None,
            fault: None,
            watchdog: None,
            leaked: false,
            peak_rss_mb: None,
            result: None,
            changed_after_success: false,
            decisions: vec![],
            messages: Default::default(),
            lease_violations: vec![],
            created_tasks: vec![],
            git: Default::default(),
            checks: Default::default(),
        };
        assert_eq!(tests_cell(&t), "3/3");
        t.checks.verified = Some(Verified {
            passed: 2,
            failed: 1,
            gates: vec![GateRun {
                tests: Some(TestCounts {
                    passed: 2,
                    failed: 1,
                    ignored: 0,
                }),
                ..GateRun::default()
            }],
            ..Verified::default()
        });
        assert_eq!(tests_cell(&t), "3/3 claimed, 2/3 verified");
        t.tests = TestCounts::default();
        assert_eq!(tests_cell(&t), "2/3 verified");
    }
}
