//! Value readers the settings, the task list and the roles share: durations,
//! permission modes and ids.
//!
//! They live below `config` and `tasklist` so that the two read the same forms with
//! the same messages without importing each other.

use std::time::Duration;

/// The values `claude --permission-mode` accepts (docs/claude-cli.md).
pub const PERMISSION_MODES: &[&str] = &[
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
];

/// Parses a humantime duration ("30m", "1h 30m", "500ms"); a bare number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("not a duration ({e}); try \"30s\", \"15m\", \"1h\""))
}

/// A TOML duration value: a humantime string, or a bare non-negative integer meaning
/// seconds.
///
/// `config.toml` and the task list accept the same forms with the same messages, so
/// both read them here; each caller adds its own zero check and error wording.
pub(crate) fn toml_duration(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::String(s) => parse_duration(s),
        toml::Value::Integer(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
        _ => Err("expected a duration such as \"30s\", \"15m\" or \"1h\"".into()),
    }
}

/// One of `PERMISSION_MODES`, else a message listing them.
pub(crate) fn permission_mode(v: &str) -> Result<String, String> {
    if PERMISSION_MODES.contains(&v) {
        Ok(v.to_string())
    } else {
        Err(format!(
            "unknown permission mode; use one of {}",
            PERMISSION_MODES.join(", ")
        ))
    }
}

/// True for a valid task/instance id: `[A-Za-z0-9._-]{1,64}`, not `.` or `..`.
///
/// Role names follow the same rule, which is why `config.toml`'s `[roles.NAME]` checks
/// them with it.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether a repository setting names a remote reached over a transport
/// (`ssh://`, `https://`, `git://`, `file://`, or scp-like `user@host:path`) rather
/// than a folder of this host.
pub fn is_remote_url(s: &str) -> bool {
    let s = s.trim();
    if s.contains("://") {
        return true;
    }
    // git's rule for the scp-like form: a colon before any slash.
    match (s.find(':'), s.find('/')) {
        (Some(c), slash) => c > 0 && slash.is_none_or(|sl| c < sl),
        (None, _) => false,
    }
}
