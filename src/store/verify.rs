//! The store operations of verification, a capability every backend implements (see
//! [`super::Store`]): the baseline cache. A gate's result at a commit (exit code, test
//! counts, failing test names) is kept once per `(commit, gate)`, so ten tasks started
//! from one commit run its baseline once, and a resumed run (or another host on a
//! shared store) does not run it again.

use super::StoreError;

/// Store operations of verification.
pub trait VerifyStore {
    /// The baseline kept for gate key `gate` (the command line and how its output is
    /// read) at commit `commit`, as [`VerifyStore::put_baseline`] stored it; None when
    /// there is none.
    fn baseline(&self, commit: &str, gate: &str) -> Result<Option<serde_json::Value>, StoreError>;

    /// Keeps `result` as the baseline of `(commit, gate)` unless one is kept already
    /// (the first one stored wins: two borgs that raced both ran the gate, and both
    /// then judge by the same result). Returns the kept result.
    fn put_baseline(
        &self,
        commit: &str,
        gate: &str,
        result: &serde_json::Value,
        now_ms: i64,
    ) -> Result<serde_json::Value, StoreError>;
}
