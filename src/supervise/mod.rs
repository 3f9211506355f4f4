//! The child process: its command line and environment, the shim that keeps its
//! whole tree under borg's control, the spawner, the runner (streams, watchdogs, the
//! stop ladder), `/proc` helpers and borg's own signal handling.

pub mod claude;
pub mod procs;
pub mod runner;
pub mod shim;
pub mod signals;
pub mod spawner;
