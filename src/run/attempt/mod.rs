//! One attempt of one claimed task, as a sequence of named stages, each a function
//! with a typed input and output, in a file named for it:
//!
//! 1. [`admit`]: the stored definition and its role, or a permanent failure;
//! 2. [`prepare`]: the workspace, the session to resume and the prompt. In template
//!    mode the dependencies' changed files are carried over; in git mode ([`start`])
//!    the worktree is put on the task's branch at its start commit (the base with the
//!    dependencies merged), or, when they conflict, the task waits for a resolve task
//!    ([`wait`]); then [`coordinate`]: the child's MCP server and hooks (`coord`);
//! 3. [`child`]: the claude child under supervision, with its heartbeat (run again at
//!    once in a fresh session when the session it resumes cannot be resumed);
//! 4. [`observe`]: what the child did (transcript + workspace diff, or in git mode
//!    the commit of its work and git's diff, [`seal`]), classified;
//! 5. [`verify`]: borg's own checks of work said to be done: the role's write
//!    scope, the verification gates (against a baseline at the start commit), a
//!    reviewer's verdict, and fix rounds that resume the agent's session with what
//!    failed ([`checking`], [`followup`], [`rounds`]);
//! 6. [`record`]: in git mode the attempt's ref (and the reset of a failed attempt's
//!    worktree), with a shared remote the result pushed there ([`publish`]),
//!    session.md, then what the task does next (done, retry, park,
//!    handoffs) committed to the store in one transaction with the attempt's record.

mod admit;
mod checking;
mod child;
mod coordinate;
mod followup;
mod observe;
mod prepare;
mod publish;
mod record;
mod rounds;
mod seal;
mod start;
mod verify;
mod wait;

use crate::git::Repo;
use crate::input::config::Settings;
use crate::input::roles::RoleSet;
use crate::outcome::fault::{resume_refused, Classified};
use crate::outcome::AttemptRecord;
use crate::store::{Claim, Disposition, Store, TaskRow};
use crate::supervise::runner::{Control, LiveView};
use crate::workspace::instance::{Instance, Workspaces};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use crate::run::spec::StoredSpec;

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
    pub workspaces: Workspaces,
    /// Git mode: the repository every instance is a worktree of.
    pub git: Option<Arc<Repo>>,
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
    /// The task waits for a retry until then, epoch ms (its backoff).
    pub retry_at: Option<i64>,
    /// Git mode: the attempt never ran, the task waits for this new resolve task
    /// (why, in one line).
    pub waits_for: Option<(String, String)>,
    /// Tasks the attempt's agent created (`create_task`), already in the store.
    pub agent_tasks: Vec<String>,
}

/// The attempt every stage works on: what was claimed, where it runs, and the record
/// the stages fill in.
pub(crate) struct Attempt {
    shared: Arc<Shared>,
    claim: Claim,
    instance: Instance,
    record: AttemptRecord,
    /// Git mode: the worktree, branch and start commit, once prepared.
    git: Option<start::GitAttempt>,
    /// The claim is known lost (the heartbeat said so): nothing is pushed.
    claim_lost: bool,
}

/// Runs one claimed task on `instance`, stage after stage.
pub async fn run(
    shared: Arc<Shared>,
    claim: Claim,
    instance: Instance,
    ctl: Control,
    live: Arc<Mutex<LiveView>>,
    decide: impl FnOnce(&Classified, &TaskRow) -> Disposition + Send + 'static,
) -> AttemptDone {
    failpoint_panic(&claim.task.id);
    let mut att = Attempt::new(shared, claim, instance);
    let admitted = match admit::check(&att) {
        Ok(a) => a,
        Err(refused) => {
            return record::commit(att, refused.classified, refused.spec.as_deref(), decide).await
        }
    };
    let mut prepared = match prepare::workspace(&mut att, &admitted).await {
        Ok(p) => p,
        Err(prepare::Unready::Waits { task, why }) => {
            return wait::for_new_task(att, task, why).await
        }
        Err(prepare::Unready::Failed(c)) => {
            return record::commit(att, c, Some(&admitted.spec), decide).await
        }
    };
    let prompt = prepare::prompt(&att, &admitted, &prepared);
    let coord = match coordinate::prepare(&att, &admitted) {
        Ok(c) => c,
        Err(refused) => return record::commit(att, refused, Some(&admitted.spec), decide).await,
    };
    let (vctl, vlive) = (ctl.clone(), live.clone());
    let (c, l, k) = (ctl.clone(), live.clone(), coord.clone());
    let mut ran = child::run(&mut att, &admitted, &prepared, prompt, k, c, l).await;
    // Whichever session it resumed (a continued one, or one parked on a usage limit
    // and taken up by another instance whose config folder does not hold it), a
    // refusal runs the task again at once in a fresh session.
    if prepared.resume.is_some() && ran.lost.is_none() && resume_refused(&ran.out.summary) {
        prepared = prepare::fresh_after_refusal(&mut att, prepared);
        let prompt = prepare::prompt(&att, &admitted, &prepared);
        ran = child::run(&mut att, &admitted, &prepared, prompt, coord, ctl, live).await;
    }
    let observed = observe::outcome(&mut att, ran).await;
    att.claim_lost = observed.lost_claim.is_some();
    let checked = verify::check(&mut att, &admitted, observed.classified, vctl, vlive).await;
    let mut done = record::commit(att, checked, Some(&admitted.spec), decide).await;
    if done.lost_claim.is_none() {
        done.lost_claim = observed.lost_claim;
    }
    done
}

impl Attempt {
    fn new(shared: Arc<Shared>, claim: Claim, instance: Instance) -> Attempt {
        let record = AttemptRecord {
            task: claim.task.id.clone(),
            attempt: claim.attempt as u32,
            instance: instance.id.clone(),
            role: claim.task.role.clone(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ..Default::default()
        };
        Attempt {
            shared,
            claim,
            instance,
            record,
            git: None,
            claim_lost: false,
        }
    }
}

/// A failure injected on purpose: `BORG_FAILPOINT=attempt-panic:TASK` makes the
/// attempt task of TASK panic, which is how the tests check that the run loop survives
/// a panicking attempt (it frees the attempt's instance and role slot and fails the
/// task). Never set in normal use.
fn failpoint_panic(task: &str) {
    if std::env::var("BORG_FAILPOINT")
        .ok()
        .and_then(|v| v.strip_prefix("attempt-panic:").map(|t| t == task))
        == Some(true)
    {
        panic!("failpoint attempt-panic:{task}");
    }
}

/// Now, epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
