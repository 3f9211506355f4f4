//! The `config.toml` layer: the file's shape (`FileConfig` and its `File*` sections,
//! unknown keys refused), and `apply_file`, which checks every value and words its
//! errors with the file, line and `[section] key` (`FileCx`).

mod checks;

use super::rules::{dollars, path_or_command, relative_to, repo_path};
use super::{
    ClaudeSettings, ConfigDirMode, ConfigError, CoordSettings, GitSettings, PathsSettings,
    RoleLimits, RunSettings, Settings,
};
use crate::input::values::{permission_mode, toml_duration, toml_size, valid_id};
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
    store: FileStore,
    #[serde(default)]
    claude: FileClaude,
    #[serde(default)]
    run: FileRun,
    #[serde(default)]
    roles: BTreeMap<Spanned<String>, FileRole>,
    #[serde(default)]
    serve: super::serve::FileServe,
    #[serde(default)]
    handoff: super::serve::FileHandoff,
    #[serde(default)]
    coord: FileCoord,
    #[serde(default)]
    git: FileGit,
    #[serde(default)]
    verify: checks::FileVerify,
    #[serde(default)]
    merge: checks::FileMerge,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileGit {
    branch_prefix: Option<Spanned<String>>,
    resolver_role: Option<Val>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileCoord {
    enabled: Option<bool>,
    strict_mcp: Option<bool>,
    auto_lock: Option<bool>,
    on_violation: Option<Val>,
    max_agent_tasks: Option<Val>,
    lease_ttl: Option<Val>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FilePaths {
    workspaces: Option<PathBuf>,
    roles: Option<PathBuf>,
    store: Option<PathBuf>,
}

/// `[store] url`: where the store is (a path, or a `postgres://` URL shared by hosts);
/// the same setting as `[paths] store`, which it overrides.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileStore {
    url: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileWorkspace {
    template: Option<PathBuf>,
    repo: Option<PathBuf>,
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
    config_dir: Option<Val>,
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
    min_available_memory: Option<Val>,
    max_attempt_memory: Option<Val>,
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
    /// The file's folder: relative paths in a config file mean "next to the config
    /// file", so the same file works whichever directory borg is started from.
    base: &'a Path,
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

    fn size(&self, section: &str, key: &str, v: &Val) -> Result<u64, ConfigError> {
        toml_size(v.get_ref()).map_err(|m| self.invalid(section, key, v, &m))
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

impl super::serve::Check for FileCx<'_> {
    fn string(&self, section: &str, key: &str, v: &Val) -> Result<String, ConfigError> {
        FileCx::string(self, section, key, v)
    }
    fn uint(&self, section: &str, key: &str, v: &Val, min: u64) -> Result<u64, ConfigError> {
        FileCx::uint(self, section, key, v, min)
    }
    fn positive(&self, section: &str, key: &str, v: &Val) -> Result<Duration, ConfigError> {
        self.duration(section, key, v, false)
    }
    fn bad(&self, section: &str, key: &str, v: &Val, m: &str) -> ConfigError {
        self.invalid(section, key, v, m)
    }
}

/// Applies one config file's text to `s`. Returns whether it set the store
/// (`[paths] store` or `[store] url`).
pub(super) fn apply_file(s: &mut Settings, path: &Path, text: &str) -> Result<bool, ConfigError> {
    let cx = FileCx {
        path,
        text,
        base: path.parent().unwrap_or(Path::new("")),
    };
    let file = cx.parse()?;
    cx.apply_paths(&mut s.paths, &file.paths, &file.workspace);
    if let Some(u) = &file.store.url {
        s.paths.store = crate::store::location::setting(cx.base, u);
    }
    cx.apply_claude(&mut s.claude, &file.claude)?;
    cx.apply_run(&mut s.run, &file.run)?;
    cx.apply_roles(&mut s.roles, &file.roles)?;
    cx.apply_git(&mut s.git, &file.git)?;
    cx.apply_coord(&mut s.coord, &file.coord)?;
    cx.apply_verify(&mut s.verify, &file.verify)?;
    cx.apply_merge(&mut s.merge, &file.merge)?;
    super::serve::apply_serve(&cx, &mut s.serve, &file.serve)?;
    super::serve::apply_handoff(&cx, &mut s.handoff, &file.handoff)?;
    Ok(file.paths.store.is_some() || file.store.url.is_some())
}

/// The `[run]` durations: key, whether 0 is allowed, and the setting it fills.
type DurationSlot<'v, 's> = (&'v Option<Val>, &'static str, bool, &'s mut Duration);

impl FileCx<'_> {
    /// The file's shape, with unknown keys refused at their line.
    fn parse(&self) -> Result<FileConfig, ConfigError> {
        toml::from_str(self.text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |sp| self.line_col(sp.start));
            ConfigError::Parse {
                path: self.path.to_path_buf(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })
    }

    fn rel(&self, p: &Path) -> PathBuf {
        relative_to(self.base, p)
    }

    /// `[paths]` and `[workspace]`.
    fn apply_paths(&self, s: &mut PathsSettings, paths: &FilePaths, workspace: &FileWorkspace) {
        let FilePaths {
            workspaces,
            roles,
            store,
        } = paths;
        if let Some(p) = workspaces {
            s.workspaces = self.rel(p);
        }
        if let Some(p) = roles {
            s.roles_dir = self.rel(p);
        }
        if let Some(p) = store {
            s.store = crate::store::location::setting(self.base, p);
        }
        if let Some(p) = &workspace.template {
            s.template = Some(self.rel(p));
        }
        if let Some(p) = &workspace.repo {
            s.repo = Some(repo_path(self.base, p));
        }
    }

    /// `[claude]`.
    fn apply_claude(&self, s: &mut ClaudeSettings, c: &FileClaude) -> Result<(), ConfigError> {
        let cl = "claude";
        if let Some(p) = &c.path {
            s.path = Some(path_or_command(self.base, p));
        }
        if let Some(v) = &c.permission_mode {
            let m = self.string(cl, "permission_mode", v)?;
            s.permission_mode =
                permission_mode(&m).map_err(|e| self.invalid(cl, "permission_mode", v, &e))?;
        }
        if let Some(v) = &c.model {
            s.model = Some(self.string(cl, "model", v)?);
        }
        if let Some(v) = &c.max_turns {
            s.max_turns = Some(self.u32(cl, "max_turns", v, 1)?);
        }
        if let Some(v) = &c.max_budget_usd {
            s.max_budget_usd = Some(self.dollars(cl, "max_budget_usd", v)?);
        }
        if let Some(v) = &c.allowed_tools {
            s.allowed_tools = v.clone();
        }
        if let Some(v) = &c.disallowed_tools {
            s.disallowed_tools = v.clone();
        }
        if let Some(v) = &c.extra_args {
            s.extra_args = v.clone();
        }
        if let Some(v) = c.sandbox {
            s.sandbox = v;
        }
        if let Some(v) = &c.max_retries {
            s.max_retries = self.u32(cl, "max_retries", v, 0)?;
        }
        if let Some(v) = &c.api_timeout_ms {
            s.api_timeout_ms = self.uint(cl, "api_timeout_ms", v, 1)?;
        }
        if let Some(v) = &c.config_dir {
            let m = self.string(cl, "config_dir", v)?;
            s.config_dir =
                ConfigDirMode::parse(&m).map_err(|e| self.invalid(cl, "config_dir", v, &e))?;
        }
        if let Some(env) = &c.env {
            s.env
                .extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(())
    }

    /// `[run]`: the durations first, then the numbers, each checked in this order.
    fn apply_run(&self, s: &mut RunSettings, r: &FileRun) -> Result<(), ConfigError> {
        let rn = "run";
        let durations: [DurationSlot<'_, '_>; 10] = [
            (&r.timeout, "timeout", false, &mut s.timeout),
            (&r.idle_timeout, "idle_timeout", false, &mut s.idle_timeout),
            (&r.result_grace, "result_grace", true, &mut s.result_grace),
            (
                &r.interrupt_grace,
                "interrupt_grace",
                true,
                &mut s.interrupt_grace,
            ),
            (&r.term_grace, "term_grace", true, &mut s.term_grace),
            (&r.leak_timeout, "leak_timeout", true, &mut s.leak_timeout),
            (&r.backoff_base, "backoff_base", true, &mut s.backoff_base),
            (&r.backoff_cap, "backoff_cap", true, &mut s.backoff_cap),
            (&r.max_park, "max_park", true, &mut s.max_park),
            (&r.lease, "lease", false, &mut s.lease),
        ];
        for (v, key, allow_zero, slot) in durations {
            if let Some(v) = v {
                *slot = self.duration(rn, key, v, allow_zero)?;
            }
        }
        if let Some(v) = &r.concurrency {
            s.concurrency = self.usize(rn, "concurrency", v, 1)?;
        }
        if let Some(v) = &r.retries {
            s.retries = self.u32(rn, "retries", v, 0)?;
        }
        if let Some(v) = &r.breaker_threshold {
            s.breaker_threshold = self.u32(rn, "breaker_threshold", v, 1)?;
        }
        if let Some(v) = &r.budget_usd {
            s.budget_usd = Some(self.dollars(rn, "budget_usd", v)?);
        }
        if let Some(v) = &r.max_line_bytes {
            s.max_line_bytes = self.usize(rn, "max_line_bytes", v, 1024)?;
        }
        if let Some(v) = &r.min_available_memory {
            s.min_available_memory = self.size(rn, "min_available_memory", v)?;
        }
        if let Some(v) = &r.max_attempt_memory {
            s.max_attempt_memory = Some(self.size(rn, "max_attempt_memory", v)?).filter(|&n| n > 0);
        }
        Ok(())
    }

    /// `[git]`: the branch prefix (checked against the repository's git when a run
    /// starts) and the resolver role (a role name).
    fn apply_git(&self, s: &mut GitSettings, g: &FileGit) -> Result<(), ConfigError> {
        if let Some(p) = &g.branch_prefix {
            s.branch_prefix = p.get_ref().clone();
        }
        if let Some(v) = &g.resolver_role {
            let r = self.string("git", "resolver_role", v)?;
            if !valid_id(&r) {
                return Err(self.invalid(
                    "git",
                    "resolver_role",
                    v,
                    "not a valid role name (1 to 64 of A-Z a-z 0-9 . _ -)",
                ));
            }
            s.resolver_role = r;
        }
        Ok(())
    }

    /// `[roles.NAME]`: a name must be one a role file could have.
    fn apply_roles(
        &self,
        s: &mut BTreeMap<String, RoleLimits>,
        roles: &BTreeMap<Spanned<String>, FileRole>,
    ) -> Result<(), ConfigError> {
        for (name, role) in roles {
            if !valid_id(name.get_ref()) {
                let (line, _) = self.line_col(name.span().start);
                return Err(ConfigError::Invalid {
                    origin: format!("{}:{line} [roles]", self.path.display()),
                    key: "roles".into(),
                    value: name.get_ref().clone(),
                    message: "not a valid role name (1 to 64 of A-Z a-z 0-9 . _ -)".into(),
                });
            }
            let section = format!("roles.{}", name.get_ref());
            let max_instances = match &role.max_instances {
                Some(v) => Some(self.usize(&section, "max_instances", v, 1)?),
                None => None,
            };
            s.insert(name.get_ref().clone(), RoleLimits { max_instances });
        }
        Ok(())
    }
}

impl FileCx<'_> {
    /// `[coord]`.
    fn apply_coord(&self, c: &mut CoordSettings, f: &FileCoord) -> Result<(), ConfigError> {
        let sec = "coord";
        for (v, slot) in [
            (f.enabled, &mut c.enabled),
            (f.strict_mcp, &mut c.strict_mcp),
            (f.auto_lock, &mut c.auto_lock),
        ] {
            if let Some(v) = v {
                *slot = v;
            }
        }
        if let Some(v) = &f.on_violation {
            let s = self.string(sec, "on_violation", v)?;
            if !matches!(s.as_str(), "warn" | "fail") {
                return Err(self.invalid(sec, "on_violation", v, "use \"warn\" or \"fail\""));
            }
            c.on_violation = s;
        }
        if let Some(v) = &f.max_agent_tasks {
            c.max_agent_tasks = self.u32(sec, "max_agent_tasks", v, 0)?;
        }
        if let Some(v) = &f.lease_ttl {
            c.lease_ttl = self.duration(sec, "lease_ttl", v, false)?;
        }
        Ok(())
    }
}
