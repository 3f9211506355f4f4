//! Roles: markdown files (`roles/NAME.md`) whose body seeds an instance's session and
//! prompts, with optional TOML front matter between `+++` lines (capabilities, model,
//! permission_mode, allowed_tools, max_turns). The five shipped roles are also built
//! into the binary, so borg works from any directory.
//!
//! OWNER: helper D (inputs). Types fixed by the skeleton; fill the bodies.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Front matter of a role file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMeta {
    /// Free-form capability tags.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// `--model` for tasks of this role.
    pub model: Option<String>,
    /// `--permission-mode` for tasks of this role.
    pub permission_mode: Option<String>,
    /// `--allowedTools=` for tasks of this role.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// `--max-turns` for tasks of this role.
    pub max_turns: Option<u32>,
}

/// One role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// The name (file stem).
    pub name: String,
    /// The markdown body: the role context.
    pub context: String,
    /// Front matter.
    pub meta: RoleMeta,
    /// The file it came from (None for a built-in role).
    pub path: Option<PathBuf>,
}

/// Why roles could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// A role file could not be read.
    #[error("cannot read role file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bad front matter.
    #[error("{path}: bad front matter: {message}")]
    FrontMatter {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No role of that name.
    #[error("unknown role {name:?}; roles that exist: {}", known.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: Vec<String>,
    },
}

/// The roles available to a run, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct RoleSet {
    /// The roles.
    pub roles: Vec<Role>,
}

impl RoleSet {
    /// Loads every `*.md` in `dir`; when `dir` does not exist, the built-in roles.
    pub fn load(dir: &Path) -> Result<RoleSet, RoleError> {
        let _ = dir;
        Ok(RoleSet::default())
    }

    /// The role of that name, or `RoleError::Unknown` listing the names that exist.
    pub fn get(&self, name: &str) -> Result<&Role, RoleError> {
        self.roles
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| RoleError::Unknown {
                name: name.to_string(),
                known: self.names(),
            })
    }

    /// The role names.
    pub fn names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.name.clone()).collect()
    }
}
