//! Stage 4, observe: what the child did, from its transcript and the workspace diff,
//! written into the attempt's record, and the outcome classified (status, fault
//! class, cause).

use super::child::{snapshot, Ran};
use super::Attempt;
use crate::outcome::fault::{self, Classified, EndFacts};
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
    let project = att.instance.project_dir();
    let after = snapshot(&project).await;
    let mut files = ran.before.diff(&after);
    let out = &ran.out;
    merge_tool_files(&mut files, &out.summary.tool_files, &project);
    let facts = EndFacts {
        exit: out.exit,
        stderr_tail: &out.stderr_tail,
        watchdog: out.watchdog,
        interrupted: out.interrupted,
        spawn_error: out.spawn_error.as_deref(),
    };
    let classified = fault::classify(&out.summary, &facts);
    let (r, sm) = (&mut att.record, &out.summary);
    r.exit_code = out.exit.and_then(|e| e.code);
    r.signal = out.exit.and_then(|e| e.signal);
    r.watchdog = out.watchdog;
    r.leaked = out.leaked;
    r.session_id.clone_from(&sm.session_id);
    r.cost_usd = sm.cost_usd;
    r.tokens = sm.tokens;
    r.num_turns = sm.num_turns;
    r.files_changed = files;
    r.tests = sm.tests;
    r.result_text = sm.result.as_ref().and_then(|x| x.result.clone());
    r.duration_ms = out.duration.as_millis() as u64;
    r.oversized_lines = sm.oversized_lines;
    r.stop_latency_ms = out.stop_latency.map(|d| d.as_millis() as u64);
    r.peak_rss_mb = (out.peak_rss_kb > 0).then(|| out.peak_rss_kb.div_ceil(1024));
    Observed {
        classified,
        lost_claim: ran.lost,
    }
}
