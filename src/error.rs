//! Exit codes and the errors that choose them: 2 for anything a person got wrong
//! (usage, config, task list, role, a store that cannot be used), 1 otherwise.

use crate::input::config::ConfigError;
use crate::input::roles::RoleError;
use crate::input::tasklist::TaskListError;
use crate::store::StoreError;
use crate::workspace::instance::InstanceError;

/// Exit code: every task succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code: the run finished but some task did not succeed (or a command failed).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad input (usage, config, task list, role).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: interrupted by a signal.
pub const EXIT_INTERRUPTED: i32 = 130;

/// A mistake in what the user asked for; exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code an error maps to.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.is::<UsageError>()
            || cause.is::<ConfigError>()
            || cause.is::<TaskListError>()
            || cause.is::<RoleError>()
            || cause.is::<InstanceError>()
            || cause.is::<crate::supervise::claude::ClaudeError>()
            || cause.is::<crate::git::RepoError>()
        {
            return EXIT_USAGE;
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return match e {
                StoreError::StaleClaim { .. } | StoreError::Other(_) => EXIT_FAILED,
                _ => EXIT_USAGE,
            };
        }
    }
    EXIT_FAILED
}
