//! Reading one task table: every key type-checked into [`Fields`] (`read_fields`), then
//! a `[[task]]` table turned into a [`TaskSpec`] with `[defaults]` applied and its roles
//! checked (`build_task`), plus the small value readers they share.

use super::validate::closest;
use super::{valid_id, Cx, RawTable, TaskListError, TaskSpec, DEFAULT_ROLE, TASK_KEYS};
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
                f.permission_mode =
                    Some(crate::input::config::permission_mode(&s).map_err(|m| bad(&m))?);
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
                let d = crate::input::config::toml_duration(v).map_err(|m| bad(&m))?;
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
pub(super) fn build_task(
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
