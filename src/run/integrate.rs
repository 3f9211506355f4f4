//! Integrating as tasks finish (`borg run --merge`, `[merge] auto`): the run loop
//! knows only this small interface, not the merge queue itself (which sits above
//! `run/` and uses it). The command that starts the run hands it an [`Integrator`]
//! whose [`Integrator::pass`] takes one pass of the queue over what is ready; the
//! scheduler runs passes off its own thread, one at a time, after each task that
//! succeeds, and once more when every task is done.

use std::fmt;
use std::sync::Arc;

/// A pass of the queue failed (the store, git, or the target moved under it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the merge queue stopped: {0}")]
pub struct IntegrateError(pub String);

/// One pass of the merge queue.
pub trait Integrator: Send + Sync {
    /// Lands what is ready (blocking: gates run in it; called on the blocking pool,
    /// never on the run loop's thread), and returns the tasks it created (resolve
    /// and fix tasks), already in the store and in the run's list.
    fn pass(&self) -> Result<Vec<String>, IntegrateError>;
}

/// The run's integrator, as [`crate::run::summary::RunOptions`] carries it.
#[derive(Clone)]
pub struct Merging(pub Arc<dyn Integrator>);

impl fmt::Debug for Merging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Merging")
    }
}
