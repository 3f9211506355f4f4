//! Reading one task table: every key type-checked into [`Fields`] (`read_fields`), then
//! a `[[task]]` table turned into a [`TaskSpec`] with `[defaults]` applied and its roles
//! checked (`build_task`), plus the small value readers they share.

use super::validate::closest;
use super::{Cx, RawTable, TaskListError, TaskSpec, DEFAULT_ROLE, TASK_KEYS};
use crate::input::gates::GateSpec;
use crate::input::values::{permission_mode, toml_duration, valid_id, SessionMode};
use std::collections::BTreeMap;
use std::time::Duration;

/// Task fields as written, before defaults are applied; `None` means "not given".
#[derive(Default)]
pub(super) struct Fields {
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
    verify: Option<GateSpec>,
    review: Option<String>,
    fix_rounds: Option<u32>,
    session: Option<SessionMode>,
}

/// Reads and type-checks every key of one table; `who` names it in messages
/// (`task "x"` or `[defaults]`).
pub(super) fn read_fields(
    cx: &Cx<'_>,
    table: &RawTable,
    who: &str,
) -> Result<Fields, TaskListError> {
    let mut f = Fields::default();
    for (key, value) in table {
        let name = key.get_ref().as_str();
        if !TASK_KEYS.contains(&name) {
            return Err(unknown_key(cx, name, key.span().start, who));
        }
        let v = value.get_ref();
        f.set(name, v).map_err(|what| {
            cx.invalid(
                Some(value.span().start),
                format!("{who}: {name} = {}: {what}", show(v)),
            )
        })?;
    }
    Ok(f)
}

/// A key no task has, with the closest known one as a hint.
fn unknown_key(cx: &Cx<'_>, name: &str, at: usize, who: &str) -> TaskListError {
    let hint = closest(name, TASK_KEYS)
        .map(|k| format!("did you mean \"{k}\"? "))
        .unwrap_or_default();
    cx.invalid(
        Some(at),
        format!(
            "{who}: unknown key \"{name}\"; {hint}known keys: {}",
            TASK_KEYS.join(", ")
        ),
    )
}

impl Fields {
    /// Reads one known key's value into its field; the error says what is wrong with
    /// the value (the caller names the table, the key and the value).
    fn set(&mut self, name: &str, v: &toml::Value) -> Result<(), String> {
        match name {
            "prompt" => self.prompt = Some(as_str(v).ok_or("expected a string")?),
            "role" => self.role = Some(as_str(v).ok_or("expected a role name")?),
            "handoff_to" => self.handoff_to = Some(as_str(v).ok_or("expected a role name")?),
            "model" => self.model = Some(nonempty(v).ok_or("expected a model name")?),
            "instance" => self.instance = Some(instance_id(v)?),
            "permission_mode" => {
                let s = as_str(v).ok_or("expected a permission mode")?;
                self.permission_mode = Some(permission_mode(&s)?);
            }
            "session" => {
                let s = as_str(v).ok_or("expected \"fresh\" or \"continue\"")?;
                self.session = Some(SessionMode::parse(&s)?);
            }
            "priority" => self.priority = Some(v.as_integer().ok_or("expected an integer")?),
            "retries" => self.retries = Some(small_uint(v).ok_or("expected a whole number >= 0")?),
            "max_turns" => {
                self.max_turns = Some(
                    small_uint(v)
                        .filter(|n| *n > 0)
                        .ok_or("expected a whole number >= 1")?,
                )
            }
            "max_budget_usd" => self.max_budget_usd = Some(budget(v)?),
            "timeout" => self.timeout = Some(duration(v, false)?),
            "idle_timeout" => self.idle_timeout = Some(duration(v, false)?),
            "result_grace" => self.result_grace = Some(duration(v, true)?),
            "depends_on" => self.depends_on = Some(depends_on(v)?),
            "env" => self.env = Some(env_table(v)?),
            "verify" => self.verify = Some(GateSpec::from_toml(v)?),
            "review" => self.review = Some(as_str(v).ok_or("expected a role name")?),
            "fix_rounds" => {
                self.fix_rounds = Some(small_uint(v).ok_or("expected a whole number >= 0")?)
            }
            // "id" is read by `build_task`, and unknown keys are refused before this.
            _ => {}
        }
        Ok(())
    }
}

fn instance_id(v: &toml::Value) -> Result<String, &'static str> {
    let s = as_str(v).ok_or("expected an instance id")?;
    if valid_id(&s) {
        Ok(s)
    } else {
        Err("not a valid instance id (1 to 64 of A-Z a-z 0-9 . _ -)")
    }
}

fn budget(v: &toml::Value) -> Result<f64, &'static str> {
    let x = match v {
        toml::Value::Float(x) => *x,
        toml::Value::Integer(n) => *n as f64,
        _ => return Err("expected a number of US dollars"),
    };
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err("must be a positive number of US dollars")
    }
}

/// A per-task limit; only `result_grace` may be 0 (stop at once after the result).
fn duration(v: &toml::Value, allow_zero: bool) -> Result<Duration, String> {
    let d = toml_duration(v)?;
    if d.is_zero() && !allow_zero {
        return Err("must be longer than 0".into());
    }
    Ok(d)
}

/// One id or a list of them; a repeated dependency means the same thing as one, so
/// only the first is kept.
fn depends_on(v: &toml::Value) -> Result<Vec<String>, &'static str> {
    let list: Vec<String> = match v {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("expected a list of task ids")?,
        _ => return Err("expected a list of task ids"),
    };
    let mut seen = std::collections::HashSet::new();
    Ok(list
        .into_iter()
        .filter(|d| seen.insert(d.clone()))
        .collect())
}

