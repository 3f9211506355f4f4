//! Resolving settings layer by layer: defaults, then `config.toml`, then `.env`, then
//! the process environment, then command-line flags; each layer overrides the ones
//! before it, and every value is checked where it is read so an error can say where
//! the bad value came from.

use super::file::apply_file;
use super::rules::{dollars, path_or_command, relative_to, repo_path};
use super::{
    ClaudeSettings, ConfigError, Overrides, PathsSettings, RunSettings, Settings, CONFIG_FILE,
    STORE_FILE,
};
use crate::input::values::{parse_duration, permission_mode};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Resolves every layer; see `Settings::load_in`.
pub(super) fn load(
    over: &Overrides,
    env: &BTreeMap<String, String>,
    cwd: &Path,
) -> Result<Settings, ConfigError> {
    let dotenv = read_dotenv(&cwd.join(".env"))?;
    let mut s = Settings::default();
    // The default folders are relative to the current directory, like flag values.
    s.paths.workspaces = relative_to(cwd, &s.paths.workspaces);
    s.paths.roles_dir = relative_to(cwd, &s.paths.roles_dir);
    let mut store_set = false;

    // Which config file: the flag, else BORG_CONFIG (process env, then .env), else
    // ./config.toml when present. Only the implicit one may be missing.
    let named = over
        .config
        .as_ref()
        .map(|p| relative_to(cwd, p))
        .or_else(|| {
            nonempty(env, "BORG_CONFIG")
                .or_else(|| {
                    dotenv
                        .get("BORG_CONFIG")
                        .map(|(v, _)| v.as_str())
                        .filter(|v| !v.is_empty())
                })
                .map(|v| relative_to(cwd, Path::new(v)))
        });
    let config = match named {
        Some(p) => Some(p),
        None => {
            let p = relative_to(cwd, Path::new(CONFIG_FILE));
            p.is_file().then_some(p)
        }
    };
    if let Some(path) = &config {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        store_set |= apply_file(&mut s, path, &text)?;
        s.paths.config_file = Some(path.clone());
    }

    let dotenv_vars: BTreeMap<String, String> = dotenv
        .iter()
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    let dotenv_origin = |name: &str| match dotenv.get(name) {
        Some((_, line)) => format!(".env:{line} {name}"),
        None => format!(".env {name}"),
    };
    store_set |= apply_env(&mut s, &dotenv_vars, cwd, &dotenv_origin)?;
    store_set |= apply_env(&mut s, env, cwd, &|name: &str| format!("env {name}"))?;
    pass_through_dotenv(&mut s, &dotenv_vars, env);
    store_set |= apply_flags(&mut s, over, cwd)?;

    if !store_set {
        s.paths.store = s.paths.workspaces.join(STORE_FILE);
    }
    Ok(s)
}

/// A variable's value, treating an empty value as unset (`.env` files often carry
/// `NAME=` placeholders).
fn nonempty<'a>(vars: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    vars.get(name)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// `.env` as name → (value, line), read without touching the process environment.
/// A missing file is an empty layer.
pub(super) fn read_dotenv(path: &Path) -> Result<BTreeMap<String, (String, usize)>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut out = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((k, v)) => {
                let line = line_of_assignment(&text, &k);
                out.insert(k, (v, line));
            }
            Err(dotenvy::Error::LineParse(bad, index)) => {
                let line = text
                    .lines()
                    .position(|l| l.contains(bad.trim()))
                    .map_or(1, |i| i + 1);
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    line,
                    column: index + 1,
                    message: format!("cannot parse {:?}; write NAME=value", bad.trim()),
                });
            }
            Err(e) => {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    line: 1,
                    column: 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// The last line assigning `name` (the one that wins), for messages.
fn line_of_assignment(text: &str, name: &str) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
            l.strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .last()
        .map_or(0, |(i, _)| i + 1)
}

/// Variables for the claude child that are only in `.env`: the child's environment
/// is built from the process environment, which `.env` does not touch, so they are
/// carried in `claude.env` instead. The process environment still wins.
fn pass_through_dotenv(
    s: &mut Settings,
    dotenv: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
) {
    for (k, v) in dotenv {
        let for_child = (k.starts_with("ANTHROPIC_") || k.starts_with("CLAUDE_CODE_"))
            && !matches!(k.as_str(), "CLAUDE_CODE_PATH" | "CLAUDE_CODE_MAX_RETRIES");
        if for_child && !v.is_empty() && !env.contains_key(k) {
            s.claude.env.insert(k.clone(), v.clone());
        }
    }
}

