//! What `borg mcp` and `borg hook` know about the attempt they serve, from the
//! environment borg gave the claude child (which the CLI hands on to its MCP servers
//! and hooks): the store, the claim (task + fence), the instance, the attempt cookie,
//! and the attempt's coordination settings in `BORG_COORD` (JSON written by borg).
//!
//! Both helpers inherit the CLI's whole environment, credentials included
//! (claude-cli-mcp-hooks.md §1.1, §2.1): [`scrub_credentials`] drops them before
//! anything else runs, so no log line, error or child of theirs can carry one.

use crate::store::coord::Actor;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The variable holding [`CoordConfig`] as JSON.
pub const COORD_VAR: &str = "BORG_COORD";

/// Exact names of credential variables.
const SECRET_NAMES: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_REFRESH_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GITHUB_TOKEN",
    "GH_TOKEN",
];

/// Words that mark a variable as a credential wherever they appear in its name.
const SECRET_WORDS: &[&str] = &[
    "API_KEY",
    "APIKEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "PRIVATE_KEY",
];

/// True when a variable name looks like it holds a credential. borg's own variables
/// are not credentials (`BORG_CLAIM_TOKEN` is a fencing number, not a secret).
pub fn is_credential(name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    if up.starts_with("BORG_") {
        return false;
    }
    SECRET_NAMES.contains(&up.as_str()) || SECRET_WORDS.iter().any(|w| up.contains(w))
}

/// Removes every credential variable from this process's environment. Call it first
/// thing, before any thread starts (the environment is process-wide).
pub fn scrub_credentials() {
    let names: Vec<std::ffi::OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| is_credential(&k.to_string_lossy()))
        .collect();
    for k in names {
        std::env::remove_var(k);
    }
}

/// The attempt's coordination settings, written by borg into `BORG_COORD`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoordConfig {
    /// The repository root of this attempt (the child's working directory).
    pub root: PathBuf,
    /// The task's role.
    pub role: String,
    /// Take a lease on every file written through Write/Edit.
    pub auto_lock: bool,
    /// What a lease violation does: "warn" or "fail".
    pub on_violation: String,
    /// Default lease length, ms.
    pub lease_ttl_ms: u64,
    /// The claim's lease, ms (renewed by the hooks' sign of life).
    pub claim_lease_ms: u64,
    /// Most tasks the agents of one run may create.
    pub max_agent_tasks: u32,
    /// The role's write scope (globs); empty = anywhere in the repository.
    pub writable: Vec<String>,
    /// Roles that exist (for `create_task`, `send_message`, `request_handoff`).
    pub roles: Vec<String>,
    /// Default retries of a task (for `create_task`).
    pub retries: u32,
    /// When the attempt started, epoch ms.
    pub started_ms: i64,
    /// Paths no tool may write: borg's own files for this attempt (its MCP config,
    /// settings, the store).
    pub protect: Vec<PathBuf>,
}

/// Everything a helper needs about its attempt.
#[derive(Debug, Clone)]
pub struct AttemptEnv {
    /// The store file.
    pub store: PathBuf,
    /// The attempt, as the store's fenced writes name it.
    pub actor: Actor,
    /// Its settings.
    pub config: CoordConfig,
}

/// Why the environment does not name an attempt.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

impl AttemptEnv {
    /// Reads the attempt from `get` (the process environment in production).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<AttemptEnv, EnvError> {
        let need = |k: &str| {
            get(k).filter(|v| !v.is_empty()).ok_or_else(|| {
                EnvError(format!(
                    "{k} is not set: this runs inside a claude child started by borg"
                ))
            })
        };
        let fence = need("BORG_CLAIM_TOKEN")?
            .parse::<i64>()
            .map_err(|_| EnvError("BORG_CLAIM_TOKEN is not a number".into()))?;
        let config: CoordConfig = serde_json::from_str(&need(COORD_VAR)?)
            .map_err(|e| EnvError(format!("{COORD_VAR} is not valid: {e}")))?;
        Ok(AttemptEnv {
            store: PathBuf::from(need("BORG_STORE")?),
            actor: Actor {
                task: need("BORG_TASK_ID")?,
                fence,
                instance: need("BORG_INSTANCE_ID")?,
                uid: get("BORG_ATTEMPT_UID").unwrap_or_default(),
            },
            config,
        })
    }

    /// Reads the attempt from the process environment.
    pub fn from_process() -> Result<AttemptEnv, EnvError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_recognised() {
        for k in [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "MY_SERVICE_SECRET",
            "db_password",
        ] {
            assert!(is_credential(k), "{k}");
        }
        for k in [
            "PATH",
            "HOME",
            "BORG_STORE",
            "ANTHROPIC_BASE_URL",
            "BORG_CLAIM_TOKEN",
        ] {
            assert!(!is_credential(k), "{k}");
        }
    }
}
