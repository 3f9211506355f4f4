//! Verification: borg checks finished work itself before it trusts "done".
//!
//! - [`gates`]: which gates a task runs (task > role > `[verify] commands`), and
//!   `"auto"`: the project's own test command found from its files;
//! - [`exec`]: one gate run in a worktree under the same supervision as a claude
//!   child (own process group, whole-tree kill at `[verify] timeout`, output capped
//!   and kept in `logs/<task>.<n>.verify.log`), its test counts and failing names;
//! - [`junit`]: counts and failing test names from the JUnit XML files a gate writes;
//! - [`baseline`]: the same gates at the task's start commit, cached per commit in
//!   the store; [`judge`]: a gate's result against it (regressions, preexisting);
//! - [`fix`]: the prompts of fix rounds (the same session resumed with what failed);
//! - [`scope`]: a role's `writable` globs against the paths a task changed;
//! - [`review`]: the reviewer's prompt, the verdict's JSON schema and its reading.
//!
//! The attempt's `verify` stage (`run/attempt/verify.rs`) drives these in order.

pub mod baseline;
pub mod exec;
pub mod fix;
pub mod gates;
pub mod judge;
pub mod junit;
pub mod review;
pub mod scope;
