//! Resolving settings layer by layer: defaults, then `config.toml`, then `.env`, then
//! the process environment, then command-line flags; each layer overrides the ones
//! before it, and every value is checked where it is read so an error can say where
//! the bad value came from.

use super::{
    parse_duration, ConfigError, Overrides, RoleLimits, Settings, CONFIG_FILE, PERMISSION_MODES,
    STORE_FILE,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

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

/// A flag or variable path: relative ones are taken from `cwd`.
fn relative_to(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() || base.as_os_str().is_empty() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
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
fn read_dotenv(path: &Path) -> Result<BTreeMap<String, (String, usize)>, ConfigError> {
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
    let first = |names: &[&'static str]| {
        names
            .iter()
            .find_map(|n| nonempty(vars, n).map(|v| (*n, v.trim())))
    };
    let invalid = |name: &str, key: &str, value: &str, message: &str| ConfigError::Invalid {
        origin: origin(name),
        key: key.to_string(),
        value: value.to_string(),
        message: message.to_string(),
    };
    let path = |v: &str| relative_to(cwd, Path::new(v));
    if let Some((_, v)) = first(&["BORG_WORKSPACES", "WORKSPACES_DIR"]) {
        s.paths.workspaces = path(v);
    }
    if let Some((_, v)) = first(&["BORG_ROLES"]) {
        s.paths.roles_dir = path(v);
    }
    let mut store_set = false;
    if let Some((_, v)) = first(&["BORG_STORE"]) {
        s.paths.store = path(v);
        store_set = true;
    }
    if let Some((_, v)) = first(&["BORG_TEMPLATE"]) {
        s.paths.template = Some(path(v));
    }
    if let Some((_, v)) = first(&["BORG_CLAUDE", "CLAUDE_CODE_PATH"]) {
        s.claude.path = Some(path_or_command(cwd, v));
    }
    if let Some((n, v)) = first(&["BORG_CONCURRENCY"]) {
        s.run.concurrency = check_concurrency(
            v.parse()
                .map_err(|_| invalid(n, "run.concurrency", v, "expected a whole number >= 1"))?,
        )
        .map_err(|m| invalid(n, "run.concurrency", v, m))?;
    }
    if let Some((n, v)) = first(&["BORG_TIMEOUT", "TASK_TIMEOUT"]) {
        let d = if n == "TASK_TIMEOUT" {
            // The original Borg Coordinator counted this one in milliseconds.
            v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                invalid(
                    n,
                    "run.timeout",
                    v,
                    "expected milliseconds, e.g. 1800000 for 30 minutes (or use BORG_TIMEOUT=30m)",
                )
            })?
        } else {
            parse_duration(v).map_err(|m| invalid(n, "run.timeout", v, &m))?
        };
        s.run.timeout = positive(d).map_err(|m| invalid(n, "run.timeout", v, m))?;
    }
    if let Some((n, v)) = first(&["BORG_IDLE_TIMEOUT"]) {
        let d = parse_duration(v).map_err(|m| invalid(n, "run.idle_timeout", v, &m))?;
        s.run.idle_timeout = positive(d).map_err(|m| invalid(n, "run.idle_timeout", v, m))?;
    }
    if let Some((n, v)) = first(&["BORG_RETRIES"]) {
        s.run.retries = v
            .parse()
            .map_err(|_| invalid(n, "run.retries", v, "expected a whole number >= 0"))?;
    }
    if let Some((n, v)) = first(&["BORG_BUDGET_USD"]) {
        s.run.budget_usd =
            Some(dollars(v.parse().ok()).map_err(|m| invalid(n, "run.budget_usd", v, m))?);
    }
    if let Some((n, v)) = first(&["BORG_PERMISSION_MODE"]) {
        s.claude.permission_mode =
            permission_mode(v).map_err(|m| invalid(n, "claude.permission_mode", v, &m))?;
    }
    if let Some((_, v)) = first(&["BORG_MODEL"]) {
        s.claude.model = Some(v.to_string());
    }
    if let Some((n, v)) = first(&["BORG_MAX_TURNS"]) {
        let t: u32 = v
            .parse()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| invalid(n, "claude.max_turns", v, "expected a whole number >= 1"))?;
        s.claude.max_turns = Some(t);
    }
    if let Some((n, v)) = first(&["BORG_SANDBOX", "IS_SANDBOX"]) {
        s.claude.sandbox = parse_bool(v).ok_or_else(|| {
            invalid(
                n,
                "claude.sandbox",
                v,
                "expected 1 or 0 (true/false, yes/no, on/off)",
            )
        })?;
    }
    if let Some((n, v)) = first(&["CLAUDE_CODE_MAX_RETRIES"]) {
        s.claude.max_retries = v
            .parse()
            .map_err(|_| invalid(n, "claude.max_retries", v, "expected a whole number >= 0"))?;
    }
    if let Some((n, v)) = first(&["API_TIMEOUT_MS"]) {
        s.claude.api_timeout_ms =
            v.parse().ok().filter(|t| *t > 0).ok_or_else(|| {
                invalid(n, "claude.api_timeout_ms", v, "expected milliseconds >= 1")
            })?;
    }
    Ok(store_set)
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
            s.paths.store = relative_to(cwd, p);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// A claude binary given as a bare name (`claude`) is a command looked up in PATH,
