//! The reaper: one long-lived helper per borg (borg re-executed as `borg __reaper`)
//! that starts every claude child and keeps each attempt's whole process tree under
//! borg's control, so that no process of an attempt can outlive borg.
//!
//! Why a separate process: the claude CLI runs each Bash tool command in its own
//! session, so a process-group kill misses it, and SIGTERM/SIGKILL of the CLI leaves
//! those shells running (claude-cli.md §6). The reaper therefore
//! - is a child subreaper, so every orphan of every attempt reparents to it and stays
//!   findable by walking parent links, whatever session it moved to;
//! - is tied to borg: a death signal when borg's spawning thread dies (checked against
//!   its parent, which closes the race with borg dying before the prctl) and the end
//!   of its socket when borg's process is gone; either way it kills every tree at once;
//! - starts each claude with `posix_spawn` in a process group of its own, with a clean
//!   signal state, and the stdio pipes borg made, passed over the socket: claude's data
//!   goes straight to borg, never through the reaper;
//! - forwards the stop ladder's SIGINT and SIGTERM, kills a tree on request, reaps
//!   everything, samples each tree's memory, and reports per attempt: started, spawn
//!   error, exited, signaled, killed N, memory, done.
//!
//! One reaper replaced one `borg __shim` per attempt: an exec of borg per attempt cost
//! more than the child it supervised, and 64 idle shims held 283 MB.

mod client;
pub mod posix;
pub mod proto;
mod server;
pub mod tree;

pub use client::{get, shutdown, AttemptHandle, Reaper};
pub use proto::{Report, SpawnRequest, SUBCOMMAND};
pub use server::main;
