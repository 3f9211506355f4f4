//! The task list: parses a TOML task file (`[defaults]` + `[[task]]`), validates it
//! (ids, duplicates, unknown dependencies, cycles, roles, durations, prompts) and
//! produces `TaskSpec`s. Bad input gives a `TaskListError` a person can act on.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

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

/// Task fields as written, before defaults are applied; `None` means "not given".
#[derive(Default)]
struct Fields {
    prompt: Option<String>,
    role: Option<String>,
    priority: Option<i64>,
    depends_on: Option<Vec<String>>,
    timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    result_grace: Option<Duration>,
    retries: Option<u32>,
    handoff_to: Option<String>,
    instance: Option<String>,
    env: Option<BTreeMap<String, String>>,
    model: Option<String>,
    max_turns: Option<u32>,
    max_budget_usd: Option<f64>,
    permission_mode: Option<String>,
}

/// Reads and type-checks every key of one table; `who` names it in messages
/// (`task "x"` or `[defaults]`).
fn read_fields(cx: &Cx<'_>, table: &RawTable, who: &str) -> Result<Fields, TaskListError> {
    let mut f = Fields::default();
    for (key, value) in table {
        let name = key.get_ref().as_str();
        let at = Some(value.span().start);
        let v = value.get_ref();
        let bad = |what: &str| cx.invalid(at, format!("{who}: {name} = {}: {what}", show(v)));
        match name {
            "id" => {}
            "prompt" => f.prompt = Some(as_str(v).ok_or_else(|| bad("expected a string"))?),
            "role" => f.role = Some(as_str(v).ok_or_else(|| bad("expected a role name"))?),
            "handoff_to" => {
                f.handoff_to = Some(as_str(v).ok_or_else(|| bad("expected a role name"))?)
            }
            "model" => f.model = Some(nonempty(v).ok_or_else(|| bad("expected a model name"))?),
            "instance" => {
                let s = as_str(v).ok_or_else(|| bad("expected an instance id"))?;
                if !valid_id(&s) {
                    return Err(bad(
                        "not a valid instance id (1 to 64 of A-Z a-z 0-9 . _ -)",
                    ));
                }
                f.instance = Some(s);
            }
            "permission_mode" => {
                let s = as_str(v).ok_or_else(|| bad("expected a permission mode"))?;
                if !crate::config::PERMISSION_MODES.contains(&s.as_str()) {
                    return Err(bad(&format!(
                        "unknown permission mode; use one of {}",
                        crate::config::PERMISSION_MODES.join(", ")
                    )));
                }
                f.permission_mode = Some(s);
            }
            "priority" => {
                f.priority = Some(v.as_integer().ok_or_else(|| bad("expected an integer"))?)
            }
            "retries" => {
                f.retries = Some(small_uint(v).ok_or_else(|| bad("expected a whole number >= 0"))?)
            }
            "max_turns" => {
                f.max_turns = Some(
                    small_uint(v)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("expected a whole number >= 1"))?,
                )
            }
            "max_budget_usd" => {
                let x = match v {
                    toml::Value::Float(x) => *x,
                    toml::Value::Integer(n) => *n as f64,
                    _ => return Err(bad("expected a number of US dollars")),
                };
                if !(x.is_finite() && x > 0.0) {
                    return Err(bad("must be a positive number of US dollars"));
                }
                f.max_budget_usd = Some(x);
            }
            "timeout" | "idle_timeout" | "result_grace" => {
                let d = duration(v).map_err(|m| bad(&m))?;
                if d.is_zero() && name != "result_grace" {
                    return Err(bad("must be longer than 0"));
                }
                match name {
                    "timeout" => f.timeout = Some(d),
                    "idle_timeout" => f.idle_timeout = Some(d),
                    _ => f.result_grace = Some(d),
                }
            }
            "depends_on" => {
                let list: Vec<String> = match v {
                    toml::Value::String(s) => vec![s.clone()],
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect::<Option<_>>()
                        .ok_or_else(|| bad("expected a list of task ids"))?,
                    _ => return Err(bad("expected a list of task ids")),
                };
                // A repeated dependency means the same thing as one; keep the first.
                let mut seen = std::collections::HashSet::new();
                f.depends_on = Some(
                    list.into_iter()
                        .filter(|d| seen.insert(d.clone()))
                        .collect(),
                );
            }
            "env" => {
                let t = v
                    .as_table()
                    .ok_or_else(|| bad("expected a table such as { KEY = \"value\" }"))?;
                let mut env = BTreeMap::new();
                for (k, val) in t {
                    if k.is_empty() || k.contains('=') || k.contains('\0') {
                        return Err(bad(&format!(
                            "{k:?} is not a usable environment variable name"
                        )));
                    }
                    let s = match val {
                        toml::Value::String(s) => s.clone(),
                        toml::Value::Integer(n) => n.to_string(),
                        toml::Value::Float(x) => x.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        _ => return Err(bad(&format!("{k}: expected a string"))),
                    };
                    if s.contains('\0') {
                        return Err(bad(&format!("{k}: a value cannot contain a NUL byte")));
                    }
                    env.insert(k.clone(), s);
                }
                f.env = Some(env);
            }
            other => {
                let hint = closest(other, TASK_KEYS)
                    .map(|k| format!("did you mean \"{k}\"? "))
                    .unwrap_or_default();
                return Err(cx.invalid(
                    Some(key.span().start),
                    format!(
                        "{who}: unknown key \"{other}\"; {hint}known keys: {}",
                        TASK_KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(f)
}

/// One `[[task]]` table → a `TaskSpec`, defaults applied and roles checked.
fn build_task(
    cx: &Cx<'_>,
    table: &RawTable,
    start: usize,
    order: usize,
    defaults: &Fields,
    roles: &[String],
) -> Result<TaskSpec, TaskListError> {
    let id_entry = table.iter().find(|(k, _)| k.get_ref() == "id");
    let id = match id_entry {
        None => return Err(cx.invalid(Some(start), format!("task #{} has no id; add id = \"...\"", order + 1))),
        Some((_, v)) => match v.get_ref() {
            toml::Value::String(s) if valid_id(s) => s.clone(),
            other => {
                return Err(cx.invalid(
                    Some(v.span().start),
                    format!(
                        "task #{}: id = {}: not a valid id; use 1 to 64 of A-Z a-z 0-9 . _ - (and not . or ..)",
                        order + 1,
                        show(other)
                    ),
                ))
            }
        },
    };
    let who = format!("task \"{id}\"");
    let f = read_fields(cx, table, &who)?;
    let prompt = match f.prompt.or_else(|| defaults.prompt.clone()) {
        Some(p) if !p.trim().is_empty() => p,
        Some(_) => return Err(cx.invalid(Some(start), format!("{who}: prompt is empty"))),
        None => {
            return Err(cx.invalid(
                Some(start),
                format!("{who} has no prompt; add prompt = \"...\""),
            ))
        }
    };
    let role = f
        .role
        .or_else(|| defaults.role.clone())
        .unwrap_or_else(|| DEFAULT_ROLE.to_string());
    let handoff_to = f.handoff_to.or_else(|| defaults.handoff_to.clone());
    // A dependency inherited from [defaults] does not apply to the task it names, so
    // `[defaults] depends_on = ["setup"]` means "everything after setup".
    let depends_on = match f.depends_on {
        Some(own) => own,
        None => defaults
            .depends_on
            .iter()
            .flatten()
            .filter(|d| **d != id)
            .cloned()
            .collect(),
    };
    for (key, name) in [("role", Some(&role)), ("handoff_to", handoff_to.as_ref())] {
        let Some(name) = name else { continue };
        if !roles.is_empty() && !roles.iter().any(|r| r == name) {
            let at = table
                .iter()
                .find(|(k, _)| k.get_ref() == key)
                .map_or(start, |(_, v)| v.span().start);
            let prefix = if key == "role" {
                String::new()
            } else {
                format!("{key}: ")
            };
            return Err(cx.invalid(
                Some(at),
                format!(
                    "{prefix}unknown role \"{name}\" in task \"{id}\"; roles that exist: {}",
                    roles.join(", ")
                ),
            ));
        }
    }
    // Defaults' env is the base and a task's own keys win, so a shared variable can be
    // set once and still overridden per task.
    let mut env = defaults.env.clone().unwrap_or_default();
    env.extend(f.env.unwrap_or_default());
    Ok(TaskSpec {
        id,
        prompt,
        role,
        priority: f.priority.or(defaults.priority).unwrap_or(0),
        depends_on,
        timeout: f.timeout.or(defaults.timeout),
        idle_timeout: f.idle_timeout.or(defaults.idle_timeout),
        result_grace: f.result_grace.or(defaults.result_grace),
        retries: f.retries.or(defaults.retries),
        handoff_to,
        instance: f.instance.or_else(|| defaults.instance.clone()),
        env,
        model: f.model.or_else(|| defaults.model.clone()),
        max_turns: f.max_turns.or(defaults.max_turns),
        max_budget_usd: f.max_budget_usd.or(defaults.max_budget_usd),
        permission_mode: f
            .permission_mode
            .or_else(|| defaults.permission_mode.clone()),
        order,
    })
}

fn check_unique(cx: &Cx<'_>, tasks: &[TaskSpec], lines: &[usize]) -> Result<(), TaskListError> {
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        if let Some(&j) = first.get(t.id.as_str()) {
            let (first_line, _) = cx.lines.locate(cx.text, lines[j]);
            return Err(cx.invalid(
                Some(lines[i]),
                format!(
                    "duplicate task id \"{}\" (first defined on line {first_line})",
                    t.id
                ),
            ));
        }
        first.insert(&t.id, i);
    }
    Ok(())
}

/// Unknown dependencies, then cycles. The cycle search is an iterative depth-first
/// search (white/grey/black), O(tasks + edges), so a 10 000-long chain cannot overflow
/// the stack.
fn check_dependencies(
    cx: &Cx<'_>,
    tasks: &[TaskSpec],
    lines: &[usize],
) -> Result<(), TaskListError> {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut edges: Vec<Vec<usize>> = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        let mut out = Vec::with_capacity(t.depends_on.len());
        for d in &t.depends_on {
            match index.get(d.as_str()) {
                Some(&j) => out.push(j),
                None => {
                    return Err(cx.invalid(
                        Some(lines[i]),
                        format!(
                            "task \"{}\" depends on \"{d}\", which is not in the list",
                            t.id
                        ),
                    ))
                }
            }
        }
        edges.push(out);
    }
    if let Some(cycle) = find_cycle(&edges) {
        let mut names: Vec<String> = cycle.iter().map(|&i| tasks[i].id.clone()).collect();
        // A cycle through thousands of tasks would bury the message; keep both ends.
        if names.len() > 25 {
            let hidden = names.len() - 20;
            names.splice(10..names.len() - 10, [format!("... ({hidden} more)")]);
        }
        return Err(cx.invalid(
            Some(lines[cycle[0]]),
            format!("dependency cycle: {}", names.join(" -> ")),
        ));
    }
    Ok(())
}

/// The first cycle in file order, as node indices with the first node repeated at the
/// end (`a -> b -> a`), or None.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    const WHITE: u8 = 0;
    const GREY: u8 = 1;
    const BLACK: u8 = 2;
    let mut color = vec![WHITE; edges.len()];
    // (node, index of the next edge to follow); the stack is also the current path.
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..edges.len() {
        if color[root] != WHITE {
            continue;
        }
        color[root] = GREY;
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if next < edges[node].len() {
                top.1 += 1;
                let to = edges[node][next];
                match color[to] {
                    WHITE => {
                        color[to] = GREY;
                        stack.push((to, 0));
                    }
                    GREY => {
                        let from = stack.iter().position(|&(n, _)| n == to).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|&(n, _)| n).collect();
                        cycle.push(to);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                color[node] = BLACK;
                stack.pop();
            }
        }
    }
    None
}

fn as_str(v: &toml::Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn nonempty(v: &toml::Value) -> Option<String> {
    v.as_str()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

fn small_uint(v: &toml::Value) -> Option<u32> {
    v.as_integer().and_then(|n| u32::try_from(n).ok())
}

/// A duration value: a humantime string, or a bare integer meaning seconds.
fn duration(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::String(s) => crate::config::parse_duration(s),
        toml::Value::Integer(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
        _ => Err("expected a duration such as \"30s\", \"15m\" or \"1h\"".into()),
    }
}

/// A value as it would be written in TOML, shortened so one huge prompt does not
/// swamp the message.
fn show(v: &toml::Value) -> String {
    let s = match v {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// The known key closest to a misspelt one (edit distance at most 2), for a hint.
pub(crate) fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
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
