//! The claude children of the verify stage ([`super::verify`]):
//!
//! - [`fix_round`]: the task's own session resumed (`--resume`) in its worktree with
//!   what borg found; its work committed like the attempt's (a commit of its own on
//!   the task's branch), its cost, tokens and turns added to the attempt's, and the
//!   round listed in the record;
//! - [`review`]: a session of the reviewer role on the task's branch, given the
//!   task's prompt, the agent's result and the diff, answering with a verdict through
//!   `--json-schema`.
//!
//! A child that does not succeed ends the attempt the way it ended (interrupted,
//! transient, ...), as the attempt's own child would have.

use super::checking::{scrub, verify_failed, Cx};
use super::coordinate;
use super::rounds::{self, FollowUp, FollowedUp};
use super::Attempt;
use crate::outcome::fault::{self, Classified, EndFacts};
use crate::outcome::verified::{Comment, FixRound, GateRun};
use crate::outcome::{FileChange, FileDiff, Status};
use crate::verify::review::{self as rv, DIFF_BYTES, SCHEMA};
use crate::workspace::snapshot::merge_tool_files;

/// What a review said.
pub(super) enum Review {
    /// The work may go on.
    Approved,
    /// Changes requested, with these comments.
    Changes(Vec<Comment>),
}

/// One fix round; Err ends the attempt.
pub(super) async fn fix_round(
    att: &mut Attempt,
    cx: &Cx<'_>,
    prompt: String,
    gate: Option<&GateRun>,
) -> Result<(), Classified> {
    let Some(session) = att.record.session_id.clone() else {
        return Err(verify_failed(
            "the agent's session is unknown (no init line), so no fix round can resume it".into(),
            "gate",
        ));
    };
    let coord = coordinate::prepare(att, cx.a).ok().flatten();
    let f = FollowUp {
        role: &cx.a.role,
        task: cx.a.spec.task.clone(),
        resume: Some(session.clone()),
        prompt,
        name: format!("fix{}", cx.round),
        extra: Vec::new(),
        coord,
    };
    let done = rounds::run(att, f, cx.ctl.clone(), cx.live.clone()).await;
    let mut c = classify(&done);
    account(att, &done);
    let sm = &done.out.summary;
    let r = &mut att.record;
    if let Some(text) = sm.result.as_ref().and_then(|x| x.result.clone()) {
        r.result_text = Some(text);
    }
    if sm.tests.is_some() {
        r.tests = sm.tests;
    }
    if att.git.is_some() {
        super::seal::seal(att, &mut c).await;
    } else {
        let mut files: Vec<FileChange> = att
            .record
            .files_changed
            .iter()
            .map(|f| f.file.clone())
            .collect();
        merge_tool_files(&mut files, &sm.tool_files, &att.instance.project_dir());
        att.record.files_changed = files.into_iter().map(FileDiff::from).collect();
    }
    att.record.checks.rounds.push(FixRound {
        round: cx.round,
        why: if gate.is_some() { "gate" } else { "review" }.into(),
        gate: gate.map(|g| g.command.clone()),
        regressions: gate.map(|g| g.regressions.clone()).unwrap_or_default(),
        session_id: sm.session_id.clone().unwrap_or(session),
        status: c.status.as_str().into(),
        error: c.error.clone(),
        cost_usd: sm.cost_usd,
        tokens: sm.tokens,
        num_turns: sm.num_turns,
        duration_ms: done.out.duration.as_millis() as u64,
        commit: att.record.git.commit.clone(),
        stdout_log: done.stdout_log.clone(),
    });
    match c.status {
        Status::Succeeded => Ok(()),
        _ => Err(c),
    }
}

/// One review; Err ends the attempt.
pub(super) async fn review(
    att: &mut Attempt,
    cx: &mut Cx<'_>,
    reviewer: &str,
) -> Result<Review, Classified> {
    let role = match att.shared.roles.get(reviewer) {
        Ok(r) => r.clone(),
        Err(e) => return Err(verify_failed(format!("cannot review: {e}"), "review")),
    };
    cx.reviews += 1;
    let task = &cx.a.spec.task;
    let diff = diff_text(att).await;
    let quoted: String = task.prompt.lines().map(|l| format!("> {l}\n")).collect();
    let prompt = format!(
        "{}\n\n{}",
        role.context.trim_end(),
        rv::prompt(&task.id, &quoted, att.record.result_text.as_deref(), &diff)
    );
    // The reviewer's own model and permissions, the task's limits of time and money.
    let mut spec = task.clone();
    spec.model = None;
    spec.permission_mode = None;
    spec.max_turns = None;
    let f = FollowUp {
        role: &role,
        task: spec,
        resume: None,
        prompt,
        name: format!("review{}", cx.reviews),
        extra: vec![format!("--json-schema={SCHEMA}")],
        coord: None,
    };
    let done = rounds::run(att, f, cx.ctl.clone(), cx.live.clone()).await;
    scrub(att).await;
    account(att, &done);
    let c = classify(&done);
    let sm = &done.out.summary;
    let before = att
        .record
        .checks
        .review
        .as_ref()
        .map_or(0.0, |r| r.cost_usd);
    let mut rec = crate::outcome::verified::Review {
        role: role.name.clone(),
        instance: att.instance.id.clone(),
        session_id: sm.session_id.clone(),
        reviews: cx.reviews,
        cost_usd: before + sm.cost_usd,
        ..Default::default()
    };
    if c.status != Status::Succeeded {
        att.record.checks.review = Some(rec);
        return Err(c);
    }
    let result = sm.result.as_ref();
    let verdict = rv::read(
        result.and_then(|r| r.structured_output.as_ref()),
        result.and_then(|r| r.result.as_deref()),
    );
    let v = match verdict {
        Ok(v) => v,
        Err(e) => {
            att.record.checks.review = Some(rec);
            return Err(verify_failed(
                format!("the {reviewer}'s verdict: {e}"),
                "review",
            ));
        }
    };
    rec.verdict.clone_from(&v.verdict);
    rec.comments.clone_from(&v.comments);
    att.record.checks.review = Some(rec);
    Ok(match v.verdict.as_str() {
        "approve" => Review::Approved,
        _ => Review::Changes(v.comments),
    })
}

/// The diff the reviewer reads: git's patch of the task's branch from its start
/// (git mode), else the list of changed files.
async fn diff_text(att: &Attempt) -> String {
    let files = || {
        att.record
            .files_changed
            .iter()
            .map(|f| format!("{:?} {}\n", f.file.change, f.file.path))
            .collect::<String>()
    };
    let (Some(g), Some(head)) = (att.git.clone(), att.record.git.commit.clone()) else {
        return files();
    };
    let res =
        tokio::task::spawn_blocking(move || g.repo.patch(&g.start, &head, DIFF_BYTES + 1)).await;
    match res {
        Ok(Ok(p)) => p,
        _ => files(),
    }
}

/// How a follow-up child ended.
fn classify(done: &FollowedUp) -> Classified {
    let out = &done.out;
    let facts = EndFacts {
        exit: out.exit,
        stderr_tail: &out.stderr_tail,
        watchdog: out.watchdog,
        interrupted: out.interrupted,
        spawn_error: out.spawn_error.as_deref(),
    };
    fault::classify(&out.summary, &facts)
}

/// Adds a follow-up child's cost, tokens and turns to the attempt's.
fn account(att: &mut Attempt, done: &FollowedUp) {
    let sm = &done.out.summary;
    let r = &mut att.record;
    r.cost_usd += sm.cost_usd;
    r.tokens.add(&sm.tokens);
    r.num_turns += sm.num_turns;
}
