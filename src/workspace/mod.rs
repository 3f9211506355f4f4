//! Where a task runs: instances (a folder with session.md, project-files/ and logs/),
//! their session history, and the snapshots that tell which files an attempt changed
//! in template mode.

pub mod instance;
pub mod snapshot;
