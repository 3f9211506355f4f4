//! Where a task runs: instances (a folder with session.md, project-files/, logs/ and,
//! per instance, claude-config/), their session history, and the snapshots that tell
//! which files an attempt changed in template mode.

pub mod claude_config;
pub mod instance;
pub mod snapshot;
