//! borg: a process supervisor for fleets of headless Claude Code agents.
//!
//! The pipeline, one module per stage (see ../shared/docs/DESIGN.md):
//! `tasklist` → `store` → `scheduler` → `instance` → `prompt` → `runner` (+ `shim`)
//! → `transcript` → `fault` → `report`.

pub mod config;
pub mod fault;
pub mod instance;
pub mod lines;
pub mod outcome;
pub mod render;
pub mod roles;
pub mod snapshot;
pub mod store;
pub mod tasklist;
pub mod testsummary;
pub mod transcript;
