//! The task list: parses a TOML task file (`[defaults]` + `[[task]]`), validates it
//! (ids, duplicates, unknown dependencies, cycles, roles, durations, prompts) and
//! produces `TaskSpec`s. Bad input gives a `TaskListError` a person can act on.
//!
//! OWNER: helper D (inputs). Types fixed by the skeleton; fill `parse_str`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One task, with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique id, `[A-Za-z0-9._-]`.
    pub id: String,
    /// The prompt, verbatim.
    pub prompt: String,
    /// Role name (default developer).
    pub role: String,
    /// Higher first among ready tasks.
    pub priority: i64,
    /// Ids that must succeed first.
    pub depends_on: Vec<String>,
    /// Wall-clock limit per attempt (None: the run's default).
    #[serde(with = "opt_duration_ms")]
    pub timeout: Option<Duration>,
    /// Stdout-silence limit (None: the run's default).
    #[serde(with = "opt_duration_ms")]
    pub idle_timeout: Option<Duration>,
    /// How long a child may live after its result line (None: the run's default).
    #[serde(with = "opt_duration_ms")]
    pub result_grace: Option<Duration>,
    /// Retries on transient faults (None: the run's default).
    pub retries: Option<u32>,
    /// After success, a follow-up task for this role.
    pub handoff_to: Option<String>,
    /// Pin to one instance id.
    pub instance: Option<String>,
    /// Extra environment for the child.
    pub env: BTreeMap<String, String>,
    /// `--model` for this task.
    pub model: Option<String>,
    /// `--max-turns` for this task.
    pub max_turns: Option<u32>,
    /// `--max-budget-usd` for this task.
    pub max_budget_usd: Option<f64>,
    /// `--permission-mode` for this task.
    pub permission_mode: Option<String>,
    /// Position in the file (0-based), the tie-breaker after priority.
    pub order: usize,
}

/// A parsed, validated task list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    /// The file it came from.
    pub path: PathBuf,
    /// The tasks in file order.
    pub tasks: Vec<TaskSpec>,
}

/// Why a task list was refused. Every variant names the file and the offender.
#[derive(Debug, thiserror::Error)]
pub enum TaskListError {
    /// The file could not be read.
    #[error("cannot read task list {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax or type error.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A semantic problem (duplicate id, unknown dependency, cycle, bad duration ...).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the task and the offending value.
        message: String,
    },
}

/// Reads and validates a task list. `roles` are the role names that exist.
pub fn parse_file(path: &Path, roles: &[String]) -> Result<TaskList, TaskListError> {
    let text = std::fs::read_to_string(path).map_err(|source| TaskListError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(path, &text, roles)
}

/// Parses and validates task-list text (`path` is used in messages only).
pub fn parse_str(path: &Path, text: &str, roles: &[String]) -> Result<TaskList, TaskListError> {
    let _ = (text, roles);
    Ok(TaskList {
        path: path.to_path_buf(),
        tasks: Vec::new(),
    })
}

/// True for a valid task/instance id: `[A-Za-z0-9._-]{1,64}`, not `.` or `..`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Serde helper: optional durations as milliseconds.
mod opt_duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
