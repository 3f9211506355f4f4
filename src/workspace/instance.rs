//! The instance pool on disk: `workspaces/<id>/` with `session.md` (role context, then
//! a record of every task the instance ran), `project-files/` (the child's working
//! directory: a copy of a template, or in git mode a `git worktree` of the user's
//! repository) and `logs/` (raw stdout and stderr per attempt).
//!
//! Creation is all-or-nothing: the instance is built in a hidden temporary folder
//! inside the workspaces folder and renamed into place, so a failed copy never leaves
//! a half-made instance that `list` would show. A worktree cannot be moved by a
//! rename (git records its path), so it is added once the folder is in place, and
//! the folder is removed again if git fails.

mod files;
mod recent;
mod session;

use crate::git::worktree::Worktree;
use crate::git::{Git, Repo};
use crate::input::roles::Role;
use crate::input::tasklist::valid_id;
use crate::outcome::{FileChange, Status};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use files::{carry_over, copy_tree};
pub use session::{format_entry, parse_history};

/// The metadata file in every instance folder.
pub const META_FILE: &str = "instance.toml";

/// Prefix of the temporary folders `create` builds instances in; `list` skips them.
const TMP_PREFIX: &str = ".tmp-";

/// Why an instance operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The name is not `[A-Za-z0-9._-]{1,64}` or tries to leave the workspaces folder.
    #[error("invalid instance name {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ - (and not . or ..)")]
    InvalidName(String),
    /// An instance of that id already exists.
    #[error("instance {0:?} already exists")]
    Exists(String),
    /// No instance of that id.
    #[error("no instance {0:?} in {1}")]
    NotFound(String, PathBuf),
    /// The template folder to copy does not exist or is not a folder.
    #[error("template {0} does not exist or is not a folder")]
    TemplateMissing(PathBuf),
    /// The template folder contains the workspaces folder, so copying it would never end.
    #[error("template {0} contains the workspaces folder {1}; choose a template outside it")]
    TemplateContainsRoot(PathBuf, PathBuf),
    /// git could not add or remove the instance's worktree.
    #[error("{0}")]
    Worktree(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One instance (a workspace bound to a role).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The id (folder name).
    pub id: String,
    /// The role name.
    pub role: String,
    /// `workspaces/<id>`.
    pub path: PathBuf,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// One record appended to `session.md` after an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// RFC 3339 time the attempt ended.
    pub time: String,
    /// The task id.
    pub task_id: String,
    /// The attempt number (1-based).
    pub attempt: u32,
    /// The task prompt, verbatim.
    pub prompt: String,
    /// The outcome status.
    pub status: Status,
    /// Files changed.
    pub files_changed: Vec<FileChange>,
    /// The result text or error, abridged.
    pub summary: String,
}

