//! Settings: every knob borg has, with its default, resolved with the precedence
//! command-line flag > environment > `.env` > `config.toml` > built-in default.
//!
//! The loader lives in `config/load.rs` (its `config.toml` layer in `config/file.rs`,
//! the path and budget rules both apply in `config/rules.rs`); this file holds the
//! settings themselves and their defaults, which `config.toml` at the repository root
//! documents.

mod file;
mod load;
mod rules;
mod serve;

pub use super::values::{parse_duration, PERMISSION_MODES};
use crate::input::gates::GateSpec;
pub use serve::{check_listen, HandoffSettings, ServeSettings, DEFAULT_LISTEN};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors in configuration: bad file, bad value, bad variable. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax or type error in the config file.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A setting has a value that cannot be used.
    #[error("{origin}: {key} = {value:?}: {message}")]
    Invalid {
        /// Where the value came from (a flag, a variable, a file).
        origin: String,
        /// The setting.
        key: String,
        /// The offending value.
        value: String,
        /// What is wrong.
        message: String,
    },
}

/// How the claude child is started.
#[derive(Debug, Clone, Serialize)]
pub struct ClaudeSettings {
    /// The binary; resolved later from this, `CLAUDE_CODE_PATH`, then PATH.
    pub path: Option<PathBuf>,
    /// `--permission-mode` (default bypassPermissions).
    pub permission_mode: String,
    /// `--model`, if any.
    pub model: Option<String>,
    /// `--max-turns`, if any.
    pub max_turns: Option<u32>,
    /// `--max-budget-usd` per task, if any.
    pub max_budget_usd: Option<f64>,
    /// `--allowedTools=` list.
    pub allowed_tools: Vec<String>,
    /// `--disallowedTools=` list.
    pub disallowed_tools: Vec<String>,
    /// Extra arguments appended as they are.
    pub extra_args: Vec<String>,
    /// Set `IS_SANDBOX=1` for the child (needed by root with bypassPermissions).
    pub sandbox: bool,
    /// Extra environment for every child: `[claude.env]`, plus the `ANTHROPIC_*` and
    /// `CLAUDE_CODE_*` variables that are set only in `.env` (which never changes the
    /// process environment the child's allowlist is copied from).
    pub env: BTreeMap<String, String>,
    /// `CLAUDE_CODE_MAX_RETRIES` given to the child unless the user set it.
    pub max_retries: u32,
    /// `API_TIMEOUT_MS` given to the child unless the user set it.
    pub api_timeout_ms: u64,
    /// Where each child's Claude configuration lives (`CLAUDE_CONFIG_DIR`).
    pub config_dir: ConfigDirMode,
}

/// `[claude] config_dir`: one Claude config folder per instance, or the user's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigDirMode {
    /// Per instance when the run's concurrency is above 1, else shared.
    #[default]
    Auto,
    /// `workspaces/<id>/claude-config/` for each instance: concurrent children never
    /// race on one `.claude.json`.
    PerInstance,
    /// The CLI's own folder (`CLAUDE_CONFIG_DIR` if set, else `~/.claude`).
    Shared,
}

impl ConfigDirMode {
    /// `auto`, `per-instance` or `shared`; else a message naming them.
    pub fn parse(v: &str) -> Result<ConfigDirMode, String> {
        match v {
            "auto" => Ok(ConfigDirMode::Auto),
            "per-instance" => Ok(ConfigDirMode::PerInstance),
            "shared" => Ok(ConfigDirMode::Shared),
            _ => Err("expected \"per-instance\", \"shared\" or \"auto\"".into()),
        }
    }

    /// Whether each instance gets its own folder, for a run of this concurrency.
    pub fn per_instance(self, concurrency: usize) -> bool {
        match self {
            ConfigDirMode::Auto => concurrency > 1,
            ConfigDirMode::PerInstance => true,
            ConfigDirMode::Shared => false,
        }
    }
}