/// An `env` table: names a child's environment can hold, scalar values as strings.
fn env_table(v: &toml::Value) -> Result<BTreeMap<String, String>, String> {
    let t = v
        .as_table()
        .ok_or("expected a table such as { KEY = \"value\" }")?;
    let mut env = BTreeMap::new();
    for (k, val) in t {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(format!("{k:?} is not a usable environment variable name"));
        }
        let s = match val {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(format!("{k}: expected a string")),
        };
        if s.contains('\0') {
            return Err(format!("{k}: a value cannot contain a NUL byte"));
        }
        env.insert(k.clone(), s);
    }
    Ok(env)
}

/// One `[[task]]` table → a `TaskSpec`, defaults applied and roles checked.
pub(super) fn build_task(
    cx: &Cx<'_>,
    table: &RawTable,
    start: usize,
    order: usize,
    defaults: &Fields,
    roles: &[String],
) -> Result<TaskSpec, TaskListError> {
    let id = task_id(cx, table, start, order)?;
    let who = format!("task \"{id}\"");
    let mut own = read_fields(cx, table, &who)?;
    let prompt = match own.prompt.take().or_else(|| defaults.prompt.clone()) {
        Some(p) if !p.trim().is_empty() => p,
        Some(_) => return Err(cx.invalid(Some(start), format!("{who}: prompt is empty"))),
        None => {
            return Err(cx.invalid(
                Some(start),
                format!("{who} has no prompt; add prompt = \"...\""),
            ))
        }
    };
    let task = with_defaults(id, prompt, own, defaults, order);
    check_roles(cx, table, start, &task, roles)?;
    Ok(task)
}

/// The table's `id`, which must be there and be a valid id.
fn task_id(
    cx: &Cx<'_>,
    table: &RawTable,
    start: usize,
    order: usize,
) -> Result<String, TaskListError> {
    let Some((_, v)) = table.iter().find(|(k, _)| k.get_ref() == "id") else {
        return Err(cx.invalid(
            Some(start),
            format!("task #{} has no id; add id = \"...\"", order + 1),
        ));
    };
    match v.get_ref() {
        toml::Value::String(s) if valid_id(s) => Ok(s.clone()),
        other => Err(cx.invalid(
            Some(v.span().start),
            format!(
                "task #{}: id = {}: not a valid id; use 1 to 64 of A-Z a-z 0-9 . _ - (and not . or ..)",
                order + 1,
                show(other)
            ),
        )),
    }
}

/// A task's own fields over `[defaults]` (its prompt already settled).
fn with_defaults(
    id: String,
    prompt: String,
    own: Fields,
    defaults: &Fields,
    order: usize,
) -> TaskSpec {
    // A dependency inherited from [defaults] does not apply to the task it names, so
    // `[defaults] depends_on = ["setup"]` means "everything after setup".
    let depends_on = match own.depends_on {
        Some(deps) => deps,
        None => defaults
            .depends_on
            .iter()
            .flatten()
            .filter(|d| **d != id)
            .cloned()
            .collect(),
    };
    // Defaults' env is the base and a task's own keys win, so a shared variable can be
    // set once and still overridden per task.
    let mut env = defaults.env.clone().unwrap_or_default();
    env.extend(own.env.unwrap_or_default());
    TaskSpec {
        id,
        prompt,
        role: own
            .role
            .or_else(|| defaults.role.clone())
            .unwrap_or_else(|| DEFAULT_ROLE.to_string()),
        priority: own.priority.or(defaults.priority).unwrap_or(0),
        depends_on,
        timeout: own.timeout.or(defaults.timeout),
        idle_timeout: own.idle_timeout.or(defaults.idle_timeout),
        result_grace: own.result_grace.or(defaults.result_grace),
        retries: own.retries.or(defaults.retries),
        handoff_to: own.handoff_to.or_else(|| defaults.handoff_to.clone()),
        instance: own.instance.or_else(|| defaults.instance.clone()),
        env,
        model: own.model.or_else(|| defaults.model.clone()),
        max_turns: own.max_turns.or(defaults.max_turns),
        max_budget_usd: own.max_budget_usd.or(defaults.max_budget_usd),
        permission_mode: own
            .permission_mode
            .or_else(|| defaults.permission_mode.clone()),
        verify: own.verify.or_else(|| defaults.verify.clone()),
        review: own.review.or_else(|| defaults.review.clone()),
        fix_rounds: own.fix_rounds.or(defaults.fix_rounds),
        session: own.session.or(defaults.session),
        order,
    }
}

/// The task's role and handoff role must exist (when the caller knows the roles); the
/// error points at the key that names the missing role, else at the task.
fn check_roles(
    cx: &Cx<'_>,
    table: &RawTable,
    start: usize,
    task: &TaskSpec,
    roles: &[String],
) -> Result<(), TaskListError> {
    for (key, name) in [
        ("role", Some(&task.role)),
        ("handoff_to", task.handoff_to.as_ref()),
        ("review", task.review.as_ref()),
    ] {
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
                    "{prefix}unknown role \"{name}\" in task \"{}\"; roles that exist: {}",
                    task.id,
                    roles.join(", ")
                ),
            ));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `read_fields` refuses unknown keys before `Fields::set`, whose fallback arm
    /// ignores what it does not read: every documented key but `id` must have its own
    /// arm, or a new key would be silently dropped. No key takes a boolean.
    #[test]
    fn every_task_key_but_id_is_read() {
        for key in TASK_KEYS.iter().filter(|k| **k != "id") {
            let r = Fields::default().set(key, &toml::Value::Boolean(true));
            assert!(r.is_err(), "{key} is not read by Fields::set");
        }
    }
}