/// One environment-like layer (`.env` or the process environment). Returns whether
/// it set the store path. Within a layer the `BORG_*` name beats the original
/// coordinator's name.
fn apply_env(
    s: &mut Settings,
    vars: &BTreeMap<String, String>,
    cwd: &Path,
    origin: &dyn Fn(&str) -> String,
) -> Result<bool, ConfigError> {
    let layer = EnvLayer { vars, cwd, origin };
    let store_set = layer.apply_paths(&mut s.paths);
    layer.apply_run(&mut s.run)?;
    layer.apply_claude(&mut s.claude)?;
    let get = |n: &str| nonempty(vars, n).map(|v| v.trim().to_string());
    let bad =
        |n: &str, key: &str, value: &str, message: &str| layer.invalid(n, key, value, message);
    super::serve::apply_env(&mut s.serve, &mut s.handoff, &get, &bad)?;
    Ok(store_set)
}

/// One environment-like layer being applied: its variables, the folder relative paths
/// are taken from, and how its errors name a variable (`.env:3 NAME`, `env NAME`).
struct EnvLayer<'a> {
    vars: &'a BTreeMap<String, String>,
    cwd: &'a Path,
    origin: &'a dyn Fn(&str) -> String,
}

impl<'a> EnvLayer<'a> {
    /// The first of `names` that is set (and not empty), with its trimmed value.
    fn first(&self, names: &[&'static str]) -> Option<(&'static str, &'a str)> {
        let vars = self.vars;
        names
            .iter()
            .find_map(|n| nonempty(vars, n).map(|v| (*n, v.trim())))
    }

    fn invalid(&self, name: &str, key: &str, value: &str, message: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: (self.origin)(name),
            key: key.to_string(),
            value: value.to_string(),
            message: message.to_string(),
        }
    }

    fn path(&self, v: &str) -> PathBuf {
        relative_to(self.cwd, Path::new(v))
    }

    /// The folders and files; returns whether the store path was set.
    fn apply_paths(&self, p: &mut PathsSettings) -> bool {
        if let Some((_, v)) = self.first(&["BORG_WORKSPACES", "WORKSPACES_DIR"]) {
            p.workspaces = self.path(v);
        }
        if let Some((_, v)) = self.first(&["BORG_ROLES"]) {
            p.roles_dir = self.path(v);
        }
        let store = self.first(&["BORG_STORE"]);
        if let Some((_, v)) = store {
            p.store = crate::store::location::setting(self.cwd, Path::new(v));
        }
        if let Some((_, v)) = self.first(&["BORG_TEMPLATE"]) {
            p.template = Some(self.path(v));
        }
        if let Some((_, v)) = self.first(&["BORG_REPO"]) {
            p.repo = Some(repo_path(self.cwd, Path::new(v)));
        }
        store.is_some()
    }

    /// Limits of the run: concurrency, timeouts, retries, budget.
    fn apply_run(&self, r: &mut RunSettings) -> Result<(), ConfigError> {
        if let Some((n, v)) = self.first(&["BORG_CONCURRENCY"]) {
            r.concurrency = check_concurrency(v.parse().map_err(|_| {
                self.invalid(n, "run.concurrency", v, "expected a whole number >= 1")
            })?)
            .map_err(|m| self.invalid(n, "run.concurrency", v, m))?;
        }
        if let Some((n, v)) = self.first(&["BORG_TIMEOUT", "TASK_TIMEOUT"]) {
            let d = self.timeout(n, v)?;
            r.timeout = positive(d).map_err(|m| self.invalid(n, "run.timeout", v, m))?;
        }
        if let Some((n, v)) = self.first(&["BORG_IDLE_TIMEOUT"]) {
            let d = parse_duration(v).map_err(|m| self.invalid(n, "run.idle_timeout", v, &m))?;
            r.idle_timeout = positive(d).map_err(|m| self.invalid(n, "run.idle_timeout", v, m))?;
        }
        if let Some((n, v)) = self.first(&["BORG_RETRIES"]) {
            r.retries = v
                .parse()
                .map_err(|_| self.invalid(n, "run.retries", v, "expected a whole number >= 0"))?;
        }
        if let Some((n, v)) = self.first(&["BORG_BUDGET_USD"]) {
            r.budget_usd =
                Some(dollars(v.parse().ok()).map_err(|m| self.invalid(n, "run.budget_usd", v, m))?);
        }
        Ok(())
    }

