//! The `[verify]` and `[merge]` sections of `config.toml`: the shape (unknown keys
//! refused) and the checks of their values, worded with the file, line and key.

use super::{FileCx, Val};
use crate::input::config::{ConfigError, MergeSettings, VerifySettings};
use crate::input::gates::GateSpec;
use crate::input::values::valid_id;
use serde::Deserialize;

/// `[verify]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileVerify {
    commands: Option<Val>,
    timeout: Option<Val>,
    baseline: Option<bool>,
    junit: Option<Val>,
    fix_rounds: Option<Val>,
    review_role: Option<Val>,
}

/// `[merge]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMerge {
    auto: Option<bool>,
    batch: Option<Val>,
    verify: Option<Val>,
    fix: Option<bool>,
}

impl FileCx<'_> {
    /// Gates as `"auto"`, one command line or a list of them.
    fn gates(&self, section: &str, key: &str, v: &Val) -> Result<GateSpec, ConfigError> {
        GateSpec::from_toml(v.get_ref()).map_err(|m| self.invalid(section, key, v, &m))
    }

    /// `[verify]`.
    pub(super) fn apply_verify(
        &self,
        s: &mut VerifySettings,
        f: &FileVerify,
    ) -> Result<(), ConfigError> {
        let sec = "verify";
        if let Some(v) = &f.commands {
            s.commands = Some(self.gates(sec, "commands", v)?);
        }
        if let Some(v) = &f.timeout {
            s.timeout = self.duration(sec, "timeout", v, false)?;
        }
        if let Some(b) = f.baseline {
            s.baseline = b;
        }
        if let Some(v) = &f.junit {
            let g = self.string(sec, "junit", v)?;
            if globset::Glob::new(&g).is_err() || g.starts_with('/') {
                return Err(self.invalid(
                    sec,
                    "junit",
                    v,
                    "expected a glob relative to the worktree, such as \"target/junit/*.xml\"",
                ));
            }
            s.junit = Some(g);
        }
        if let Some(v) = &f.fix_rounds {
            s.fix_rounds = self.u32(sec, "fix_rounds", v, 0)?;
        }
        if let Some(v) = &f.review_role {
            let r = self.string(sec, "review_role", v)?;
            if !valid_id(&r) {
                return Err(self.invalid(
                    sec,
                    "review_role",
                    v,
                    "not a valid role name (1 to 64 of A-Z a-z 0-9 . _ -)",
                ));
            }
            s.review_role = Some(r);
        }
        Ok(())
    }

    /// `[merge]`.
    pub(super) fn apply_merge(
        &self,
        s: &mut MergeSettings,
        f: &FileMerge,
    ) -> Result<(), ConfigError> {
        let sec = "merge";
        if let Some(b) = f.auto {
            s.auto = b;
        }
        if let Some(v) = &f.batch {
            s.batch = self.usize(sec, "batch", v, 1)?;
        }
        if let Some(v) = &f.verify {
            s.verify = Some(self.gates(sec, "verify", v)?);
        }
        if let Some(b) = f.fix {
            s.fix = b;
        }
        Ok(())
    }
}
