//! Outcome and fault classification: from the transcript summary, the exit status,
//! stderr and which watchdog fired, decide the attempt's status, its error text and
//! its fault class (transient, permanent, fleet-wide, usage limit).
//!
//! OWNER: helper A (transcript). Interface fixed by the skeleton; fill `classify`.

use crate::outcome::{ExitInfo, FaultClass, Status, Watchdog};
use crate::transcript::TranscriptSummary;
use serde::{Deserialize, Serialize};

/// What borg knows about how an attempt ended, besides the transcript.
#[derive(Debug, Clone, Default)]
pub struct EndFacts<'a> {
    /// Exit of the claude process (None when it never started).
    pub exit: Option<ExitInfo>,
    /// The last few KiB of stderr.
    pub stderr_tail: &'a str,
    /// The watchdog that stopped it, if any.
    pub watchdog: Option<Watchdog>,
    /// borg stopped it because of Ctrl-C / SIGTERM / shutdown.
    pub interrupted: bool,
    /// The spawn failed with this OS error.
    pub spawn_error: Option<&'a str>,
}

/// The classified outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classified {
    /// Attempt status.
    pub status: Status,
    /// Fault class when not succeeded.
    pub fault: Option<FaultClass>,
    /// Human-readable error: result text, else errors[], else stderr, else a description.
    pub error: Option<String>,
    /// A short stable key of the cause ("api_500", "auth_401", "no_result", "idle" ...),
    /// used by the breaker to notice the same cause N times in a row.
    pub cause: Option<String>,
    /// For usage limits: when it resets, epoch seconds.
    pub resets_at: Option<i64>,
    /// For usage limits: the limit kind (five_hour ...).
    pub limit_kind: Option<String>,
}

/// Classifies an attempt.
pub fn classify(summary: &TranscriptSummary, facts: &EndFacts<'_>) -> Classified {
    let _ = (summary, facts);
    Classified {
        status: Status::Failed,
        fault: None,
        error: None,
        cause: None,
        resets_at: None,
        limit_kind: None,
    }
}
