//! Stage 4b, verify (between observe and record): borg checks work the agent says is
//! done, when the attempt succeeded.
//!
//! 1. scope: the paths the task changed against its role's `writable` globs; a path
//!    outside ends it `out_of_scope`, naming the paths (the work stays on its
//!    attempt ref);
//! 2. gates: each gate runs in the task's worktree ([`crate::verify::exec`]), one
//!    after the other until one fails; a failing one is judged against its baseline
//!    at the task's start commit ([`crate::verify::baseline`], run only when needed
//!    and cached per commit); the worktree is scrubbed after them;
//! 3. review: with a reviewer, its verdict ([`super::followup::review`]);
//! 4. a failed gate or `changes_requested` starts a fix round (the task's session
//!    resumed, [`super::followup::fix_round`]) and the checks start again from 1;
//!    when the rounds are spent the task ends `verify_failed`.
//!
//! The claim's lease is renewed all along; cost, tokens and turns of the rounds and
//! reviews are added to the attempt's.

use super::admit::Admitted;
use super::checking::{interrupted, scrub, verify_failed, Cx, Plan};
use super::child::Heartbeat;
use super::followup::{self, Review};
use super::Attempt;
use crate::outcome::fault::Classified;
use crate::outcome::verified::{GateRun, Verified};
use crate::outcome::{FaultClass, Status};
use crate::supervise::claude::{self, ChildIdentity};
use crate::supervise::runner::{Control, LiveView};
use crate::verify::baseline::{self, Place};
use crate::verify::exec::{self, GateJob};
use crate::verify::gates;
use crate::verify::judge::judge;
use crate::verify::{fix, scope};
use std::sync::{Arc, Mutex};

/// Checks the attempt's work; returns its final classification.
pub(crate) async fn check(
    att: &mut Attempt,
    a: &Admitted,
    c: Classified,
    ctl: Control,
    live: Arc<Mutex<LiveView>>,
) -> Classified {
    if c.status != Status::Succeeded {
        return c;
    }
    if let Some(bad) = out_of_scope(att, a) {
        return bad;
    }
    let s = &att.shared.settings.verify;
    let task = &a.spec.task;
    let plan = Plan {
        gates: gates::resolve(s, &a.role, task, &att.instance.project_dir()),
        rounds: gates::fix_rounds(s, &a.role, task),
        reviewer: gates::reviewer(s, &a.role, task),
    };
    if let Some(note) = &plan.gates.auto {
        tracing::info!(task = %task.id, "verify = \"auto\": {note}");
    }
    if plan.gates.commands.is_empty() && plan.reviewer.is_none() {
        return c;
    }
    let began = std::time::Instant::now();
    let store = att.shared.store.clone();
    let beat = Heartbeat::start(
        &store,
        &att.claim.token,
        att.shared.settings.run.lease,
        &ctl,
    );
    let mut cx = Cx {
        a,
        plan: &plan,
        ctl,
        live,
        round: 0,
        reviews: 0,
    };
    let end = match cx.rounds(att).await {
        Ok(()) => c,
        Err(end) => end,
    };
    att.record.checks.fix_rounds = Some(cx.round);
    att.record.duration_ms += began.elapsed().as_millis() as u64;
    if let Some(why) = beat.stop().await {
        tracing::warn!(task = %task.id, "claim lost while verifying: {why}");
    }
    end
}

impl Cx<'_> {
    /// Gates, review, fix rounds until the work passes (Ok) or the task ends
    /// otherwise (Err: how).
    async fn rounds(&mut self, att: &mut Attempt) -> Result<(), Classified> {
        let rounds = self.plan.rounds;
        loop {
            if let Some(failed) = self.gates(att).await? {
                if self.round >= rounds {
                    return Err(verify_failed(gate_error(&failed, self.round), "gate"));
                }
                self.round += 1;
                let prompt = fix::after_gate(&failed, self.round, rounds);
                followup::fix_round(att, self, prompt, Some(&failed)).await?;
            } else if let Some(reviewer) = self.plan.reviewer.clone() {
                let comments = match followup::review(att, self, &reviewer).await? {
                    Review::Approved => return Ok(()),
                    Review::Changes(c) => c,
                };
                if self.round >= rounds {
                    let why = format!(
                        "the {reviewer} still requested changes after {} fix round(s)",
                        self.round
                    );
                    return Err(verify_failed(why, "review"));
                }
                self.round += 1;
                let prompt = fix::after_review(&reviewer, &comments, self.round, rounds);
                followup::fix_round(att, self, prompt, None).await?;
            } else {
                return Ok(());
            }
            if let Some(bad) = out_of_scope(att, self.a) {
                return Err(bad);
            }
        }
    }

    /// Runs the gates until one fails: Some(run) for the failing gate, None when all
    /// passed; Err when borg was stopped meanwhile.
    async fn gates(&mut self, att: &mut Attempt) -> Result<Option<GateRun>, Classified> {
        let cmds = self.plan.gates.commands.clone();
        if cmds.is_empty() {
            return Ok(None);
        }
        let template = gate_job(att, self.a, self.round);
        let mut runs = Vec::new();
        let mut stopped = false;
        for (i, cmd) in cmds.iter().enumerate() {
            let job = GateJob {
                command: cmd.clone(),
                label: format!("round {}, gate {}/{}", self.round, i + 1, cmds.len()),
                ..template.clone()
            };
            let out = exec::run(&job, self.ctl.clone()).await;
            stopped = out.interrupted;
            let base = match out.ok() || stopped {
                true => None,
                false => self.baseline(att, &template, cmd).await,
            };
            let run = judge(cmd, &out, base.as_ref(), &job.log.display().to_string());
            let failed = !run.passed;
            runs.push(run);
            if failed {
                break;
            }
        }
        scrub(att).await;
        let failed = runs.iter().find(|r| !r.passed).cloned();
        att.record.checks.verified = Some(sum(runs));
        if stopped {
            return Err(interrupted(
                "borg was stopped while a verification gate ran",
            ));
        }
        Ok(failed)
    }

    /// The baseline of one gate at the task's start commit (git mode, `[verify]
    /// baseline = true`).
    async fn baseline(
        &self,
        att: &Attempt,
        template: &GateJob,
        cmd: &str,
    ) -> Option<crate::verify::judge::Baseline> {
        let g = att.git.as_ref()?;
        if !att.shared.settings.verify.baseline {
            return None;
        }
        let at = Place {
            repo: g.repo.clone(),
            dir: att.instance.path.join("baseline"),
            commit: g.start.clone(),
        };
        let cmds = [cmd.to_string()];
        let mut got = baseline::results(&att.shared.store, &at, template, &cmds, &self.ctl).await;
        got.pop().flatten()
    }
}

