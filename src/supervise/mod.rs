//! The child process: its command line and environment, the shim that keeps its
//! whole tree under borg's control, the spawner, the runner (streams, watchdogs, the
//! stop ladder), `/proc` helpers, borg's own signal handling and the line splitter.

pub mod claude;
pub mod lines;
pub mod procs;
pub mod runner;
pub mod shim;
pub mod signals;
pub mod spawner;
