//! The user's repository: checked before any child starts (a repository, with
//! commits, a git recent enough, a branch prefix and task ids valid in ref names), the
//! run's base commit, and the few read-only looks borg takes at the user's work tree
//! (uncommitted changes; whether the workspaces folder inside it is ignored).

use super::{short, Git, GitError, MIN_VERSION};
use std::path::{Path, PathBuf};

/// The store's fleet key under which a run records its repository and base commit
/// (`{"repo", "common_dir", "base"}`), so a resumed run keeps its base and
/// `borg diff` finds the repository.
pub const BASE_KEY: &str = "git.base";

/// A repository that cannot be used; exit code 2, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// git is missing or older than the features borg uses.
    #[error("{0}")]
    Git(String),
    /// The folder is not a git repository.
    #[error("{dir} is not a git repository ({detail}); give --repo a work tree or a bare repository, or use --template DIR for a plain folder")]
    NotARepo {
        /// The folder.
        dir: PathBuf,
        /// What git said.
        detail: String,
    },
    /// The repository has no commit to branch from.
    #[error("the repository {0} has no commits yet; commit something first (every task branches from a commit)")]
    NoCommits(PathBuf),
    /// `--base REV` names no commit.
    #[error("--base {rev}: not a commit in {dir} ({detail})")]
    BadBase {
        /// The revision asked for.
        rev: String,
        /// The repository.
        dir: PathBuf,
        /// What git said.
        detail: String,
    },
    /// The branch prefix cannot make branch names.
    #[error("[git] branch_prefix = {0:?} does not make valid branch names (git check-ref-format); use something like \"borg/\"")]
    BadPrefix(String),
    /// A branch named like the prefix exists, so no branch can be created under it.
    #[error("the repository {dir} has a branch {branch}, so no branch {branch}/<task> can be created; rename it or set [git] branch_prefix")]
    PrefixTaken {
        /// The repository.
        dir: PathBuf,
        /// The branch.
        branch: String,
    },
    /// A task id cannot be part of a ref name.
    #[error("task id {id:?} cannot be a git branch name ({why}); rename the task")]
    BadTaskId {
        /// The id.
        id: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// The shared remote cannot be used.
    #[error("the remote {url}: {detail}")]
    Remote {
        /// The URL (without a password).
        url: String,
        /// What went wrong and what to do.
        detail: String,
    },
    /// A fresh run would overwrite branches or attempt refs an earlier run left.
    #[error("the repository {dir} already has borg refs for tasks of this list from an earlier run ({refs}); merge what you want to keep, then delete them (`git branch -D ...`, `git update-ref -d ...`), set [git] branch_prefix, or run with that run's store")]
    RefsExist {
        /// The repository.
        dir: PathBuf,
        /// Some of the refs.
        refs: String,
    },
}

/// A checked repository and what a run needs of it.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The git runner.
    pub git: Git,
    /// The folder git commands on the repository run in: the top of the work tree,
    /// or the bare repository.
    pub dir: PathBuf,
    /// The repository's common git folder (shared by every worktree).
    pub common_dir: PathBuf,
    /// The user's work tree, None for a bare repository.
    pub work_tree: Option<PathBuf>,
    /// The run's base commit (full id).
    pub base: String,
    /// Task branches are `<prefix><task-id>`.
    pub prefix: String,
    /// The role of resolve tasks.
    pub resolver_role: String,
    /// The remote's URL when this is a host's mirror of a shared remote (see
    /// [`super::mirror`]): worktrees are made from the mirror, work is exchanged
    /// through the remote.
    pub remote: Option<String>,
}

impl Repo {
    /// Checks `dir` and git: a new enough git, a repository, with a `HEAD` commit
    /// (which is the base until [`Repo::set_base`]), and a usable branch prefix.
    pub fn open(git: Git, dir: &Path, prefix: &str, resolver: &str) -> Result<Repo, RepoError> {
        check_version(&git)?;
        if !dir.is_dir() {
            return Err(RepoError::NotARepo {
                dir: dir.to_path_buf(),
                detail: "no such folder".into(),
            });
        }
        let not_repo = |e: GitError| RepoError::NotARepo {
            dir: dir.to_path_buf(),
            detail: first_line(&e),
        };
        let info = git
            .at(dir)
            .args([
                "rev-parse",
                "--is-bare-repository",
                "--path-format=absolute",
                "--git-common-dir",
            ])
            .ok()
            .map_err(not_repo)?
            .text();
        let mut lines = info.lines();
        let bare = lines.next() == Some("true");
        let common_dir = PathBuf::from(lines.next().unwrap_or_default());
        let work_tree = if bare {
            None
        } else {
            let top = git
                .at(dir)
                .args(["rev-parse", "--show-toplevel"])
                .ok()
                .map_err(not_repo)?;
            Some(PathBuf::from(top.text()))
        };
        let mut repo = Repo {
            dir: work_tree.clone().unwrap_or_else(|| common_dir.clone()),
            git,
            common_dir,
            work_tree,
            base: String::new(),
            prefix: prefix.to_string(),
            resolver_role: resolver.to_string(),
            remote: None,
        };
        repo.base = repo
            .commit_of("HEAD")
            .map_err(|_| RepoError::NoCommits(dir.to_path_buf()))?;
        repo.check_prefix()?;
        Ok(repo)
    }