/// The gate runs of one round summed: counts, regressions and preexisting failures.
fn sum(gates: Vec<GateRun>) -> Verified {
    let mut v = Verified::default();
    for g in &gates {
        if let Some(t) = g.tests {
            v.passed += t.passed;
            v.failed += t.failed;
            v.ignored += t.ignored;
        }
        v.regressions.extend(g.regressions.iter().cloned());
        v.preexisting.extend(g.preexisting.iter().cloned());
    }
    v.gates = gates;
    v
}

/// A gate run's settings for this attempt (the command and label filled per gate).
fn gate_job(att: &Attempt, a: &Admitted, round: u32) -> GateJob {
    let s = &att.shared.settings;
    let task = &a.spec.task;
    let uid = format!("verify-{round}");
    let identity = ChildIdentity {
        task: &task.id,
        instance: &att.instance.id,
        attempt: att.record.attempt,
        uid: &uid,
        workspace: &att.instance.path,
        claim_token: att.claim.token.fence,
        store: &att.shared.store_path,
    };
    let log = att
        .instance
        .logs_dir()
        .join(format!("{}.{}.verify.log", task.id, att.record.attempt));
    let mut env = claude::environment(&att.shared.parent_env, s, task, &identity);
    // Python's bytecode caches are keyed by the source's mtime in whole seconds and
    // its size: a fix made within the second of the last gate run, of the same size,
    // would be tested as the old code. Gates neither write nor read them (the prefix
    // names a folder nothing is written to), unless the user set these.
    let pycache = att.instance.path.join("gate-pycache").display().to_string();
    for (k, v) in [
        ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
        ("PYTHONPYCACHEPREFIX", pycache),
    ] {
        if !env.iter().any(|(e, _)| e == k) {
            env.push((k.into(), v));
        }
    }
    GateJob {
        command: String::new(),
        cwd: att.instance.project_dir(),
        env,
        log,
        label: String::new(),
        timeout: s.verify.timeout,
        ladder: (s.run.interrupt_grace, s.run.term_grace, s.run.leak_timeout),
        junit: s.verify.junit.clone(),
        max_memory_kb: s.run.max_attempt_memory.map(|b| b.div_ceil(1024)),
    }
}

/// The role's `writable` scope against what the task changed.
fn out_of_scope(att: &mut Attempt, a: &Admitted) -> Option<Classified> {
    let outside = scope::outside(&a.role.meta.writable, &att.record.files_changed);
    if outside.is_empty() {
        return None;
    }
    att.record.checks.out_of_scope = outside.clone();
    Some(Classified {
        status: Status::OutOfScope,
        fault: Some(FaultClass::OutOfScope),
        error: Some(format!(
            "changed files outside the {} role's writable scope ({}): {}; the work is kept on the attempt's ref",
            a.role.name,
            a.role.meta.writable.join(", "),
            outside.join(", ")
        )),
        cause: Some("writable".into()),
        resets_at: None,
        limit_kind: None,
    })
}

/// Why a gate failed the task, in one line.
fn gate_error(g: &GateRun, rounds: u32) -> String {
    let how = if g.timed_out {
        "timed out".to_string()
    } else {
        match g.exit_code {
            Some(c) => format!("exited {c}"),
            None => "was killed".into(),
        }
    };
    let mut e = format!("gate `{}` {how} after {rounds} fix round(s)", g.command);
    if !g.regressions.is_empty() {
        e.push_str(&format!("; regressions: {}", g.regressions.join(", ")));
    }
    e
}
