//! A host's mirror of the shared remote (`workspaces/.repo`): a bare repository whose
//! `origin` is the remote every host reaches. borg makes the host's worktrees from it,
//! fetches into it what a task builds on, and pushes from it; nobody edits it by hand.
//!
//! What it holds: the remote's branches as last fetched (`refs/remotes/origin/*`, borg's
//! task branches left out) and tags, for choosing a base; the run's base
//! (`refs/borg/bases/<commit>`, which borg also keeps on the remote so that every
//! host can fetch it whatever happens to the branch it came from); the task branches
//! and attempt refs this host made (`refs/heads/<prefix>*`, `refs/borg/attempts/`),
//! and the dependencies' branches it fetched (`refs/remotes/origin/<prefix>*`).

use super::remote::{redact, Expect, Update, REMOTE};
use super::{Git, GitError, Repo, RepoError};
use std::path::Path;

/// The mirror's folder name inside the workspaces folder.
pub const MIRROR_DIR: &str = ".repo";

/// The ref, locally and on the remote, that keeps a base commit reachable.
pub fn base_ref(commit: &str) -> String {
    format!("refs/borg/bases/{commit}")
}

impl Repo {
    /// Opens this host's mirror of `url` at `dir`, creating it when missing (a bare
    /// repository whose `origin` is `url`). Nothing is fetched yet: [`Repo::sync`]
    /// (choosing a base) or [`Repo::ensure_base`] (a recorded base) does that.
    pub fn mirror(
        git: Git,
        url: &str,
        dir: &Path,
        prefix: &str,
        resolver: &str,
    ) -> Result<Repo, RepoError> {
        super::repo::check_version(&git)?;
        let shown = redact(url);
        let fail = |what: &str, e: GitError| RepoError::Remote {
            url: shown.clone(),
            detail: format!("{what} {}: {e}", dir.display()),
        };
        if !dir.join("HEAD").is_file() {
            std::fs::create_dir_all(dir).map_err(|e| RepoError::Remote {
                url: shown.clone(),
                detail: format!("cannot create the mirror {}: {e}", dir.display()),
            })?;
            git.at(dir)
                .args(["init", "--bare", "--quiet", "."])
                .ok()
                .map_err(|e| fail("cannot create the mirror", e))?;
        }
        let key = format!("remote.{REMOTE}.url");
        git.at(dir)
            .args(["config", &key, url])
            .ok()
            .map_err(|e| fail("cannot configure the mirror", e))?;
        let repo = Repo {
            git,
            dir: dir.to_path_buf(),
            common_dir: dir.to_path_buf(),
            work_tree: None,
            base: String::new(),
            prefix: prefix.to_string(),
            resolver_role: resolver.to_string(),
            remote: Some(url.to_string()),
        };
        Ok(repo)
    }

    /// Fetches the remote's branches (but borg's task branches) and tags, then makes
    /// `rev` the base (a branch or tag of the remote, or any commit they contain),
    /// else the remote's `HEAD`. Checks the branch prefix against the remote's
    /// branches.
    pub fn sync(&mut self, rev: Option<&str>) -> Result<(), RepoError> {
        let url = redact(self.remote.as_deref().unwrap_or_default());
        let unreachable = |e: GitError| {
            RepoError::Remote {
            url: url.clone(),
            detail: format!(
                "cannot fetch from it ({}); check the URL, that this host can reach it (ssh keys, credentials), and that it is a git repository",
                super::repo::first_line(&e)
            ),
        }
        };
        let head = self
            .ls_remote_head()
            .map_err(unreachable)?
            .ok_or_else(|| RepoError::NoCommits(url.clone().into()))?;
        let mut specs = vec![
            (
                "refs/heads/*".to_string(),
                "refs/remotes/origin/*".to_string(),
            ),
            ("refs/tags/*".to_string(), "refs/tags/*".to_string()),
        ];
        if rev.is_none() {
            // HEAD may be detached on the remote: fetch what it names.
            specs.push(("HEAD".to_string(), "refs/borg/remote-head".to_string()));
        }
        if !self.prefix.is_empty() {
            specs.push((format!("^refs/heads/{}*", self.prefix), String::new()));
        }
        self.fetch_specs(&specs).map_err(unreachable)?;
        self.check_prefix()?;
        let Some(rev) = rev else {
            self.base = head;
            return Ok(());
        };
        let candidates = [
            format!("refs/remotes/origin/{rev}"),
            format!("refs/tags/{rev}"),
            rev.to_string(),
        ];
        for c in &candidates {
            if let Ok(oid) = self.commit_of(c) {
                self.base = oid;
                return Ok(());
            }
        }
        Err(RepoError::BadBase {
            rev: rev.to_string(),
            dir: url.into(),
            detail: "not a branch, tag or commit of the remote".into(),
        })
    }

