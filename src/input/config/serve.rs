//! The `[serve]` and `[handoff]` settings: how `borg serve` listens (address, admin
//! token, rate limit, body limit, the lease of an outside agent's claim) and whether
//! handoffs wait for a person. Their `config.toml` sections and variables are read
//! here so that `file.rs` and `load.rs` only call in.

use super::ConfigError;
use crate::input::roles::APPROVALS;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use toml::Spanned;

/// The address `borg serve` listens on by default (seed 000's port, loopback).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3456";

/// `borg serve`.
#[derive(Debug, Clone, Serialize)]
pub struct ServeSettings {
    /// `host:port` to listen on.
    pub listen: String,
    /// The admin token (`--token`, `BORG_SERVE_TOKEN`); required off loopback. Never
    /// serialised.
    #[serde(skip)]
    pub token: Option<String>,
    /// Requests per minute per agent (0: no limit).
    pub rate_limit: u32,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Lease of an outside agent's claim, renewed by each progress report.
    #[serde(with = "super::humantime_serde_compat")]
    pub lease: Duration,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            listen: DEFAULT_LISTEN.into(),
            token: None,
            rate_limit: 100,
            body_limit: 256 * 1024,
            lease: Duration::from_secs(10 * 60),
        }
    }
}

/// Handoffs.
#[derive(Debug, Clone, Serialize)]
pub struct HandoffSettings {
    /// `auto` (a handoff's task runs when its source succeeds) or `person` (it waits
    /// for `borg handoff accept` or the dashboard's Accept). Roles may override it.
    pub approval: String,
}

impl Default for HandoffSettings {
    fn default() -> Self {
        HandoffSettings {
            approval: "auto".into(),
        }
    }
}

/// `[serve]` as written in the file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServe {
    listen: Option<Spanned<toml::Value>>,
    token: Option<Spanned<toml::Value>>,
    rate_limit: Option<Spanned<toml::Value>>,
    body_limit: Option<Spanned<toml::Value>>,
    lease: Option<Spanned<toml::Value>>,
}

/// `[handoff]` as written in the file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHandoff {
    approval: Option<Spanned<toml::Value>>,
}

/// The checks of `file.rs`, seen from here.
pub(super) trait Check {
    /// A non-empty string.
    fn string(
        &self,
        section: &str,
        key: &str,
        v: &Spanned<toml::Value>,
    ) -> Result<String, ConfigError>;
    /// A whole number >= min.
    fn uint(
        &self,
        section: &str,
        key: &str,
        v: &Spanned<toml::Value>,
        min: u64,
    ) -> Result<u64, ConfigError>;
    /// A duration, > 0.
    fn positive(
        &self,
        section: &str,
        key: &str,
        v: &Spanned<toml::Value>,
    ) -> Result<Duration, ConfigError>;
    /// An error naming the value.
    fn bad(&self, section: &str, key: &str, v: &Spanned<toml::Value>, m: &str) -> ConfigError;
}

/// Applies `[serve]`.
pub(super) fn apply_serve(
    cx: &dyn Check,
    s: &mut ServeSettings,
    f: &FileServe,
) -> Result<(), ConfigError> {
    let sec = "serve";
    if let Some(v) = &f.listen {
        let l = cx.string(sec, "listen", v)?;
        check_listen(&l).map_err(|m| cx.bad(sec, "listen", v, &m))?;
        s.listen = l;
    }
    if let Some(v) = &f.token {
        s.token = Some(cx.string(sec, "token", v)?);
    }
    if let Some(v) = &f.rate_limit {
        let n = cx.uint(sec, "rate_limit", v, 0)?;
        s.rate_limit = u32::try_from(n).map_err(|_| cx.bad(sec, "rate_limit", v, "too large"))?;
    }
    if let Some(v) = &f.body_limit {
        let n = cx.uint(sec, "body_limit", v, 1024)?;
        s.body_limit = usize::try_from(n).map_err(|_| cx.bad(sec, "body_limit", v, "too large"))?;
    }
    if let Some(v) = &f.lease {
        s.lease = cx.positive(sec, "lease", v)?;
    }
    Ok(())
}

/// Applies `[handoff]`.
pub(super) fn apply_handoff(
    cx: &dyn Check,
    s: &mut HandoffSettings,
    f: &FileHandoff,
) -> Result<(), ConfigError> {
    if let Some(v) = &f.approval {
        let a = cx.string("handoff", "approval", v)?;
        check_approval(&a).map_err(|m| cx.bad("handoff", "approval", v, &m))?;
        s.approval = a;
    }
    Ok(())
}

/// A listen address: `host:port` with a port.
pub fn check_listen(l: &str) -> Result<(), String> {
    let ok = l
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err("expected HOST:PORT, e.g. 127.0.0.1:3456".into())
    }
}

/// An approval mode.
pub fn check_approval(a: &str) -> Result<(), String> {
    if APPROVALS.contains(&a) {
        Ok(())
    } else {
        Err(format!("use one of {}", APPROVALS.join(", ")))
    }
}

/// The serve and handoff variables of one environment-like layer:
/// `BORG_SERVE_LISTEN`, `BORG_SERVE_TOKEN`, `BORG_HANDOFF_APPROVAL`. `get` gives a
/// variable's trimmed value when set and not empty; `bad` words an error.
pub(super) fn apply_env(
    serve: &mut ServeSettings,
    handoff: &mut HandoffSettings,
    get: &dyn Fn(&str) -> Option<String>,
    bad: &dyn Fn(&str, &str, &str, &str) -> ConfigError,
) -> Result<(), ConfigError> {
    if let Some(v) = get("BORG_SERVE_LISTEN") {
        check_listen(&v).map_err(|m| bad("BORG_SERVE_LISTEN", "serve.listen", &v, &m))?;
        serve.listen = v;
    }
    if let Some(v) = get("BORG_SERVE_TOKEN") {
        serve.token = Some(v);
    }
    if let Some(v) = get("BORG_HANDOFF_APPROVAL") {
        check_approval(&v).map_err(|m| bad("BORG_HANDOFF_APPROVAL", "handoff.approval", &v, &m))?;
        handoff.approval = v;
    }
    Ok(())
}
