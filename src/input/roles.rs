//! Roles: markdown files (`roles/NAME.md`) whose body seeds an instance's session and
//! prompts, with optional TOML front matter between `+++` lines (capabilities, model,
//! permission_mode, allowed_tools, max_turns, session, writable, external, approval,
//! verify, review, fix_rounds). The five shipped roles are also built into the binary,
//! so borg works from any directory.

use crate::input::gates::GateSpec;
use crate::input::values::{valid_id, PERMISSION_MODES};
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
    /// `session = "continue"`: the role's tasks resume their instance's previous
    /// session (a task's own `session` wins).
    #[serde(default)]
    pub session: Option<super::values::SessionMode>,
    /// Where tasks of this role may write: globs relative to the repository root
    /// (`["tests/**", "*.md"]`); empty = anywhere. Enforced before each write by the
    /// coordination hook.
    #[serde(default)]
    pub writable: Vec<String>,
    /// Done only by outside agents over `borg serve`: borg never starts a child for a
    /// task of this role (seed 000 hands such work to other tools).
    #[serde(default)]
    pub external: bool,
    /// Whether handoffs to this role wait for a person: `"auto"` or `"person"`
    /// (unset: `[handoff] approval`).
    pub approval: Option<String>,
    /// Verification gates of the role's tasks (`"auto"` or command lines), over
    /// `[verify] commands`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "gates_field"
    )]
    pub verify: Option<GateSpec>,
    /// The role that reviews this role's work, over `[verify] review_role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    /// Fix rounds of this role's tasks, over `[verify] fix_rounds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_rounds: Option<u32>,
}

