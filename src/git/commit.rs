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
    /// The commit is tried first (most attempts leave something): git refuses an
    /// empty one with exit 1, and only then is the index compared with HEAD, to tell
    /// "nothing to commit" from a failure without reading git's messages.
    pub fn commit_all(
        &self,
        repo: &Repo,
        instance: &str,
        msg: &Message,
    ) -> Result<Option<String>, GitError> {
        self.git(repo, &["add", "-A"])?;
        let (name, email) = author_of(instance);
        let cmd = self
            .cmd(repo)
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
            .stdin(msg.text().into_bytes());
        let out = cmd.run()?;
        match out.code {
            0 => Ok(Some(self.head(repo)?)),
            1 if self.nothing_staged(repo)? && !self.merging(repo) => Ok(None),
            _ => Err(cmd.failed(&out)),
        }
    }

    /// A merge is in progress (a resolve task's worktree).
    pub fn merging(&self, repo: &Repo) -> bool {
        self.cmd(repo)
            .args(["rev-parse", "-q", "--verify", "MERGE_HEAD"])
            .run()
            .is_ok_and(|o| o.code == 0)
    }

    /// The index is the same as HEAD.
    fn nothing_staged(&self, repo: &Repo) -> Result<bool, GitError> {
        let cmd = self
            .cmd(repo)
            .args(["diff", "--cached", "--quiet", "--no-ext-diff"]);
        let out = cmd.run()?;
        match out.code {
            0 => Ok(true),
            1 => Ok(false),
            _ => Err(cmd.failed(&out)),
        }
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