/// Run-time limits and watchdogs.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    /// At most this many children at once.
    pub concurrency: usize,
    /// Wall-clock limit of one attempt.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Stop an attempt whose stdout is silent this long.
    #[serde(with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// Stop a child still alive this long after its `result` line.
    #[serde(with = "humantime_serde_compat")]
    pub result_grace: Duration,
    /// Stop ladder: wait after SIGINT.
    #[serde(with = "humantime_serde_compat")]
    pub interrupt_grace: Duration,
    /// Stop ladder: wait after SIGTERM.
    #[serde(with = "humantime_serde_compat")]
    pub term_grace: Duration,
    /// After the child exits, wait this long for its pipes and descendants.
    #[serde(with = "humantime_serde_compat")]
    pub leak_timeout: Duration,
    /// Default retries of a task on transient faults.
    pub retries: u32,
    /// Retry backoff base.
    #[serde(with = "humantime_serde_compat")]
    pub backoff_base: Duration,
    /// Retry backoff cap.
    #[serde(with = "humantime_serde_compat")]
    pub backoff_cap: Duration,
    /// Open the breaker after this many attempts in a row fail the same transient way.
    pub breaker_threshold: u32,
    /// Longest the fleet may stay parked on usage limits.
    #[serde(with = "humantime_serde_compat")]
    pub max_park: Duration,
    /// Stop starting tasks once the run has spent this much.
    pub budget_usd: Option<f64>,
    /// Claim lease length (renewed by heartbeat).
    #[serde(with = "humantime_serde_compat")]
    pub lease: Duration,
    /// Longest stdout line parsed; longer ones are logged but not parsed.
    pub max_line_bytes: usize,
    /// No new child starts while the machine's `MemAvailable` is below this (bytes;
    /// 0: no check).
    pub min_available_memory: u64,
    /// Stop an attempt whose whole process tree holds more resident memory than this
    /// (bytes; None: no limit).
    pub max_attempt_memory: Option<u64>,
}

/// Where things live.
#[derive(Debug, Clone, Serialize)]
pub struct PathsSettings {
    /// The workspaces folder (instances, the store).
    pub workspaces: PathBuf,
    /// The roles folder.
    pub roles_dir: PathBuf,
    /// The store: an SQLite file (default `<workspaces>/borg.db`) or a `postgres://`
    /// URL, kept as given (`crate::store::location::StoreLocation::of` tells them
    /// apart); serialised without a URL's password.
    #[serde(serialize_with = "shown_store")]
    pub store: PathBuf,
    /// Template copied into a new instance's `project-files/`.
    pub template: Option<PathBuf>,
    /// A git repository to work on (git mode): `[workspace] repo`, `BORG_REPO`, `--repo`.
    pub repo: Option<PathBuf>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
}

/// Git mode (`[git]`).
#[derive(Debug, Clone, Serialize)]
pub struct GitSettings {
    /// Task branches are `<branch_prefix><task-id>`.
    pub branch_prefix: String,
    /// The role of the resolve tasks borg creates for merge conflicts.
    pub resolver_role: String,
}

/// Per-role limits (`[roles.NAME]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoleLimits {
    /// At most this many instances of the role run at once.
    pub max_instances: Option<usize>,
}

/// Coordination of running agents (`[coord]`): the borg MCP server and the hooks
/// given to every child.
#[derive(Debug, Clone, Serialize)]
pub struct CoordSettings {
    /// Give children the borg MCP server and the lease hooks at all.
    pub enabled: bool,
    /// Pass `--strict-mcp-config`: the child gets borg's MCP server and no other.
    pub strict_mcp: bool,
    /// Lease every file an agent writes through Write/Edit (seed 002).
    pub auto_lock: bool,
    /// A change through the shell to a file another attempt holds: "warn" tells the
    /// agent and records it; "fail" also ends the attempt `out_of_scope`.
    pub on_violation: String,
    /// Most tasks the agents of one run may create (`create_task`).
    pub max_agent_tasks: u32,
    /// Default length of a file lease (renewed by every write).
    #[serde(with = "humantime_serde_compat")]
    pub lease_ttl: Duration,
}