/// not a file in the current directory, so only names with a `/` are anchored.
fn path_or_command(cwd: &Path, v: &str) -> PathBuf {
    if v.contains('/') {
        relative_to(cwd, Path::new(v))
    } else {
        PathBuf::from(v)
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

fn dollars(x: Option<f64>) -> Result<f64, &'static str> {
    match x {
        Some(x) if x.is_finite() && x > 0.0 => Ok(x),
        Some(x) if x.is_finite() => Err("must be more than 0 US dollars"),
        _ => Err("expected a number of US dollars, e.g. 5 or 2.50"),
    }
}

fn permission_mode(v: &str) -> Result<String, String> {
    if PERMISSION_MODES.contains(&v) {
        Ok(v.to_string())
    } else {
        Err(format!(
            "unknown permission mode; use one of {}",
            PERMISSION_MODES.join(", ")
        ))
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------
// config.toml

/// A value whose meaning is checked after parsing, kept with its position.
type Val = Spanned<toml::Value>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    paths: FilePaths,
    #[serde(default)]
    workspace: FileWorkspace,
    #[serde(default)]
    claude: FileClaude,
    #[serde(default)]
    run: FileRun,
    #[serde(default)]
    roles: BTreeMap<Spanned<String>, FileRole>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FilePaths {
    workspaces: Option<PathBuf>,
    roles: Option<PathBuf>,
    store: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileWorkspace {
    template: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileClaude {
    path: Option<String>,
    permission_mode: Option<Val>,
    model: Option<Val>,
    max_turns: Option<Val>,
    max_budget_usd: Option<Val>,
    allowed_tools: Option<Vec<String>>,
    disallowed_tools: Option<Vec<String>>,
    extra_args: Option<Vec<String>>,
    sandbox: Option<bool>,
    max_retries: Option<Val>,
    api_timeout_ms: Option<Val>,
    env: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRun {
    concurrency: Option<Val>,
    timeout: Option<Val>,
    idle_timeout: Option<Val>,
    result_grace: Option<Val>,
    interrupt_grace: Option<Val>,
    term_grace: Option<Val>,
    leak_timeout: Option<Val>,
    retries: Option<Val>,
    backoff_base: Option<Val>,
    backoff_cap: Option<Val>,
    breaker_threshold: Option<Val>,
    max_park: Option<Val>,
    budget_usd: Option<Val>,
    lease: Option<Val>,
    max_line_bytes: Option<Val>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRole {
    max_instances: Option<Val>,
}

/// Checks values of one config file and words their errors with the file, line and
/// `[section] key`.
struct FileCx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl FileCx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn invalid(&self, section: &str, key: &str, v: &Val, message: &str) -> ConfigError {
        let (line, _) = self.line_col(v.span().start);
        let value = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        ConfigError::Invalid {
            origin: format!("{}:{line} [{section}] {key}", self.path.display()),
            key: format!("{section}.{key}"),
            value,
            message: message.to_string(),
        }
    }

    fn duration(
        &self,
        section: &str,
        key: &str,
        v: &Val,
        allow_zero: bool,
    ) -> Result<Duration, ConfigError> {
        let d = match v.get_ref() {
            toml::Value::String(s) => {
                parse_duration(s).map_err(|m| self.invalid(section, key, v, &m))?
            }
            toml::Value::Integer(n) if *n >= 0 => Duration::from_secs(*n as u64),
            _ => {
                return Err(self.invalid(
                    section,
                    key,
                    v,
                    "expected a duration such as \"30s\", \"15m\" or \"1h\"",
                ))
            }
        };
        if d.is_zero() && !allow_zero {
            return Err(self.invalid(section, key, v, "must be longer than 0"));
        }
        Ok(d)
    }

    fn uint(&self, section: &str, key: &str, v: &Val, min: u64) -> Result<u64, ConfigError> {
        v.get_ref()
            .as_integer()
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n >= min)
            .ok_or_else(|| {
                self.invalid(
                    section,
                    key,
                    v,
                    &format!("expected a whole number >= {min}"),
                )
            })
    }

    fn u32(&self, section: &str, key: &str, v: &Val, min: u64) -> Result<u32, ConfigError> {
        let n = self.uint(section, key, v, min)?;
        u32::try_from(n).map_err(|_| self.invalid(section, key, v, "too large"))
    }

    fn usize(&self, section: &str, key: &str, v: &Val, min: u64) -> Result<usize, ConfigError> {
        let n = self.uint(section, key, v, min)?;
        usize::try_from(n).map_err(|_| self.invalid(section, key, v, "too large"))
    }

    fn dollars(&self, section: &str, key: &str, v: &Val) -> Result<f64, ConfigError> {
        let x = match v.get_ref() {
            toml::Value::Float(x) => Some(*x),
            toml::Value::Integer(n) => Some(*n as f64),
            _ => None,
        };
        dollars(x).map_err(|m| self.invalid(section, key, v, m))
    }

    fn string(&self, section: &str, key: &str, v: &Val) -> Result<String, ConfigError> {
        v.get_ref()
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .ok_or_else(|| self.invalid(section, key, v, "expected a non-empty string"))
    }
}

/// Applies one config file's text to `s`. Returns whether it set `[paths] store`.
pub(super) fn apply_file(s: &mut Settings, path: &Path, text: &str) -> Result<bool, ConfigError> {
    let cx = FileCx { path, text };
    let file: FileConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |sp| cx.line_col(sp.start));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    })?;
    // Relative paths in a config file mean "next to the config file", so the same
    // file works whichever directory borg is started from.
    let base = path.parent().unwrap_or(Path::new(""));
    let rel = |p: &Path| relative_to(base, p);

    let FilePaths {
        workspaces,
        roles,
        store,
    } = &file.paths;
    if let Some(p) = workspaces {
        s.paths.workspaces = rel(p);
    }
    if let Some(p) = roles {
        s.paths.roles_dir = rel(p);
    }
    if let Some(p) = store {
        s.paths.store = rel(p);
    }
    if let Some(p) = &file.workspace.template {
        s.paths.template = Some(rel(p));
    }

    let c = &file.claude;
    let cl = "claude";
    if let Some(p) = &c.path {
        s.claude.path = Some(path_or_command(base, p));
    }
    if let Some(v) = &c.permission_mode {
        let m = cx.string(cl, "permission_mode", v)?;
        s.claude.permission_mode =
            permission_mode(&m).map_err(|e| cx.invalid(cl, "permission_mode", v, &e))?;
    }
    if let Some(v) = &c.model {
        s.claude.model = Some(cx.string(cl, "model", v)?);
    }
    if let Some(v) = &c.max_turns {
        s.claude.max_turns = Some(cx.u32(cl, "max_turns", v, 1)?);
    }
    if let Some(v) = &c.max_budget_usd {
        s.claude.max_budget_usd = Some(cx.dollars(cl, "max_budget_usd", v)?);
    }
    if let Some(v) = &c.allowed_tools {
        s.claude.allowed_tools = v.clone();
    }
    if let Some(v) = &c.disallowed_tools {
        s.claude.disallowed_tools = v.clone();
    }
    if let Some(v) = &c.extra_args {
        s.claude.extra_args = v.clone();
    }
    if let Some(v) = c.sandbox {
        s.claude.sandbox = v;
    }
    if let Some(v) = &c.max_retries {
        s.claude.max_retries = cx.u32(cl, "max_retries", v, 0)?;
    }
    if let Some(v) = &c.api_timeout_ms {
        s.claude.api_timeout_ms = cx.uint(cl, "api_timeout_ms", v, 1)?;
    }
    if let Some(env) = &c.env {
        s.claude
            .env
            .extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    let r = &file.run;
    let rn = "run";
    let dur = |v: &Option<Val>,
               key: &str,
               allow_zero: bool,
               slot: &mut Duration|
     -> Result<(), ConfigError> {
        if let Some(v) = v {
            *slot = cx.duration(rn, key, v, allow_zero)?;
        }
        Ok(())
    };
    dur(&r.timeout, "timeout", false, &mut s.run.timeout)?;
    dur(
        &r.idle_timeout,
        "idle_timeout",
        false,
        &mut s.run.idle_timeout,
    )?;
    dur(
        &r.result_grace,
        "result_grace",
        true,
        &mut s.run.result_grace,
    )?;
    dur(
        &r.interrupt_grace,
        "interrupt_grace",
        true,
        &mut s.run.interrupt_grace,
    )?;
    dur(&r.term_grace, "term_grace", true, &mut s.run.term_grace)?;
    dur(
        &r.leak_timeout,
        "leak_timeout",
        true,
        &mut s.run.leak_timeout,
    )?;
    dur(
        &r.backoff_base,
        "backoff_base",
        true,
        &mut s.run.backoff_base,
    )?;
    dur(&r.backoff_cap, "backoff_cap", true, &mut s.run.backoff_cap)?;
    dur(&r.max_park, "max_park", true, &mut s.run.max_park)?;
    dur(&r.lease, "lease", false, &mut s.run.lease)?;
    if let Some(v) = &r.concurrency {
        s.run.concurrency = cx.usize(rn, "concurrency", v, 1)?;
    }
    if let Some(v) = &r.retries {
        s.run.retries = cx.u32(rn, "retries", v, 0)?;
    }
    if let Some(v) = &r.breaker_threshold {
        s.run.breaker_threshold = cx.u32(rn, "breaker_threshold", v, 1)?;
    }
    if let Some(v) = &r.budget_usd {
        s.run.budget_usd = Some(cx.dollars(rn, "budget_usd", v)?);
    }
    if let Some(v) = &r.max_line_bytes {
        s.run.max_line_bytes = cx.usize(rn, "max_line_bytes", v, 1024)?;
    }

    for (name, role) in &file.roles {
        if !crate::tasklist::valid_id(name.get_ref()) {
            let (line, _) = cx.line_col(name.span().start);
            return Err(ConfigError::Invalid {
                origin: format!("{}:{line} [roles]", path.display()),
                key: "roles".into(),
                value: name.get_ref().clone(),
                message: "not a valid role name (1 to 64 of A-Z a-z 0-9 . _ -)".into(),
            });
        }
        let section = format!("roles.{}", name.get_ref());
        let max_instances = match &role.max_instances {
            Some(v) => Some(cx.usize(&section, "max_instances", v, 1)?),
            None => None,
        };
        s.roles
            .insert(name.get_ref().clone(), RoleLimits { max_instances });
    }
    Ok(store.is_some())
}
