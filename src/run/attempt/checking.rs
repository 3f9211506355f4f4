//! The verify stage's shared state and endings, used by its driver
//! ([`super::verify`]) and its claude children ([`super::followup`]): what is
//! checked, the state across rounds, the worktree's clean-up after commands ran in
//! it, and the classifications the stage ends with.

use super::admit::Admitted;
use super::Attempt;
use crate::outcome::fault::Classified;
use crate::outcome::{FaultClass, Status};
use crate::supervise::runner::{Control, LiveView};
use crate::verify::gates::Gates;
use std::sync::{Arc, Mutex};

/// What the verify stage checks for one task.
pub(super) struct Plan {
    /// The gates.
    pub gates: Gates,
    /// The fix rounds allowed.
    pub rounds: u32,
    /// The reviewing role.
    pub reviewer: Option<String>,
}

/// The checks' state across rounds.
pub(super) struct Cx<'a> {
    /// The task's definition and role.
    pub a: &'a Admitted,
    /// What is checked.
    pub plan: &'a Plan,
    /// borg's stop and kill requests, for gates and children.
    pub ctl: Control,
    /// The live view of the running child.
    pub live: Arc<Mutex<LiveView>>,
    /// Fix rounds run so far.
    pub round: u32,
    /// Reviews run so far.
    pub reviews: u32,
}

/// Git mode: the worktree back to the task's commit after gates ran in it.
pub(super) async fn scrub(att: &Attempt) {
    let Some(g) = att.git.clone() else {
        return;
    };
    let res = tokio::task::spawn_blocking(move || g.wt.scrub(&g.repo)).await;
    if let Ok(Err(e)) = res {
        tracing::warn!(task = %att.record.task, "cannot clean the worktree after its gates: {e}");
    }
}

/// borg was stopped during the checks: the attempt ends interrupted.
pub(super) fn interrupted(why: &str) -> Classified {
    Classified {
        status: Status::Interrupted,
        fault: Some(FaultClass::Interrupted),
        error: Some(why.into()),
        cause: Some("interrupted".into()),
        resets_at: None,
        limit_kind: None,
    }
}

/// The task ends `verify_failed`: borg's checks still failed when the rounds were
/// spent.
pub(super) fn verify_failed(error: String, cause: &str) -> Classified {
    Classified {
        status: Status::VerifyFailed,
        fault: Some(FaultClass::Verification),
        error: Some(error),
        cause: Some(cause.into()),
        resets_at: None,
        limit_kind: None,
    }
}
