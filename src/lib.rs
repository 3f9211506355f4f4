//! borg: a process supervisor for fleets of headless Claude Code agents.
//!
//! The pipeline, one module per stage (see ../shared/docs/DESIGN.md):
//! `tasklist` → `store` → `scheduler` → `instance` → `prompt` → `runner` (+ `shim`)
//! → `transcript` → `fault` → `report`.

pub mod attempt;
pub mod claude;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod fault;
pub mod handoff;
pub mod instance;
pub mod lines;
pub mod outcome;
pub mod plan;
pub mod policy;
pub mod procs;
pub mod progress;
pub mod prompt;
pub mod recovery;
pub mod render;
pub mod report;
pub mod roles;
pub mod runner;
pub mod scheduler;
pub mod shim;
pub mod signals;
pub mod snapshot;
pub mod spawner;
pub mod store;
pub mod tasklist;
pub mod testsummary;
pub mod transcript;
