//! The `config.toml` layer: the file's shape (`FileConfig` and its `File*` sections,
//! unknown keys refused), and `apply_file`, which checks every value and words its
//! errors with the file, line and `[section] key` (`FileCx`).

use super::load::{dollars, path_or_command, permission_mode, relative_to};
use super::{toml_duration, ConfigError, RoleLimits, Settings};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

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
        crate::input::line_col(self.text, offset)
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
        let d = toml_duration(v.get_ref()).map_err(|m| self.invalid(section, key, v, &m))?;
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
        if !crate::input::tasklist::valid_id(name.get_ref()) {
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
