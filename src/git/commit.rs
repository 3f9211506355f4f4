//! What an attempt left in its worktree, committed: `git add -A` (the repository's
//! `.gitignore` honoured), then one commit on the task's branch, authored by the
//! instance, committed by borg, with `--no-verify` (the repository's hooks are for
//! people), a subject from the task id and the first line of the result, and
//! `Borg-*` trailers. Commits the agent made itself stay as they are, before it.
//! Every attempt's final commit is also kept under `refs/borg/attempts/<task>/<n>`.

use super::worktree::Worktree;
use super::{GitError, Repo, BORG_EMAIL};

/// A commit message: subject and trailers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// The first line.
    pub subject: String,
    /// `Key: value` lines at the end.
    pub trailers: Vec<(String, String)>,
}

impl Message {
    /// The message as git takes it.
    pub fn text(&self) -> String {
        let mut t = format!("{}\n", one_line(&self.subject, 200));
        if !self.trailers.is_empty() {
            t.push('\n');
            for (k, v) in &self.trailers {
                t.push_str(&format!("{k}: {}\n", one_line(v, 200)));
            }
        }
        t
    }
}

/// The subject of an attempt's commit: `<task>: <first line of the result>`, with the
/// status when the attempt did not succeed.
pub fn subject(task: &str, status: Option<&str>, text: Option<&str>) -> String {
    let first = text
        .and_then(|t| t.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("");
    let head = match status {
        Some(s) => format!("{task} ({s})"),
        None => task.to_string(),
    };
    if first.is_empty() {
        head
    } else {
        format!("{head}: {}", one_line(first, 100))
    }
}

/// The name and address of an instance as a commit author.
pub fn author_of(instance: &str) -> (String, String) {
    (instance.to_string(), format!("{instance}@borg.invalid"))
}

impl Worktree {
    /// Stages everything the attempt left and commits it when there is anything to
    /// commit (a merge in progress is concluded by the commit, changes or not).
    /// Returns the commit made, None when there was nothing.
    ///
    /// Outside a merge the commit is made with plumbing (`write-tree`, `commit-tree`,
    /// `update-ref` of HEAD, which moves the branch and writes both reflogs): `git
    /// commit` would stat every file of the work tree again right after `git add -A`
    /// did, which on a large repository is most of the step's cost. No hook runs either
    /// way (`--no-verify`, and `core.hooksPath` points nowhere).
    pub fn commit_all(
        &self,
        repo: &Repo,
        instance: &str,
        msg: &Message,
    ) -> Result<Option<String>, GitError> {
        self.git(repo, &["add", "-A"])?;
        let state = self.git(
            repo,
            &["rev-parse", "--absolute-git-dir", "HEAD", "HEAD^{tree}"],
        )?;
        let text = state.text();
        let mut lines = text.lines();
        let (Some(dir), Some(head), Some(head_tree)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(GitError::Output {
                args: "rev-parse --absolute-git-dir HEAD HEAD^{tree}".into(),
                what: text.clone(),
            });
        };
        if std::path::Path::new(dir).join("MERGE_HEAD").exists() {
            return self.commit_merge(repo, instance, msg).map(Some);
        }
        let tree = self.git(repo, &["write-tree"])?.text();
        if tree == head_tree {
            return Ok(None);
        }
        let (name, email) = author_of(instance);
        let commit = self
            .cmd(repo)
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", email)
            .env("GIT_COMMITTER_EMAIL", BORG_EMAIL)
            .args(["commit-tree", &tree, "-p", head, "-F", "-"])
            .stdin(msg.text().into_bytes())
            .ok()?
            .text();
        let why = format!("commit: {}", msg.subject);
        self.git(repo, &["update-ref", "-m", &why, "HEAD", &commit, head])?;
        Ok(Some(commit))
    }

    /// Concludes a merge in progress with `git commit` (which clears the merge state).
    fn commit_merge(&self, repo: &Repo, instance: &str, msg: &Message) -> Result<String, GitError> {
        let (name, email) = author_of(instance);
        self.cmd(repo)
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", email)
            .env("GIT_COMMITTER_EMAIL", BORG_EMAIL)
            .args([
                "commit",
                "-q",
                "--no-verify",
                "--cleanup=whitespace",
                "-F",
                "-",
            ])
            .stdin(msg.text().into_bytes())
            .ok()?;
        self.head(repo)
    }

    /// A merge is in progress (a resolve task's worktree).
    pub fn merging(&self, repo: &Repo) -> bool {
        self.cmd(repo)
            .args(["rev-parse", "-q", "--verify", "MERGE_HEAD"])
            .run()
            .is_ok_and(|o| o.code == 0)
    }
}

impl Repo {
    /// `refs/borg/attempts/<task>/<n>`.
    pub fn attempt_ref(task: &str, attempt: u32) -> String {
        format!("refs/borg/attempts/{task}/{attempt}")
    }

    /// Points `name` at `commit` (created or moved).
    pub fn set_ref(&self, name: &str, commit: &str, why: &str) -> Result<(), GitError> {
        self.git
            .at(&self.dir)
            .args(["update-ref", "-m", why, name, commit])
            .ok()?;
        Ok(())
    }

    /// The commit a ref points at, None when it does not exist.
    pub fn ref_commit(&self, name: &str) -> Option<String> {
        self.commit_of(name).ok()
    }
}

/// Text on one line, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_a_subject_a_blank_line_and_trailers() {
        let m = Message {
            subject: subject("fix-add", None, Some("\nFixed add.\nMore text.")),
            trailers: vec![
                ("Borg-Task".into(), "fix-add".into()),
                ("Borg-Cost".into(), "0.0045".into()),
            ],
        };
        assert_eq!(
            m.text(),
            "fix-add: Fixed add.\n\nBorg-Task: fix-add\nBorg-Cost: 0.0045\n"
        );
        assert_eq!(subject("t", Some("failed"), None), "t (failed)");
    }
}
