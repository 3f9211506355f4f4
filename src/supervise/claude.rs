//! The claude child's command line and environment: binary resolution, argv (every
//! list-valued flag as `--flag=value`, the prompt never in argv), the allowlisted
//! environment, the root/bypassPermissions check and the `--version` preflight.

use crate::input::config::Settings;
use crate::input::roles::Role;
use crate::input::tasklist::TaskSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the claude binary cannot be used. Exit code 2, before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ClaudeError {
    /// Not found.
    #[error("claude binary not found: {0}; install Claude Code (npm i -g @anthropic-ai/claude-code) or point --claude / CLAUDE_CODE_PATH at it")]
    NotFound(String),
    /// Found but not executable.
    #[error("claude binary {0} is not executable (check its permissions)")]
    NotExecutable(PathBuf),
    /// Running as root with bypassPermissions and no sandbox flag.
    #[error(
        "borg runs as root and the permission mode is bypassPermissions: the claude CLI refuses that.\n\
         If this machine is a sandbox (container, VM), set IS_SANDBOX=1 in the environment or `sandbox = true` under [claude] in config.toml;\n\
         otherwise run as a normal user, or choose another permission mode (permission_mode = \"acceptEdits\" in [claude], or per role/task)"
    )]
    RootBypass,
}

/// Environment variables passed to the child as they are (by name or prefix).
const ALLOW_EXACT: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TERM",
    "TMPDIR",
    "SHELL",
    "API_TIMEOUT_MS",
    "IS_SANDBOX",
    // The user's own Claude config folder (`[claude] config_dir = "shared"`).
    "CLAUDE_CONFIG_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "TZ",
];
const ALLOW_PREFIX: &[&str] = &["LC_", "ANTHROPIC_", "CLAUDE_CODE_", "DISABLE_"];

/// Finds the claude binary: `configured` (from --claude, CLAUDE_CODE_PATH or config),
/// else `claude` on PATH. A bare name is looked up on PATH.
pub fn resolve(configured: Option<&Path>, path_var: Option<&str>) -> Result<PathBuf, ClaudeError> {
    let name = configured
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("claude"));
    let candidate = if name.components().count() > 1 || name.is_absolute() {
        Some(name.clone())
    } else {
        path_var
            .unwrap_or("")
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(&name))
            .find(|p| p.is_file())
    };
    let Some(path) = candidate.filter(|p| p.exists()) else {
        return Err(ClaudeError::NotFound(name.display().to_string()));
    };
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(&path).map_err(|_| ClaudeError::NotFound(path.display().to_string()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(ClaudeError::NotExecutable(path));
    }
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

/// The effective per-task choices after task > role > config precedence.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildOptions {
    /// `--permission-mode`.
    pub permission_mode: String,
    /// `--model`.
    pub model: Option<String>,
    /// `--max-turns`.
    pub max_turns: Option<u32>,
    /// `--max-budget-usd`.
    pub max_budget_usd: Option<f64>,
    /// `--allowedTools=`.
    pub allowed_tools: Vec<String>,
}

/// Merges task, role and config choices (the most specific wins).
pub fn options(settings: &Settings, role: &Role, task: &TaskSpec) -> ChildOptions {
    let c = &settings.claude;
    ChildOptions {
        permission_mode: task
            .permission_mode
            .clone()
            .or_else(|| role.meta.permission_mode.clone())
            .unwrap_or_else(|| c.permission_mode.clone()),
        model: task
            .model
            .clone()
            .or_else(|| role.meta.model.clone())
            .or_else(|| c.model.clone()),
        max_turns: task.max_turns.or(role.meta.max_turns).or(c.max_turns),
        max_budget_usd: task.max_budget_usd.or(c.max_budget_usd),
        allowed_tools: if role.meta.allowed_tools.is_empty() {
            c.allowed_tools.clone()
        } else {
            role.meta.allowed_tools.clone()
        },
    }
}

