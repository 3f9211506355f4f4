//! Real git repositories for the git-mode tests: made in a test's sandbox, driven
//! with the `git` program, and the user's state read byte for byte (status, index,
//! HEAD, stash, refs outside borg's) so a test can assert borg never touched it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A repository a test made.
pub struct Repo {
    /// Its work tree.
    pub dir: PathBuf,
}

/// Runs git in `dir` with a fixed identity and no user configuration; panics on
/// failure. Returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = git_cmd(dir, args).output().expect("run git");
    assert!(
        o.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The command `git ARGS` in `dir`, reading no global or system configuration.
pub fn git_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "User")
        .env("GIT_AUTHOR_EMAIL", "user@example.com")
        .env("GIT_COMMITTER_NAME", "User")
        .env("GIT_COMMITTER_EMAIL", "user@example.com")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .args(args);
    c
}

impl Repo {
    /// `git init` at `dir` with `files` committed on branch `main`.
    pub fn init(dir: &Path, files: &[(&str, &str)]) -> Repo {
        std::fs::create_dir_all(dir).unwrap();
        git(dir, &["init", "-q", "-b", "main"]);
        let r = Repo {
            dir: dir.to_path_buf(),
        };
        for (p, t) in files {
            r.write(p, t);
        }
        r.commit_all("initial");
        r
    }

    /// An empty repository (no commit).
    pub fn empty(dir: &Path) -> Repo {
        std::fs::create_dir_all(dir).unwrap();
        git(dir, &["init", "-q", "-b", "main"]);
        Repo {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes a file of the work tree.
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Commits everything; returns the commit.
    pub fn commit_all(&self, msg: &str) -> String {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "-m", msg]);
        self.rev("HEAD")
    }

    /// `git ARGS` here.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.dir, args)
    }

    /// The full id of a revision.
    pub fn rev(&self, rev: &str) -> String {
        self.git(&["rev-parse", "--verify", rev]).trim().to_string()
    }

    /// Whether a ref exists.
    pub fn has_ref(&self, name: &str) -> bool {
        git_cmd(&self.dir, &["rev-parse", "-q", "--verify", name])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// The content of `path` at `rev`.
    pub fn show(&self, rev: &str, path: &str) -> String {
        self.git(&["show", &format!("{rev}:{path}")])
    }

    /// Whether `path` exists at `rev`.
    pub fn exists_at(&self, rev: &str, path: &str) -> bool {
        git_cmd(&self.dir, &["cat-file", "-e", &format!("{rev}:{path}")])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Every ref and its commit, `refs/heads/borg/*` and `refs/borg/*` included.
    pub fn refs(&self) -> Vec<(String, String)> {
        self.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Branch names under `borg/`.
    pub fn borg_branches(&self) -> Vec<String> {
        let mut b: Vec<String> = self
            .refs()
            .into_iter()
            .filter_map(|(r, _)| r.strip_prefix("refs/heads/").map(String::from))
            .filter(|r| r.starts_with("borg/"))
            .collect();
        b.sort();
        b
    }

    /// What the user owns, byte for byte: status, the index file, HEAD (symbolic and
    /// resolved), the stash, every ref outside `refs/heads/borg/` and `refs/borg/`.
    pub fn user_state(&self) -> UserState {
        let index = std::fs::read(self.dir.join(".git/index")).unwrap_or_default();
        let refs = self
            .refs()
            .into_iter()
            .filter(|(r, _)| !r.starts_with("refs/heads/borg/") && !r.starts_with("refs/borg/"))
            .collect();
        UserState {
            status: self.git(&["status", "--porcelain=v1", "-z", "--untracked-files=all"]),
            index,
            head: self.git(&["symbolic-ref", "-q", "HEAD"]) + &self.rev("HEAD"),
            stash: self.git(&["stash", "list"]),
            refs,
        }
    }

    /// `git fsck` finds nothing wrong.
    pub fn assert_fsck_clean(&self) {
        let o = git_cmd(&self.dir, &["fsck", "--no-progress", "--no-dangling"])
            .output()
            .unwrap();
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && text.trim().is_empty(),
            "git fsck: {text}"
        );
    }
}

/// The parts of a repository that belong to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    /// `git status --porcelain -z`.
    pub status: String,
    /// `.git/index`, raw.
    pub index: Vec<u8>,
    /// HEAD's branch and commit.
    pub head: String,
    /// `git stash list`.
    pub stash: String,
    /// Refs outside borg's namespaces.
    pub refs: Vec<(String, String)>,
}

/// A repository with a dirty work tree and a stash: what a user has mid-work.
pub fn busy_user_repo(dir: &Path, files: &[(&str, &str)]) -> Repo {
    let r = Repo::init(dir, files);
    r.write("stashed.txt", "put aside\n");
    r.git(&["add", "stashed.txt"]);
    r.git(&["stash", "push", "-q", "-m", "user work"]);
    r.write("notes.txt", "uncommitted\n");
    r.write("staged.txt", "staged\n");
    r.git(&["add", "staged.txt"]);
    r
}
