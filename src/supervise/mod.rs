//! The child process: its command line and environment, the reaper that starts it and
//! keeps its whole tree under borg's control, the runner (streams, watchdogs, the stop
//! ladder), `/proc` helpers and borg's own signal handling.

pub mod claude;
pub mod procs;
pub mod reaper;
pub mod runner;
pub mod signals;