    /// The full id of the commit `rev` names.
    pub fn commit_of(&self, rev: &str) -> Result<String, GitError> {
        let spec = format!("{rev}^{{commit}}");
        let out = self
            .git
            .at(&self.dir)
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &spec,
            ])
            .ok()?;
        Ok(out.text())
    }

    /// Makes `rev` the base (`--base REV`).
    pub fn set_base(&mut self, rev: &str) -> Result<(), RepoError> {
        self.base = self.commit_of(rev).map_err(|e| RepoError::BadBase {
            rev: rev.to_string(),
            dir: self.dir.clone(),
            detail: match first_line(&e) {
                s if s.is_empty() => "unknown revision".into(),
                s => s,
            },
        })?;
        Ok(())
    }

    /// The branch of a task.
    pub fn branch(&self, task: &str) -> String {
        format!("{}{task}", self.prefix)
    }

    /// Where the repository's own branches are: `refs/heads/`, or in a mirror the
    /// remote's branches as last fetched.
    pub fn heads(&self) -> &'static str {
        if self.remote.is_some() {
            "refs/remotes/origin/"
        } else {
            "refs/heads/"
        }
    }

    /// A branch prefix must make valid branch names, and no branch may be named like
    /// the prefix itself (`borg` blocks every `borg/...`).
    pub(crate) fn check_prefix(&self) -> Result<(), RepoError> {
        let probe = format!("{}x", self.prefix);
        let ok = self
            .git
            .at(&self.dir)
            .args(["check-ref-format", "--branch", &probe])
            .run();
        if !ok.is_ok_and(|o| o.code == 0) {
            return Err(RepoError::BadPrefix(self.prefix.clone()));
        }
        let Some(stem) = self.prefix.strip_suffix('/') else {
            return Ok(());
        };
        let r = format!("{}{stem}", self.heads());
        if self.commit_of(&r).is_ok() {
            return Err(RepoError::PrefixTaken {
                dir: self.dir.clone(),
                branch: stem.to_string(),
            });
        }
        Ok(())
    }

    /// Every task id must be usable in `refs/heads/<prefix><id>` and
    /// `refs/borg/attempts/<id>/<n>`.
    pub fn check_ids<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Result<(), RepoError> {
        for id in ids {
            if let Some(why) = ref_rule_broken(id, self.prefix.is_empty()) {
                return Err(RepoError::BadTaskId {
                    id: id.to_string(),
                    why,
                });
            }
        }
        Ok(())
    }

    /// Refuses a fresh run over the branches or attempt refs of an earlier one for the
    /// same task ids (they would be moved and their work left unreachable).
    pub fn check_no_refs_of<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), RepoError> {
        let heads = format!("refs/heads/{}", self.prefix);
        let text = self
            .borg_refs(&heads)
            .map_err(|e| RepoError::Git(e.to_string()))?;
        let found: Vec<&str> = text.lines().collect();
        let mut hits: Vec<&str> = Vec::new();
        for id in ids {
            let branch = format!("{heads}{id}");
            let attempts = format!("refs/borg/attempts/{id}/");
            hits.extend(
                found
                    .iter()
                    .copied()
                    .filter(|r| *r == branch || r.starts_with(&attempts)),
            );
        }
        if hits.is_empty() {
            return Ok(());
        }
        // Branches first: they are what the user will recognise.
        hits.sort_by_key(|r| (!r.starts_with("refs/heads/"), r.to_string()));
        let mut refs: Vec<&str> = hits
            .iter()
            .map(|r| r.trim_start_matches("refs/heads/"))
            .collect();
        refs.truncate(5);
        Err(RepoError::RefsExist {
            dir: self.dir.clone(),
            refs: refs.join(", "),
        })
    }

    /// The names of the branches under `heads` and the attempt refs, one a line: of the
    /// remote for a mirror (the shared truth), else of the repository.
    fn borg_refs(&self, heads: &str) -> Result<String, GitError> {
        if self.remote.is_some() {
            let pats = [format!("{heads}*"), "refs/borg/attempts/*".to_string()];
            let refs = self.ls_remote(&pats)?;
            return Ok(refs.into_keys().collect::<Vec<_>>().join("\n"));
        }
        let out = self
            .git
            .at(&self.dir)
            .args([
                "for-each-ref",
                "--format=%(refname)",
                heads,
                "refs/borg/attempts/",
            ])
            .ok()?;
        Ok(out.text())
    }

    /// How many paths of the user's work tree differ from its `HEAD` (untracked ones
    /// included), read without taking the index lock or rewriting the index.
    pub fn uncommitted(&self) -> usize {
        let Some(top) = &self.work_tree else {
            return 0;
        };
        let out = self
            .git
            .at(top)
            .env("GIT_OPTIONAL_LOCKS", "0")
            .args([
                "status",
                "--porcelain",
                "-z",
                "--untracked-files=normal",
                "--ignore-submodules=dirty",
            ])
            .ok();
        out.map(|o| {
            o.stdout
                .split(|b| *b == 0)
                .filter(|e| !e.is_empty())
                .count()
        })
        .unwrap_or(0)
    }

    /// When the workspaces folder lies inside the user's work tree and nothing ignores
    /// it, adds it to the repository's `info/exclude`, so that the user's `git status`
    /// stays as it was (borg's worktrees and store live there). Returns the line added.
    pub fn exclude(&self, workspaces: &Path) -> Result<Option<String>, GitError> {
        let Some(top) = &self.work_tree else {
            return Ok(None);
        };
        let (Ok(top_abs), Ok(ws_abs)) = (top.canonicalize(), workspaces.canonicalize()) else {
            return Ok(None);
        };
        let Ok(rel) = ws_abs.strip_prefix(&top_abs) else {
            return Ok(None);
        };
        if rel.as_os_str().is_empty() {
            return Ok(None);
        }
        let rel = format!("{}/", rel.to_string_lossy());
        let ignored = self
            .git
            .at(top)
            .args(["check-ignore", "-q", "--no-index", "--", &rel])
            .run()?;
        if ignored.code == 0 {
            return Ok(None);
        }
        let line = format!("/{rel}");
        let path = self.common_dir.join("info").join("exclude");
        append_line(&path, &line).map_err(|e| GitError::Output {
            args: "info/exclude".into(),
            what: format!("{}: {e}", path.display()),
        })?;
        Ok(Some(line))
    }

    /// The one line said at the start of a run in git mode.
    pub fn describe(&self, how: &str) -> String {
        if let Some(url) = &self.remote {
            return format!(
                "remote {} ({how}; this host's mirror {}), base {}",
                super::remote::redact(url),
                self.dir.display(),
                short(&self.base)
            );
        }
        format!(
            "repository {} ({how}), base {}",
            self.dir.display(),
            short(&self.base)
        )
    }
}