    /// Makes `commit` (a base recorded in the store) the base, fetching it from the
    /// remote's `refs/borg/bases/<commit>` when this mirror lacks it.
    pub fn ensure_base(&mut self, commit: &str) -> Result<(), RepoError> {
        let url = redact(self.remote.as_deref().unwrap_or_default());
        let missing = |detail: String| RepoError::Remote {
            url: url.clone(),
            detail,
        };
        let lacks = |r: &Repo| {
            r.missing(&[commit.to_string()])
                .map(|m| !m.is_empty())
                .unwrap_or(true)
        };
        if lacks(self) {
            let r = base_ref(commit);
            self.fetch(&[(r.clone(), r.clone())]).map_err(|e| {
                missing(format!(
                    "the run's base {} is not there ({}): was it deleted? `borg run` records it as {r}",
                    super::short(commit),
                    super::repo::first_line(&e)
                ))
            })?;
        }
        if lacks(self) {
            return Err(missing(format!(
                "the run's base {} is not a commit of it",
                super::short(commit)
            )));
        }
        self.base = commit.to_string();
        Ok(())
    }

    /// Keeps the base on the remote (`refs/borg/bases/<base>`), so every host can
    /// fetch it, whatever becomes of the branch it came from.
    pub fn publish_base(&self) -> Result<(), RepoError> {
        let r = base_ref(&self.base);
        let pushed = self
            .push(&[Update::set(&r, &self.base, Expect::Any)])
            .map_err(|e| e.to_string());
        match pushed {
            Ok(super::remote::Pushed::Done) => Ok(()),
            Ok(refused) => Err(refused.describe()),
            Err(e) => Err(e),
        }
        .map_err(|detail| RepoError::Remote {
            url: redact(self.remote.as_deref().unwrap_or_default()),
            detail: format!(
                "cannot push the base to {r} ({detail}); borg needs to push refs/borg/* and refs/heads/{}* there",
                self.prefix
            ),
        })
    }

    /// Fetches with explicit refspecs, `^` ones (negative) included.
    fn fetch_specs(&self, specs: &[(String, String)]) -> Result<(), GitError> {
        let refspecs = specs.iter().map(|(s, d)| {
            if s.starts_with('^') {
                s.clone()
            } else {
                format!("+{s}:{d}")
            }
        });
        self.git
            .at(&self.dir)
            .args([
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-auto-gc",
                "--no-recurse-submodules",
                REMOTE,
            ])
            .args(refspecs)
            .ok()?;
        Ok(())
    }

    /// The commit the remote's `HEAD` names, None for an empty remote.
    fn ls_remote_head(&self) -> Result<Option<String>, GitError> {
        let out = self
            .git
            .at(&self.dir)
            .args(["ls-remote", REMOTE, "HEAD"])
            .ok()?;
        Ok(out
            .text()
            .lines()
            .find_map(|l| l.split_once('\t').filter(|(_, n)| *n == "HEAD"))
            .map(|(oid, _)| oid.to_string()))
    }
}
