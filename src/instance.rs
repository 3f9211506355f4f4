//! The instance pool on disk: `workspaces/<id>/` with `session.md` (role context, then
//! a record of every task the instance ran), `project-files/` (the child's working
//! directory, seeded from a template) and `logs/` (raw stdout and stderr per attempt).
//!
//! OWNER: helper D (inputs). Types fixed by the skeleton; fill the bodies.

use crate::outcome::{FileChange, Status};
use crate::roles::Role;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why an instance operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The name is not `[A-Za-z0-9._-]{1,64}` or tries to leave the workspaces folder.
    #[error("invalid instance name {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ - (and not . or ..)")]
    InvalidName(String),
    /// An instance of that id already exists.
    #[error("instance {0:?} already exists")]
    Exists(String),
    /// No instance of that id.
    #[error("no instance {0:?} in {1}")]
    NotFound(String, PathBuf),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One instance (a workspace bound to a role).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The id (folder name).
    pub id: String,
    /// The role name.
    pub role: String,
    /// `workspaces/<id>`.
    pub path: PathBuf,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// One record appended to `session.md` after an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// RFC 3339 time the attempt ended.
    pub time: String,
    /// The task id.
    pub task_id: String,
    /// The attempt number (1-based).
    pub attempt: u32,
    /// The task prompt, verbatim.
    pub prompt: String,
    /// The outcome status.
    pub status: Status,
    /// Files changed.
    pub files_changed: Vec<FileChange>,
    /// The result text or error, abridged.
    pub summary: String,
}

/// The workspaces folder.
#[derive(Debug, Clone)]
pub struct Workspaces {
    /// Its path.
    pub root: PathBuf,
}

impl Workspaces {
    /// The workspaces folder at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Workspaces { root: root.into() }
    }

    /// Creates `<root>/<id>/` with `session.md`, `project-files/` (a copy of
    /// `template` when given) and `logs/`. `name` defaults to `<role>-<8 hex>`.
    pub fn create(
        &self,
        role: &Role,
        name: Option<&str>,
        template: Option<&Path>,
    ) -> Result<Instance, InstanceError> {
        let _ = (role, name, template);
        Err(InstanceError::InvalidName(String::new()))
    }

    /// Every instance, sorted by id.
    pub fn list(&self) -> Result<Vec<Instance>, InstanceError> {
        Ok(Vec::new())
    }

    /// One instance.
    pub fn get(&self, id: &str) -> Result<Instance, InstanceError> {
        Err(InstanceError::NotFound(id.to_string(), self.root.clone()))
    }

    /// Removes an instance folder.
    pub fn remove(&self, id: &str) -> Result<(), InstanceError> {
        Err(InstanceError::NotFound(id.to_string(), self.root.clone()))
    }
}

impl Instance {
    /// `project-files/`: the child's working directory.
    pub fn project_dir(&self) -> PathBuf {
        self.path.join("project-files")
    }

    /// `logs/`.
    pub fn logs_dir(&self) -> PathBuf {
        self.path.join("logs")
    }

    /// `session.md`.
    pub fn session_path(&self) -> PathBuf {
        self.path.join("session.md")
    }

    /// The raw stdout and stderr log files of one attempt.
    pub fn attempt_logs(&self, task_id: &str, attempt: u32) -> (PathBuf, PathBuf) {
        let base = self.logs_dir().join(format!("{task_id}.{attempt}"));
        (
            base.with_extension(format!("{attempt}.stdout.jsonl")),
            base.with_extension(format!("{attempt}.stderr.log")),
        )
    }

    /// Appends one record to `session.md`.
    pub fn append_session(&self, entry: &SessionEntry) -> Result<(), InstanceError> {
        let _ = entry;
        Ok(())
    }

    /// The records appended so far (oldest first), read back from `session.md`.
    pub fn history(&self) -> Result<Vec<SessionEntry>, InstanceError> {
        Ok(Vec::new())
    }
}
