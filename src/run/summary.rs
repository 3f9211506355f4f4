//! What a run is asked to do and how it ended: the run's knobs, the reasons it may
//! stop early, and its summary. Shared by the scheduler (which fills it) and the
//! policy (which decides to stop), so it lives below both.

/// Why a run stopped before its list was done.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The circuit breaker opened (message names the cause and the fix).
    Breaker(String),
    /// The run budget was reached.
    Budget(String),
    /// Parked longer than `max_park`.
    Park(String),
}

impl StopReason {
    /// The message for people.
    pub fn message(&self) -> &str {
        match self {
            StopReason::Breaker(m) | StopReason::Budget(m) | StopReason::Park(m) => m,
        }
    }

    /// A few words for each task it kept from starting (the message itself is shown once).
    pub fn short(&self) -> &'static str {
        match self {
            StopReason::Breaker(_) => "the circuit breaker opened",
            StopReason::Budget(_) => "the run budget was spent",
            StopReason::Park(_) => "parked longer than max_park",
        }
    }
}

/// The end of a run.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Ctrl-C / SIGTERM / SIGHUP stopped it.
    pub interrupted: bool,
    /// It stopped early for this reason.
    pub stop: Option<StopReason>,
    /// Task ids of this run (the list plus the handoffs it created).
    pub scope: Vec<String>,
    /// Money spent by this run's attempts.
    pub cost_usd: f64,
    /// Tasks whose attempts were stopped by the interrupt.
    pub stopped_tasks: Vec<String>,
    /// The merge queue stopped with this error (`--merge`; no pass started after it).
    pub merge_error: Option<String>,
}

/// Knobs of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Task ids in scope; empty = every task of the store.
    pub scope: Vec<String>,
    /// At most this many children at once (0: start none, only wait for other hosts:
    /// `borg run --no-work`).
    pub concurrency: usize,
    /// Stop starting tasks once this much is spent.
    pub budget_usd: Option<f64>,
    /// A worker (`borg worker`): never ends on its own; only a signal stops it.
    pub forever: bool,
    /// Claim only tasks of these roles (None: every role).
    pub roles: Option<Vec<String>>,
    /// Work on this named list only (`borg worker --list`), followed as it grows.
    pub list: Option<String>,
    /// Land the work as tasks succeed (`borg run --merge`): the merge queue's passes.
    pub merge: Option<crate::run::integrate::Merging>,
}

/// Epoch ms as local HH:MM.
pub fn local_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&chrono::Local).format("%H:%M").to_string())
        .unwrap_or_default()
}
