//! Value readers the settings, the task list and the roles share: durations, sizes,
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

/// Parses an amount of memory: a number of bytes, or a number with a unit: `K`, `M`,
/// `G`, `T` and `KiB` … `TiB` are powers of 1024, `KB` … `TB` powers of 1000
/// ("1GiB", "512 MiB", "1.5G"). `off` and `0` are 0.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("not an amount of memory: {t:?}; try \"512MiB\", \"2GiB\" or \"off\"");
    if t.eq_ignore_ascii_case("off") {
        return Ok(0);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    let n: f64 = num.parse().map_err(|_| bad())?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad()),
    };
    let bytes = n * scale;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// A TOML amount of memory: a string for [`parse_size`] or a whole number of bytes.
pub(crate) fn toml_size(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::String(s) => parse_size(s),
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        _ => Err("expected an amount of memory such as \"512MiB\" or \"2GiB\"".into()),
    }
}

/// Whether a task starts a new claude session or resumes its instance's last one
/// (`session = "fresh" | "continue"` on a task, in `[defaults]` or a role).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// A new session (the default): the prompt carries the role and a summary of the
    /// instance's earlier tasks.
    #[default]
    Fresh,
    /// The instance's previous session, resumed (`--resume`): the agent remembers its
    /// earlier tasks, and the prompt carries only the new task.
    Continue,
}

impl SessionMode {
    /// `fresh` or `continue`; else a message naming both.
    pub fn parse(v: &str) -> Result<SessionMode, String> {
        match v {
            "fresh" => Ok(SessionMode::Fresh),
            "continue" => Ok(SessionMode::Continue),
            _ => Err("expected \"fresh\" or \"continue\"".into()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_binary_and_decimal_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("off"), Ok(0));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }
}