/// claude's arguments. The prompt is not among them: it goes on stdin.
pub fn args(settings: &Settings, opts: &ChildOptions, resume: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-p".into(),
        "--output-format".into(),
        "stream-json".into(),
        "--verbose".into(),
    ];
    a.push(format!("--permission-mode={}", opts.permission_mode));
    if let Some(m) = &opts.model {
        a.push(format!("--model={m}"));
    }
    if let Some(n) = opts.max_turns {
        a.push(format!("--max-turns={n}"));
    }
    if let Some(b) = opts.max_budget_usd {
        a.push(format!("--max-budget-usd={b}"));
    }
    // Variadic flags swallow what follows unless written with '=' (claude-cli.md §1).
    if !opts.allowed_tools.is_empty() {
        a.push(format!("--allowedTools={}", opts.allowed_tools.join(",")));
    }
    if !settings.claude.disallowed_tools.is_empty() {
        a.push(format!(
            "--disallowedTools={}",
            settings.claude.disallowed_tools.join(",")
        ));
    }
    if let Some(s) = resume {
        a.push(format!("--resume={s}"));
    }
    a.extend(settings.claude.extra_args.iter().cloned());
    a
}

/// Identity of one attempt, exported to the child.
#[derive(Debug, Clone)]
pub struct ChildIdentity<'a> {
    /// Task id.
    pub task: &'a str,
    /// Instance id.
    pub instance: &'a str,
    /// Attempt number.
    pub attempt: u32,
    /// Unique attempt cookie.
    pub uid: &'a str,
    /// The instance folder.
    pub workspace: &'a Path,
    /// Claim fencing token.
    pub claim_token: i64,
    /// The store: its path, or its URL.
    pub store: &'a Path,
}