/// What a new instance's `project-files/` starts as.
#[derive(Debug, Clone, Copy)]
pub enum Project<'a> {
    /// An empty folder.
    Empty,
    /// A copy of this folder.
    Template(&'a Path),
    /// A worktree of this repository, detached at its base (git mode).
    Worktree(&'a Repo),
}

impl<'a> Project<'a> {
    /// The template, if any, else an empty folder.
    pub fn template(t: Option<&'a Path>) -> Project<'a> {
        t.map_or(Project::Empty, Project::Template)
    }
}

/// The workspaces folder.
#[derive(Debug, Clone)]
pub struct Workspaces {
    /// Its path.
    pub root: PathBuf,
}

impl Workspaces {
    /// The workspaces folder at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Workspaces { root: root.into() }
    }

    /// Creates `<root>/<id>/` with `session.md`, `project-files/` (a copy of
    /// `template` when given) and `logs/`. `name` defaults to `<role>-<8 hex>`.
    pub fn create(
        &self,
        role: &Role,
        name: Option<&str>,
        template: Option<&Path>,
    ) -> Result<Instance, InstanceError> {
        self.create_in(role, name, Project::template(template))
    }

    /// Creates `<root>/<id>/` with `session.md`, `project-files/` as `project` says
    /// and `logs/`. `name` defaults to `<role>-<8 hex>`.
    pub fn create_in(
        &self,
        role: &Role,
        name: Option<&str>,
        project: Project<'_>,
    ) -> Result<Instance, InstanceError> {
        let template = match project {
            Project::Template(t) => Some(t),
            _ => None,
        };
        let id = match name {
            Some(n) => n.to_string(),
            None => default_id(&role.name),
        };
        if !valid_id(&id) {
            return Err(InstanceError::InvalidName(id));
        }
        if let Some(t) = template {
            if !t.is_dir() {
                return Err(InstanceError::TemplateMissing(t.to_path_buf()));
            }
        }
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        if let Some(t) = template {
            if let (Ok(t_abs), Ok(root_abs)) = (t.canonicalize(), self.root.canonicalize()) {
                if root_abs.starts_with(&t_abs) {
                    return Err(InstanceError::TemplateContainsRoot(
                        t.to_path_buf(),
                        self.root.clone(),
                    ));
                }
            }
        }
        let path = self.root.join(&id);
        // Claim the name first: create_dir is atomic, so two concurrent creates of the
        // same id cannot both succeed. The empty folder is replaced by the rename below.
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(InstanceError::Exists(id))
            }
            Err(e) => return Err(io(&path)(e)),
        }
        let result = self.build(&id, &path, role, template);
        if result.is_err() {
            let _ = std::fs::remove_dir(&path);
        }
        match (result, project) {
            (Ok(i), Project::Worktree(repo)) => add_worktree(repo, i),
            (r, _) => r,
        }
    }

    /// Builds the instance in a temporary folder and renames it over the claimed
    /// (empty) folder at `path`.
    fn build(
        &self,
        id: &str,
        path: &Path,
        role: &Role,
        template: Option<&Path>,
    ) -> Result<Instance, InstanceError> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{TMP_PREFIX}{id}-"))
            .tempdir_in(&self.root)
            .map_err(io(&self.root))?;
        let dir = tmp.path();
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let session = format!(
            "{}\n\n{}\n",
            session_title(&role.name),
            role.context.trim_end()
        );
        write(&dir.join("session.md"), &session)?;
        let project = dir.join("project-files");
        match template {
            Some(t) => copy_tree(t, &project)?,
            // An empty project-files/ is made here; a worktree replaces it later.
            None => std::fs::create_dir(&project).map_err(io(&project))?,
        }
        std::fs::create_dir(dir.join("logs")).map_err(io(&dir.join("logs")))?;
        let meta = Meta {
            id: id.to_string(),
            role: role.name.clone(),
            created_at: created_at.clone(),
        };
        let meta_text = toml::to_string(&meta).map_err(|e| InstanceError::Io {
            path: dir.join(META_FILE),
            source: std::io::Error::other(e),
        })?;
        write(&dir.join(META_FILE), &meta_text)?;
        std::fs::rename(dir, path).map_err(io(path))?;
        // The folder is now `path`; nothing is left for the guard to delete.
        let _ = tmp.keep();
        Ok(Instance {
            id: id.to_string(),
            role: role.name.clone(),
            path: path.to_path_buf(),
            created_at,
        })
    }

    /// Every instance, sorted by id. Folders that are not instances (no
    /// `instance.toml` and no `session.md`) and unfinished creations are skipped.
    pub fn list(&self) -> Result<Vec<Instance>, InstanceError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.root)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&self.root))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with(TMP_PREFIX) || !valid_id(&name) || !entry.path().is_dir() {
                continue;
            }
            if let Ok(instance) = self.read_instance(&name) {
                out.push(instance);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// One instance.
    pub fn get(&self, id: &str) -> Result<Instance, InstanceError> {
        if !valid_id(id) {
            return Err(InstanceError::InvalidName(id.to_string()));
        }
        self.read_instance(id)
    }

    /// Removes an instance folder. Only a valid id naming an existing instance is
    /// removed, so nothing outside the workspaces folder can be deleted.
    pub fn remove(&self, id: &str) -> Result<(), InstanceError> {
        let instance = self.get(id)?;
        std::fs::remove_dir_all(&instance.path).map_err(io(&instance.path))
    }

    /// Removes an instance whose `project-files/` is a worktree: git removes the
    /// worktree (`git worktree remove`, refusing one with uncommitted changes unless
    /// `force`) and prunes its records, then the folder goes. Never `rm -rf` alone,
    /// which would leave the repository believing the worktree still exists.
    pub fn remove_worktree(&self, id: &str, git: &Git, force: bool) -> Result<(), InstanceError> {
        let instance = self.get(id)?;
        let wt = Worktree::of_instance(&instance.path);
        crate::git::worktree::remove(git, &wt.dir, force).map_err(|e| {
            let hint = if force {
                ""
            } else {
                " (use --force to remove it with its changes)"
            };
            InstanceError::Worktree(format!("cannot remove the worktree of {id}: {e}{hint}"))
        })?;
        std::fs::remove_dir_all(&instance.path).map_err(io(&instance.path))
    }

    /// Reads `<root>/<id>`: `instance.toml`, or for a folder made by hand or by the
    /// original Borg Coordinator, the role from `session.md`'s title.
    fn read_instance(&self, id: &str) -> Result<Instance, InstanceError> {
        let path = self.root.join(id);
        let not_found = || InstanceError::NotFound(id.to_string(), self.root.clone());
        let md = std::fs::symlink_metadata(&path).map_err(|_| not_found())?;
        if !md.is_dir() {
            return Err(not_found());
        }
        let meta_path = path.join(META_FILE);
        if let Ok(text) = std::fs::read_to_string(&meta_path) {
            if let Ok(meta) = toml::from_str::<Meta>(&text) {
                return Ok(Instance {
                    id: id.to_string(),
                    role: meta.role,
                    path,
                    created_at: meta.created_at,
                });
            }
        }
        let session = std::fs::read_to_string(path.join("session.md")).map_err(|_| not_found())?;
        let role = session
            .lines()
            .next()
            .and_then(role_from_title)
            .ok_or_else(not_found)?;
        let created_at = md
            .modified()
            .ok()
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .unwrap_or_default();
        Ok(Instance {
            id: id.to_string(),
            role,
            path,
            created_at,
        })
    }
}