/// Fails unless git is at least [`MIN_VERSION`].
pub(crate) fn check_version(git: &Git) -> Result<(), RepoError> {
    let v = git.version().map_err(|e| RepoError::Git(e.to_string()))?;
    if (v.0, v.1) < MIN_VERSION {
        return Err(RepoError::Git(format!(
            "git {}.{}.{} is too old: borg needs git {}.{} or newer (for `git merge-tree --write-tree`); install a newer git or put it first on PATH",
            v.0, v.1, v.2, MIN_VERSION.0, MIN_VERSION.1
        )));
    }
    Ok(())
}

/// Which rule of `git check-ref-format` a task id breaks, for ids of borg's
/// alphabet (`[A-Za-z0-9._-]`): a component may not start or end with `.`, contain
/// `..` or end with `.lock`; with an empty prefix a branch may not start with `-`
/// nor be `HEAD`.
pub fn ref_rule_broken(id: &str, bare_branch: bool) -> Option<&'static str> {
    if id.starts_with('.') {
        Some("it starts with '.'")
    } else if id.ends_with('.') {
        Some("it ends with '.'")
    } else if id.contains("..") {
        Some("it contains '..'")
    } else if id.ends_with(".lock") {
        Some("it ends with '.lock'")
    } else if bare_branch && id.starts_with('-') {
        Some("a branch cannot start with '-'")
    } else if bare_branch && id == "HEAD" {
        Some("a branch cannot be named HEAD")
    } else {
        None
    }
}

/// Appends `line` to a text file (created if missing), on a line of its own.
fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let old = std::fs::read(path).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if !old.is_empty() && !old.ends_with(b"\n") {
        f.write_all(b"\n")?;
    }
    writeln!(f, "{line}")
}

/// The first line of an error's git message.
pub(crate) fn first_line(e: &GitError) -> String {
    match e {
        GitError::Failed { stderr, .. } => stderr.lines().next().unwrap_or("").trim().to_string(),
        other => other.to_string(),
    }
}