/// The allowlisted part of borg's environment with `[claude.env]` over it: what a
/// command borg runs for a task besides claude (a merge queue's gate) gets.
pub fn allowlisted_env(
    parent: &BTreeMap<String, String>,
    settings: &Settings,
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = parent
        .iter()
        .filter(|(k, _)| {
            ALLOW_EXACT.contains(&k.as_str()) || ALLOW_PREFIX.iter().any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(settings.claude.env.clone());
    env.remove("CLAUDECODE");
    env.into_iter().collect()
}

/// The child's complete environment: the allowlisted part of borg's environment,
/// `[claude.env]`, the task's env, then borg's own variables. `CLAUDECODE` never passes.
pub fn environment(
    parent: &BTreeMap<String, String>,
    settings: &Settings,
    task: &TaskSpec,
    id: &ChildIdentity<'_>,
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = parent
        .iter()
        .filter(|(k, _)| {
            ALLOW_EXACT.contains(&k.as_str()) || ALLOW_PREFIX.iter().any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // borg's retry policy, not the CLI's hour-long loops, should govern.
    env.entry("CLAUDE_CODE_MAX_RETRIES".into())
        .or_insert_with(|| settings.claude.max_retries.to_string());
    env.entry("API_TIMEOUT_MS".into())
        .or_insert_with(|| settings.claude.api_timeout_ms.to_string());
    if settings.claude.sandbox {
        env.insert("IS_SANDBOX".into(), "1".into());
    }
    env.extend(
        settings
            .claude
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // After an upgrade replaced the file, the path names the new borg, which is what a
    // child asking for a handoff should run; drop the kernel's " (deleted)" mark.
    let bin = std::env::current_exe()
        .map(|p| p.display().to_string())
        .map(|p| p.strip_suffix(" (deleted)").map(String::from).unwrap_or(p))
        .unwrap_or_else(|_| "borg".into());
    env.insert("BORG_TASK_ID".into(), id.task.into());
    env.insert("BORG_INSTANCE_ID".into(), id.instance.into());
    env.insert("BORG_ATTEMPT".into(), id.attempt.to_string());
    env.insert("BORG_ATTEMPT_UID".into(), id.uid.into());
    env.insert(
        "BORG_WORKSPACE".into(),
        absolute(id.workspace).display().to_string(),
    );
    env.insert("BORG_BIN".into(), bin);
    env.insert("BORG_CLAIM_TOKEN".into(), id.claim_token.to_string());
    env.insert(
        "BORG_STORE".into(),
        absolute(id.store).display().to_string(),
    );
    env.remove("CLAUDECODE");
    env.into_iter().collect()
}

/// `p` made absolute; a store URL (`postgres://...`) is not a path and stays as is.
fn absolute(p: &Path) -> PathBuf {
    if p.to_string_lossy().contains("://") {
        return p.to_path_buf();
    }
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// True when running as root with bypassPermissions for some task and no sandbox flag.
pub fn root_bypass_refused(
    euid_is_root: bool,
    any_bypass: bool,
    settings: &Settings,
    env: &BTreeMap<String, String>,
) -> bool {
    euid_is_root
        && any_bypass
        && !settings.claude.sandbox
        && env.get("IS_SANDBOX").map(String::as_str) != Some("1")
        && settings.claude.env.get("IS_SANDBOX").map(String::as_str) != Some("1")
}

/// Runs `claude --version` (5 s limit) and returns its first line.
pub async fn preflight_version(claude: &Path, env: &[(String, String)]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(claude);
    cmd.arg("--version")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(5), cmd.output()).await {
        Err(_) => Err(format!(
            "{} --version did not answer within 5 s",
            claude.display()
        )),
        Ok(Err(e)) => Err(format!("cannot run {} --version: {e}", claude.display())),
        Ok(Ok(o)) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let line = text.lines().next().unwrap_or("").trim().to_string();
            if o.status.success() && !line.is_empty() {
                Ok(line)
            } else {
                Err(format!(
                    "{} --version failed ({}): {}",
                    claude.display(),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
        }
    }
}

/// The major.minor of a `claude --version` line ("2.1.197 (Claude Code)" → (2, 1)).
pub fn parse_version(line: &str) -> Option<(u64, u64)> {
    let v = line.split_whitespace().next()?;
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines_parse() {
        assert_eq!(parse_version("2.1.197 (Claude Code)"), Some((2, 1)));
        assert_eq!(parse_version("1.0.3"), Some((1, 0)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn environment_is_an_allowlist_and_never_passes_claudecode() {
        let parent: BTreeMap<String, String> = [
            ("PATH", "/bin"),
            ("CLAUDECODE", "1"),
            ("SECRET_TOKEN", "x"),
            ("ANTHROPIC_API_KEY", "k"),
            ("LC_ALL", "C"),
            ("CLAUDE_CODE_MAX_RETRIES", "7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let settings = Settings::default();
        let task = crate::input::tasklist::TaskSpec {
            id: "t".into(),
            prompt: "p".into(),
            role: "developer".into(),
            priority: 0,
            depends_on: vec![],
            timeout: None,
            idle_timeout: None,
            result_grace: None,
            retries: None,
            handoff_to: None,
            instance: None,
            env: [("EXTRA".to_string(), "v".to_string())]
                .into_iter()
                .collect(),
            model: None,
            max_turns: None,
            max_budget_usd: None,
            permission_mode: None,
            verify: None,
            review: None,
            fix_rounds: None,
            session: None,
            order: 0,
        };
        let id = ChildIdentity {
            task: "t",
            instance: "i",
            attempt: 1,
            uid: "u",
            workspace: Path::new("/w"),
            claim_token: 3,
            store: Path::new("/s.db"),
        };
        let env: BTreeMap<_, _> = environment(&parent, &settings, &task, &id)
            .into_iter()
            .collect();
        assert!(!env.contains_key("CLAUDECODE"));
        assert!(!env.contains_key("SECRET_TOKEN"));
        assert_eq!(env["ANTHROPIC_API_KEY"], "k");
        assert_eq!(env["LC_ALL"], "C");
        assert_eq!(
            env["CLAUDE_CODE_MAX_RETRIES"], "7",
            "a user's own value wins"
        );
        assert_eq!(env["API_TIMEOUT_MS"], "120000");
        assert_eq!(env["EXTRA"], "v");
        assert_eq!(env["BORG_TASK_ID"], "t");
        assert_eq!(env["BORG_CLAIM_TOKEN"], "3");
    }
}