    /// The attempt timeout from variable `n`, in that variable's unit.
    fn timeout(&self, n: &str, v: &str) -> Result<Duration, ConfigError> {
        if n == "TASK_TIMEOUT" {
            // The original Borg Coordinator counted this one in milliseconds.
            v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                self.invalid(
                    n,
                    "run.timeout",
                    v,
                    "expected milliseconds, e.g. 1800000 for 30 minutes (or use BORG_TIMEOUT=30m)",
                )
            })
        } else {
            parse_duration(v).map_err(|m| self.invalid(n, "run.timeout", v, &m))
        }
    }

    /// How the claude child is started.
    fn apply_claude(&self, c: &mut ClaudeSettings) -> Result<(), ConfigError> {
        if let Some((_, v)) = self.first(&["BORG_CLAUDE", "CLAUDE_CODE_PATH"]) {
            c.path = Some(path_or_command(self.cwd, v));
        }
        if let Some((n, v)) = self.first(&["BORG_PERMISSION_MODE"]) {
            c.permission_mode =
                permission_mode(v).map_err(|m| self.invalid(n, "claude.permission_mode", v, &m))?;
        }
        if let Some((_, v)) = self.first(&["BORG_MODEL"]) {
            c.model = Some(v.to_string());
        }
        if let Some((n, v)) = self.first(&["BORG_MAX_TURNS"]) {
            let t: u32 = v.parse().ok().filter(|t| *t > 0).ok_or_else(|| {
                self.invalid(n, "claude.max_turns", v, "expected a whole number >= 1")
            })?;
            c.max_turns = Some(t);
        }
        if let Some((n, v)) = self.first(&["BORG_SANDBOX", "IS_SANDBOX"]) {
            c.sandbox = parse_bool(v).ok_or_else(|| {
                self.invalid(
                    n,
                    "claude.sandbox",
                    v,
                    "expected 1 or 0 (true/false, yes/no, on/off)",
                )
            })?;
        }
        if let Some((n, v)) = self.first(&["CLAUDE_CODE_MAX_RETRIES"]) {
            c.max_retries = v.parse().map_err(|_| {
                self.invalid(n, "claude.max_retries", v, "expected a whole number >= 0")
            })?;
        }
        if let Some((n, v)) = self.first(&["API_TIMEOUT_MS"]) {
            c.api_timeout_ms = v.parse().ok().filter(|t| *t > 0).ok_or_else(|| {
                self.invalid(n, "claude.api_timeout_ms", v, "expected milliseconds >= 1")
            })?;
        }
        Ok(())
    }
}

/// Command-line flags, the top layer. Returns whether `--store` was given.
fn apply_flags(s: &mut Settings, over: &Overrides, cwd: &Path) -> Result<bool, ConfigError> {
    let invalid = |flag: &str, key: &str, value: String, message: &str| ConfigError::Invalid {
        origin: flag.to_string(),
        key: key.to_string(),
        value,
        message: message.to_string(),
    };
    if let Some(p) = &over.workspaces {
        s.paths.workspaces = relative_to(cwd, p);
    }
    if let Some(p) = &over.roles_dir {
        s.paths.roles_dir = relative_to(cwd, p);
    }
    if let Some(p) = &over.template {
        s.paths.template = Some(relative_to(cwd, p));
    }
    if let Some(p) = &over.repo {
        s.paths.repo = Some(repo_path(cwd, p));
    }
    if let Some(p) = &over.claude {
        s.claude.path = Some(path_or_command(cwd, &p.to_string_lossy()));
    }
    if let Some(n) = over.concurrency {
        s.run.concurrency = check_concurrency(n)
            .map_err(|m| invalid("--concurrency", "run.concurrency", n.to_string(), m))?;
    }
    if let Some(d) = over.timeout {
        s.run.timeout = positive(d).map_err(|m| {
            invalid(
                "--timeout",
                "run.timeout",
                humantime::format_duration(d).to_string(),
                m,
            )
        })?;
    }
    if let Some(x) = over.budget_usd {
        s.run.budget_usd = Some(
            dollars(Some(x))
                .map_err(|m| invalid("--budget-usd", "run.budget_usd", x.to_string(), m))?,
        );
    }
    match &over.store {
        Some(p) => {
            s.paths.store = crate::store::location::setting(cwd, p);
            Ok(true)
        }
        None => Ok(false),
    }
}

fn check_concurrency(n: usize) -> Result<usize, &'static str> {
    if n == 0 {
        Err("must be at least 1")
    } else {
        Ok(n)
    }
}

fn positive(d: Duration) -> Result<Duration, &'static str> {
    if d.is_zero() {
        Err("must be longer than 0")
    } else {
        Ok(d)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}
