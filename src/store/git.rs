//! The store operations of git mode, a capability every backend implements (see
//! [`super::Store`]): a claimed task whose dependencies' merge conflicts waits for
//! the resolve task borg creates for it.

use super::{ClaimToken, NewTask, StoreError};

/// Store operations of git mode.
pub trait GitStore {
    /// The claimed task cannot start before a new task succeeds (the resolve task of a
    /// merge conflict between its dependencies). In one transaction, fenced by
    /// `token`:
    ///
    /// - `task` is inserted as a new `pending` task with its own dependencies (event
    ///   `created`, data `parent` = the claimed task); an id that exists already is
    ///   `StoreError::Conflict` and nothing changes;
    /// - `task.id` becomes the claimed task's last dependency (after the existing
    ///   ones, so dependencies still come back in list order), so the claimed task is
    ///   claimable only once `task` has succeeded, and is skipped with its dependents
    ///   (like any dependent) when `task` ends in another final state;
    /// - the claimed task goes back to `pending`, its claim cleared (owner, lease),
    ///   its fence left where the claim put it (a stale worker stays fenced off) and
    ///   its attempt counters as they were before the claim: `attempts - 1`,
    ///   `counted_attempts` unchanged (the claim ran no attempt);
    /// - the instance the owner holds for the claimed task is idle again;
    /// - event `waiting` on the claimed task, data `{"on": task.id, "reason": reason}`.
    ///
    /// `StoreError::StaleClaim` (nothing changed) when the claim is not the live one.
    fn wait_for_new_task(
        &self,
        token: &ClaimToken,
        task: &NewTask,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
}
