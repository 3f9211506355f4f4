//! Stage 4, observe: what the child did, from its transcript and the workspace diff
//! (template mode: snapshots and tool events; git mode: the commit of its work and
//! git's diff, see [`super::seal`]), written into the attempt's record, and the
//! outcome classified (status, fault class, cause), including what coordination says
//! of it: borg's MCP server not connected at the start fails it
//! `coordination_unavailable`; lease violations are recorded, and with
//! `on_violation = "fail"` end it `out_of_scope`.

use super::child::{snapshot, Ran};
use super::coordinate::unavailable;
use super::Attempt;
use crate::coord::files::SERVER;
use crate::outcome::fault::{self, Classified, EndFacts};
use crate::outcome::transcript::TranscriptSummary;
use crate::outcome::{FaultClass, FileDiff, LeaseViolation, Status};
use crate::store::call;
use crate::workspace::snapshot::merge_tool_files;

/// The classified outcome of the child.
pub(crate) struct Observed {
    /// Status, fault class, cause and error.
    pub classified: Classified,
    /// The heartbeat found the claim lost: why.
    pub lost_claim: Option<String>,
}

/// Fills the record from the child's account and the workspace diff; classifies.
pub(crate) async fn outcome(att: &mut Attempt, ran: Ran) -> Observed {
    let out = &ran.out;
    if let Some(before) = &ran.before {
        let project = att.instance.project_dir();
        let after = snapshot(&project).await;
        let mut files = before.diff(&after);
        merge_tool_files(&mut files, &out.summary.tool_files, &project);
        att.record.files_changed = files.into_iter().map(FileDiff::from).collect();
    }
    let facts = EndFacts {
        exit: out.exit,
        stderr_tail: &out.stderr_tail,
        watchdog: out.watchdog,
        interrupted: out.interrupted,
        spawn_error: out.spawn_error.as_deref(),
    };
    let classified = fault::classify(&out.summary, &facts);
    let mut classified = coordination(att, &out.summary, classified).await;
    let (r, sm) = (&mut att.record, &out.summary);
    r.exit_code = out.exit.and_then(|e| e.code);
    r.signal = out.exit.and_then(|e| e.signal);
    r.watchdog = out.watchdog;
    r.leaked = out.leaked;
    r.session_id.clone_from(&sm.session_id);
    r.cost_usd = sm.cost_usd;
    r.tokens = sm.tokens;
    r.num_turns = sm.num_turns;
    r.tests = sm.tests;
    r.result_text = sm.result.as_ref().and_then(|x| x.result.clone());
    r.duration_ms = out.duration.as_millis() as u64;
    r.oversized_lines = sm.oversized_lines;
    r.stop_latency_ms = out.stop_latency.map(|d| d.as_millis() as u64);
    r.peak_rss_mb = (out.peak_rss_kb > 0).then(|| out.peak_rss_kb.div_ceil(1024));
    super::seal::seal(att, &mut classified).await;
    Observed {
        classified,
        lost_claim: ran.lost,
    }
}

/// The coordination facts of the attempt: the borg server's status in the init line,
/// the decisions, created tasks and lease violations of its agent; and what they make
/// of the outcome (only a finished run is reclassified, not a stopped one).
async fn coordination(att: &mut Attempt, sm: &TranscriptSummary, c: Classified) -> Classified {
    let s = &att.shared.settings.coord;
    if !s.enabled {
        return c;
    }
    let (task, fence) = (att.claim.task.id.clone(), att.claim.token.fence);
    let (violations, decisions, created) = call(&att.shared.store, move |st| {
        (
            st.violations(&task, Some(fence)).unwrap_or_default(),
            st.decisions_of(&task).unwrap_or_default(),
            st.agent_tasks(&task).unwrap_or_default(),
        )
    })
    .await;
    let r = &mut att.record;
    r.decisions = decisions.into_iter().map(|d| d.id).collect();
    r.created_tasks = created;
    r.lease_violations = violations
        .iter()
        .map(|v| LeaseViolation {
            path: v.path.clone(),
            holder_instance: v.holder_instance.clone(),
            holder_task: v.holder_task.clone(),
            lease: v.lease_path.clone(),
            tool: v.tool.clone(),
        })
        .collect();
    let finished = matches!(c.status, Status::Succeeded | Status::Failed);
    // An init line was seen (it names the CLI's version): its server list is the truth.
    if sm.claude_version.is_some() {
        let status = sm
            .mcp_servers
            .iter()
            .find(|m| m.name == SERVER)
            .map_or("missing", |m| m.status.as_str());
        r.coordination = Some(status.to_string());
        if status != "connected" && finished {
            return unavailable(format!(
                "borg's coordination server (`borg mcp`) was {status} when claude started (init line), so the agent could not take leases or message the fleet; run `borg mcp` by hand in the instance's project-files to see why"
            ));
        }
    }
    if !violations.is_empty() && s.on_violation == "fail" && finished {
        let paths: Vec<String> = violations
            .iter()
            .map(|v| format!("{} (held by {})", v.path, v.holder_instance))
            .collect();
        return Classified {
            status: Status::OutOfScope,
            fault: Some(FaultClass::OutOfScope),
            error: Some(format!(
                "changed files other agents held: {}",
                paths.join(", ")
            )),
            cause: Some("lease_violation".into()),
            resets_at: None,
            limit_kind: None,
        };
    }
    c
}
