//! The task list: parses a TOML task file (`[defaults]` + `[[task]]`), validates it
//! (ids, duplicates, unknown dependencies, cycles, roles, durations, prompts) and
//! produces `TaskSpec`s. Bad input gives a `TaskListError` a person can act on.
//!
//! Reading one table's keys lives in `tasklist/fields.rs`; the checks over the whole
//! list (unique ids, dependencies, cycles) in `tasklist/validate.rs`.

mod fields;
mod validate;

pub use super::values::SessionMode;
use crate::input::gates::GateSpec;
use fields::{build_task, read_fields, Fields};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use validate::{check_dependencies, check_unique};

pub use super::values::valid_id;

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
    /// Verification gates (over the role's and `[verify] commands`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<GateSpec>,
    /// The role that reviews the work (over the role's and `[verify] review_role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    /// Fix rounds allowed (over the role's and `[verify] fix_rounds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_rounds: Option<u32>,
    /// Fresh session or the instance's previous one resumed (None: the role's choice,
    /// else fresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionMode>,
    /// Position in the file (0-based), the tie-breaker after priority.
    pub order: usize,
}

impl TaskSpec {
    /// A stable hash of the definition (its list position excluded, so inserting a
    /// task elsewhere in the list does not make the others look changed).
    pub fn definition_hash(&self) -> String {
        let mut t = self.clone();
        t.order = 0;
        let text = serde_json::to_string(&t).unwrap_or_default();
        // FNV-1a: stable across builds, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        format!("{h:016x}")
    }
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
///
/// `roles` are the role names that exist; an empty slice skips the role check (for
/// callers that only need the structure, such as `--dry-run` without a roles folder).
pub fn parse_str(path: &Path, text: &str, roles: &[String]) -> Result<TaskList, TaskListError> {
    let cx = Cx {
        path,
        text,
        lines: LineIndex::new(text),
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| cx.syntax(e))?;
    let defaults = match &raw.defaults {
        Some(table) => {
            if let Some((key, _)) = table.get_ref().iter().find(|(k, _)| k.get_ref() == "id") {
                return Err(cx.invalid(
                    Some(key.span().start),
                    "[defaults] cannot set \"id\": every task needs its own id".into(),
                ));
            }
            read_fields(&cx, table.get_ref(), "[defaults]")?
        }
        None => Fields::default(),
    };
    if raw.task.is_empty() {
        return Err(cx.invalid(
            None,
            "no tasks: the file has no [[task]] table; add one with at least id and prompt".into(),
        ));
    }
    let mut tasks = Vec::with_capacity(raw.task.len());
    let mut task_lines = Vec::with_capacity(raw.task.len());
    for (order, table) in raw.task.iter().enumerate() {
        let start = table.span().start;
        task_lines.push(start);
        tasks.push(build_task(
            &cx,
            table.get_ref(),
            start,
            order,
            &defaults,
            roles,
        )?);
    }
    check_unique(&cx, &tasks, &task_lines)?;
    check_dependencies(&cx, &tasks, &task_lines)?;
    Ok(TaskList {
        path: path.to_path_buf(),
        tasks,
    })
}

/// The keys a task (or `[defaults]`) may have, in the order they are documented.
pub const TASK_KEYS: &[&str] = &[
    "id",
    "prompt",
    "role",
    "priority",
    "depends_on",
    "timeout",
    "idle_timeout",
    "result_grace",
    "retries",
    "handoff_to",
    "instance",
    "env",
    "model",
    "max_turns",
    "max_budget_usd",
    "permission_mode",
    "verify",
    "review",
    "fix_rounds",
    "session",
];

/// The role a task gets when neither it nor `[defaults]` names one.
pub const DEFAULT_ROLE: &str = "developer";

/// A table as the TOML reader saw it, with the byte span of every key and value so
/// that semantic errors can point at a line.
type RawTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// The file's top level; `deny_unknown_fields` turns `[[tasks]]` or `[default]` into an
/// error at the offending header instead of a silently empty list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: Option<Spanned<RawTable>>,
    #[serde(default)]
    task: Vec<Spanned<RawTable>>,
}

/// Byte offset → 1-based line and column.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex { starts }
    }

    /// 1-based (line, column); the column counts characters, not bytes.
    fn locate(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.starts[line];
        let column = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line + 1, column)
    }
}

/// What every check needs to word its error.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
    lines: LineIndex,
}

impl Cx<'_> {
    fn syntax(&self, e: toml::de::Error) -> TaskListError {
        let (line, column) = e
            .span()
            .map_or((1, 1), |s| self.lines.locate(self.text, s.start));
        TaskListError::Syntax {
            path: self.path.to_path_buf(),
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    }

    /// A semantic error; `at` (a byte offset) becomes a `line N: ` prefix.
    fn invalid(&self, at: Option<usize>, message: String) -> TaskListError {
        let message = match at {
            Some(offset) => format!("line {}: {message}", self.lines.locate(self.text, offset).0),
            None => message,
        };
        TaskListError::Invalid {
            path: self.path.to_path_buf(),
            message,
        }
    }
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