/// Replaces the empty `project-files/` of a new instance by a worktree of `repo`;
/// when git fails, the instance is removed again.
fn add_worktree(repo: &Repo, i: Instance) -> Result<Instance, InstanceError> {
    let dir = i.project_dir();
    let added = std::fs::remove_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|()| repo.add_worktree(&dir).map_err(|e| e.to_string()));
    match added {
        Ok(()) => Ok(i),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&i.path);
            Err(InstanceError::Worktree(format!(
                "cannot add a worktree of {} for instance {}: {e}",
                repo.dir.display(),
                i.id
            )))
        }
    }
}

/// `instance.toml`.
#[derive(Serialize, Deserialize)]
struct Meta {
    id: String,
    role: String,
    created_at: String,
}

/// `<role>-<8 lowercase hex>`, the role part shortened so the id stays within 64 bytes.
fn default_id(role: &str) -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    let role: String = role.chars().take(55).collect();
    format!("{role}-{}", &hex[..8])
}

/// The first line of `session.md`: `# DEVELOPER Instance Session`.
pub fn session_title(role: &str) -> String {
    format!("# {} Instance Session", role.to_uppercase())
}

/// The role named by a `session.md` title line, lower-cased; None for another line.
fn role_from_title(line: &str) -> Option<String> {
    let name = line
        .trim()
        .strip_prefix("# ")?
        .strip_suffix(" Instance Session")?
        .trim();
    let role = name.to_lowercase();
    valid_id(&role).then_some(role)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstanceError + '_ {
    move |source| InstanceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, text: &str) -> Result<(), InstanceError> {
    std::fs::write(path, text).map_err(io(path))
}

impl Instance {
    /// `project-files/`: the child's working directory.
    pub fn project_dir(&self) -> PathBuf {
        self.path.join("project-files")
    }

    /// `logs/`.
    pub fn logs_dir(&self) -> PathBuf {
        self.path.join("logs")
    }

    /// `session.md`.
    pub fn session_path(&self) -> PathBuf {
        self.path.join("session.md")
    }

    /// The raw stdout and stderr log files of one attempt.
    pub fn attempt_logs(&self, task_id: &str, attempt: u32) -> (PathBuf, PathBuf) {
        let base = self.logs_dir().join(format!("{task_id}.{attempt}"));
        (
            base.with_extension(format!("{attempt}.stdout.jsonl")),
            base.with_extension(format!("{attempt}.stderr.log")),
        )
    }

    /// Appends one record to `session.md` (one write, so a crash cannot interleave
    /// half a record with the next).
    pub fn append_session(&self, entry: &SessionEntry) -> Result<(), InstanceError> {
        let path = self.session_path();
        recent::append(&path, entry).map_err(io(&path))
    }

    /// The last `n` records (oldest first, at most 32), from a per-process cache of
    /// each file's tail: the prompt's history without re-parsing the whole file.
    pub fn recent_history(&self, n: usize) -> Result<Vec<SessionEntry>, InstanceError> {
        let path = self.session_path();
        recent::last(&path, n).map_err(io(&path))
    }

    /// The records appended so far (oldest first), read back from `session.md`.
    /// A hand-edited file gives whatever records can still be recognised.
    pub fn history(&self) -> Result<Vec<SessionEntry>, InstanceError> {
        let path = self.session_path();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(parse_history(&String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&path)(e)),
        }
    }
}
