//! borg: a process supervisor for fleets of headless Claude Code agents.
//!
//! The library is laid out by pipeline stage, one folder a room (see the README's
//! "Layout"): `input` (config, task list, roles) → `store` (the claim and handoff
//! table) → `run` (the scheduler and an attempt's stages) → `workspace` (where a
//! task runs) → `supervise` (the child process) → `outcome` (what the child did) →
//! `show` (what people see). `cli` turns the command line into calls of those.
//! `coord` is the coordination of running agents (leases, decisions, messages, the
//! MCP server and hooks), between the store and the attempt.
//! `git` (git mode: worktrees, branches, merges, commits) sits beside `workspace`,
//! below `run`. `merge` (the merge queue) sits above `run` (it creates resolve and
//! fix tasks) and below `show` (the report's merge section) and `cli`.
//! A type two rooms share lives in the lower one; no room imports a higher one in a
//! circle.

pub mod cli;
pub mod coord;
pub mod error;
pub mod git;
pub mod input;
pub mod merge;
pub mod outcome;
pub mod run;
pub mod serve;
pub mod show;
pub mod store;
pub mod supervise;
pub mod verify;
pub mod workspace;