/// `verify` of the front matter, its errors naming the key.
fn gates_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<GateSpec>, D::Error> {
    let v = toml::Value::deserialize(d)?;
    GateSpec::from_toml(&v)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("verify: {e}")))
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
    /// A role file whose stem is not a valid id (it could not be named in a task).
    #[error("{path}: role name {name:?} is not valid: use 1 to 64 of A-Z a-z 0-9 . _ - in the file name")]
    BadName {
        /// The file.
        path: PathBuf,
        /// The file stem.
        name: String,
    },
    /// The roles folder exists but holds no role file.
    #[error(
        "no role files (*.md) in {0}; add some, or remove the folder to use the built-in roles"
    )]
    Empty(PathBuf),
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
    ///
    /// Only the folder's roles are used when it exists (no merging with the built-ins),
    /// so a team can replace or withhold a shipped role.
    pub fn load(dir: &Path) -> Result<RoleSet, RoleError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RoleSet::builtin()),
            Err(source) => {
                return Err(RoleError::Read {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut roles = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| RoleError::Read {
                path: dir.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            // Hidden files are editor backups and lock files, not roles.
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden || path.extension().and_then(|e| e.to_str()) != Some("md") || path.is_dir() {
                continue;
            }
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if !valid_id(&name) {
                return Err(RoleError::BadName { path, name });
            }
            let text = std::fs::read_to_string(&path).map_err(|source| RoleError::Read {
                path: path.clone(),
                source,
            })?;
            let (meta, context) = parse_role_text(&path, &text)?;
            roles.push(Role {
                name,
                context,
                meta,
                path: Some(path),
            });
        }
        if roles.is_empty() {
            return Err(RoleError::Empty(dir.to_path_buf()));
        }
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        let set = RoleSet { roles };
        set.check_reviewers()?;
        Ok(set)
    }

    /// A role's `review` must name a role of the set.
    fn check_reviewers(&self) -> Result<(), RoleError> {
        let names = self.names();
        for r in &self.roles {
            if let Some(rev) = r.meta.review.as_ref().filter(|n| !names.contains(n)) {
                return Err(RoleError::FrontMatter {
                    path: r.path.clone().unwrap_or_else(|| PathBuf::from(&r.name)),
                    message: format!(
                        "review = {rev:?}: unknown role; roles that exist: {}",
                        names.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// The five roles compiled into the binary (architect, developer, documenter,
    /// reviewer, tester), sorted by name.
    pub fn builtin() -> RoleSet {
        let mut roles: Vec<Role> = BUILTIN
            .iter()
            .filter_map(|(name, text)| {
                // The shipped files are checked by a test, so a parse failure here
                // cannot happen in a released binary; skipping beats panicking.
                let (meta, context) = parse_role_text(Path::new(name), text).ok()?;
                Some(Role {
                    name: (*name).to_string(),
                    context,
                    meta,
                    path: None,
                })
            })
            .collect();
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        RoleSet { roles }
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

/// The values of `approval` (front matter and `[handoff] approval`): handoffs run at
/// once, or wait for a person to accept them.
pub const APPROVALS: &[&str] = &["auto", "person"];

impl RoleSet {
    /// The roles outside agents do (`external = true`): borg starts no child for them.
    pub fn external(&self) -> Vec<String> {
        self.roles
            .iter()
            .filter(|r| r.meta.external)
            .map(|r| r.name.clone())
            .collect()
    }
}

/// The shipped role files, built in so borg works from any directory.
pub const BUILTIN: &[(&str, &str)] = &[
    ("architect", include_str!("../../roles/architect.md")),
    ("developer", include_str!("../../roles/developer.md")),
    ("documenter", include_str!("../../roles/documenter.md")),
    ("reviewer", include_str!("../../roles/reviewer.md")),
    ("tester", include_str!("../../roles/tester.md")),
];

/// Splits a role file into its front matter and its body (the context).
///
/// Front matter is TOML between a first line `+++` and the next line `+++`; without
/// it the whole text is the body. `path` is used in messages only.
pub fn parse_role_text(path: &Path, text: &str) -> Result<(RoleMeta, String), RoleError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bad = |message: String| RoleError::FrontMatter {
        path: path.to_path_buf(),
        message,
    };
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "+++" {
        return Ok((RoleMeta::default(), clean_body(text)));
    }
    let mut offset = first.len();
    let meta_start = offset;
    let mut meta_end = None;
    for line in lines {
        if line.trim_end() == "+++" {
            meta_end = Some(offset);
            offset += line.len();
            break;
        }
        offset += line.len();
    }
    let Some(meta_end) = meta_end else {
        return Err(bad(
            "the +++ on line 1 is never closed; end the front matter with a line +++".into(),
        ));
    };
    let toml_text = &text[meta_start..meta_end];
    let meta: RoleMeta = toml::from_str(toml_text).map_err(|e| {
        // Lines are counted in the whole file, so the opening +++ adds one.
        let (line, column) = e
            .span()
            .map_or((1, 1), |s| crate::input::line_col(toml_text, s.start));
        bad(format!(
            "line {}, column {column}: {}",
            line + 1,
            e.message().trim_end()
        ))
    })?;
    if let Some(mode) = &meta.permission_mode {
        if !PERMISSION_MODES.contains(&mode.as_str()) {
            return Err(bad(format!(
                "permission_mode = {mode:?}: use one of {}",
                PERMISSION_MODES.join(", ")
            )));
        }
    }
    for w in &meta.writable {
        let bad = w.trim().is_empty() || w.starts_with('/') || w.split('/').any(|c| c == "..");
        if bad || globset::Glob::new(w).is_err() {
            return Err(RoleError::FrontMatter {
                path: path.to_path_buf(),
                message: format!(
                    "writable = {w:?}: use globs relative to the repository root, such as \"tests/**\" or \"*.md\""
                ),
            });
        }
    }
    if meta.max_turns == Some(0) {
        return Err(bad(
            "max_turns = 0: use a whole number >= 1, or leave it out".into(),
        ));
    }
    if let Some(a) = &meta.approval {
        if !APPROVALS.contains(&a.as_str()) {
            return Err(bad(format!(
                "approval = {a:?}: use one of {}",
                APPROVALS.join(", ")
            )));
        }
    }
    if meta.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return Err(bad("model = \"\": name a model, or leave it out".into()));
    }
    Ok((meta, clean_body(&text[offset..])))
}

/// The body without the blank lines around it, so sessions and prompts start with
/// the role's first heading.
fn clean_body(body: &str) -> String {
    body.trim_start_matches(['\n', '\r']).trim_end().to_string()
}