/// Verification of finished work (`[verify]`): gates, baseline, fix rounds, review.
#[derive(Debug, Clone, Serialize)]
pub struct VerifySettings {
    /// The gates of tasks whose task and role name none (None: no gate).
    pub commands: Option<GateSpec>,
    /// Wall-clock limit of one gate run.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Judge failures against the same gate at the task's start commit.
    pub baseline: bool,
    /// JUnit XML files the gates write (a glob relative to the worktree).
    pub junit: Option<String>,
    /// Fix rounds when neither the task nor its role says.
    pub fix_rounds: u32,
    /// The role that reviews work when neither the task nor its role names one.
    pub review_role: Option<String>,
}

/// The merge queue (`[merge]`).
#[derive(Debug, Clone, Serialize)]
pub struct MergeSettings {
    /// Run the queue as tasks finish (`borg run --merge`).
    pub auto: bool,
    /// Branches per batch.
    pub batch: usize,
    /// Integration gates (None: the `[verify] commands`).
    pub verify: Option<GateSpec>,
    /// A rejected task gets a fix task for its role.
    pub fix: bool,
}

/// Every setting, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Paths.
    pub paths: PathsSettings,
    /// The claude child.
    pub claude: ClaudeSettings,
    /// Limits and watchdogs.
    pub run: RunSettings,
    /// Per-role limits.
    pub roles: BTreeMap<String, RoleLimits>,
    /// Coordination of running agents.
    pub coord: CoordSettings,
    /// Git mode.
    pub git: GitSettings,
    /// Verification of finished work.
    pub verify: VerifySettings,
    /// The merge queue.
    pub merge: MergeSettings,
    /// `borg serve`.
    pub serve: ServeSettings,
    /// Handoffs.
    pub handoff: HandoffSettings,
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--workspaces DIR`.
    pub workspaces: Option<PathBuf>,
    /// `--roles DIR`.
    pub roles_dir: Option<PathBuf>,
    /// `--store PATH`.
    pub store: Option<PathBuf>,
    /// `--claude PATH`.
    pub claude: Option<PathBuf>,
    /// `--concurrency N`.
    pub concurrency: Option<usize>,
    /// `--timeout DUR`.
    pub timeout: Option<Duration>,
    /// `--template DIR`.
    pub template: Option<PathBuf>,
    /// `--repo DIR`.
    pub repo: Option<PathBuf>,
    /// `--budget-usd X`.
    pub budget_usd: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        let workspaces = PathBuf::from("workspaces");
        Settings {
            paths: PathsSettings {
                store: workspaces.join(STORE_FILE),
                workspaces,
                roles_dir: PathBuf::from("roles"),
                template: None,
                repo: None,
                config_file: None,
            },
            claude: ClaudeSettings {
                path: None,
                permission_mode: "bypassPermissions".into(),
                model: None,
                max_turns: None,
                max_budget_usd: None,
                allowed_tools: Vec::new(),
                disallowed_tools: Vec::new(),
                extra_args: Vec::new(),
                sandbox: false,
                env: BTreeMap::new(),
                max_retries: 2,
                api_timeout_ms: 120_000,
                config_dir: ConfigDirMode::Auto,
            },
            run: RunSettings {
                concurrency: 4,
                timeout: Duration::from_secs(30 * 60),
                idle_timeout: Duration::from_secs(10 * 60),
                result_grace: Duration::from_secs(30),
                interrupt_grace: Duration::from_secs(5),
                term_grace: Duration::from_secs(5),
                leak_timeout: Duration::from_secs(1),
                retries: 0,
                backoff_base: Duration::from_secs(5),
                backoff_cap: Duration::from_secs(300),
                breaker_threshold: 3,
                max_park: Duration::from_secs(6 * 3600),
                budget_usd: None,
                lease: Duration::from_secs(60),
                max_line_bytes: 8 * 1024 * 1024,
                min_available_memory: 1 << 30,
                max_attempt_memory: None,
            },
            roles: BTreeMap::new(),
            git: GitSettings {
                branch_prefix: "borg/".into(),
                resolver_role: "developer".into(),
            },
            coord: CoordSettings {
                enabled: true,
                strict_mcp: false,
                auto_lock: true,
                on_violation: "warn".into(),
                max_agent_tasks: 20,
                lease_ttl: Duration::from_secs(15 * 60),
            },
            verify: VerifySettings {
                commands: None,
                timeout: Duration::from_secs(10 * 60),
                baseline: true,
                junit: None,
                fix_rounds: 2,
                review_role: None,
            },
            merge: MergeSettings {
                auto: false,
                batch: 4,
                verify: None,
                fix: false,
            },
            serve: ServeSettings::default(),
            handoff: HandoffSettings::default(),
        }
    }
}

impl Settings {
    /// Resolves every setting from the command line, the process environment
    /// (`env`: name → value), `.env` in the current directory, the config file and
    /// the defaults, in that order of precedence.
    pub fn load(over: &Overrides, env: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
        Settings::load_in(over, env, Path::new(""))
    }

    /// `load` with `cwd` standing for the current directory: `.env` and `config.toml`
    /// are looked for there and relative paths from flags and variables are taken
    /// from there. `Path::new("")` is the process's current directory (paths stay
    /// relative, as the user wrote them).
    pub fn load_in(
        over: &Overrides,
        env: &BTreeMap<String, String>,
        cwd: &Path,
    ) -> Result<Settings, ConfigError> {
        load::load(over, env, cwd)
    }

    /// The defaults with one config file's text applied (no environment, no flags).
    /// Relative paths in it are taken from `path`'s folder; `path` names the file in
    /// messages.
    pub fn from_config_str(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        let mut settings = Settings::default();
        settings.paths.config_file = Some(path.to_path_buf());
        if !file::apply_file(&mut settings, path, text)? {
            settings.paths.store = settings.paths.workspaces.join(STORE_FILE);
        }
        Ok(settings)
    }

    /// One variable of the `.env` file at `path`, read by the one `.env` reader with
    /// the rules every setting is read with: the last assignment wins, and a line that
    /// is no assignment makes the file an error (a missing file is empty). Used by what
    /// runs before the settings are loaded (diagnostics' `BORG_LOG`).
    pub fn dotenv_var(path: &Path, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(load::read_dotenv(path)?.remove(name).map(|(v, _)| v))
    }

    /// The environment variables borg itself reads (documented in `.env.example`).
    pub fn known_variables() -> &'static [&'static str] {
        &[
            "BORG_CONFIG",
            "BORG_WORKSPACES",
            "WORKSPACES_DIR",
            "BORG_ROLES",
            "BORG_STORE",
            "BORG_CLAUDE",
            "CLAUDE_CODE_PATH",
            "BORG_CONCURRENCY",
            "BORG_TIMEOUT",
            "TASK_TIMEOUT",
            "BORG_IDLE_TIMEOUT",
            "BORG_RETRIES",
            "BORG_TEMPLATE",
            "BORG_REPO",
            "BORG_BUDGET_USD",
            "BORG_PERMISSION_MODE",
            "BORG_MODEL",
            "BORG_MAX_TURNS",
            "BORG_SANDBOX",
            "IS_SANDBOX",
            "CLAUDE_CODE_MAX_RETRIES",
            "API_TIMEOUT_MS",
            "BORG_LOG",
            "BORG_SERVE_LISTEN",
            "BORG_SERVE_TOKEN",
            "BORG_HANDOFF_APPROVAL",
        ]
    }
}

/// A store setting as it may be shown: a URL's password is never printed.
fn shown_store<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    let text = p.to_string_lossy();
    if crate::store::location::is_url(&text) {
        s.serialize_str(&crate::store::location::redact(&text))
    } else {
        p.serialize(s)
    }
}

/// The store's file name inside the workspaces folder (the default store path).
pub const STORE_FILE: &str = "borg.db";

/// The config file borg reads from the current directory when none is named.
pub const CONFIG_FILE: &str = "config.toml";

/// Serde helper: durations as humantime strings ("30m", "5s").
pub mod humantime_serde_compat {
    use serde::Serializer;
    use std::time::Duration;

    /// Serialises a duration as a humantime string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}
