//! The git remote hosts share: reading its refs, fetching from it, and pushing to it
//! with leases. These are the primitives of every host-to-host exchange of work, used
//! by tasks ([`super::publish`]) and meant for the merge queue (which holds its target
//! lease in the store and pushes the target with a lease):
//!
//! - [`Repo::ls_remote`]: the remote's refs matching some patterns, without fetching;
//! - [`Repo::fetch`]: named refs of the remote into named local refs (objects
//!   included); a missing remote ref is an error, so callers ask for what exists;
//! - [`Repo::missing`]: which of some commits the local repository lacks (fetch only
//!   what is needed);
//! - [`Repo::push`]: several ref updates in one **atomic** push (`git push --atomic
//!   --porcelain`), each with its [`Expect`]ation of the remote's current value: a
//!   lease (`--force-with-lease=<ref>:<expected>`; the expected value is sent as the
//!   update's old value, and the remote checks it under its ref lock, so the check
//!   and the update are one compare-and-swap), absence (create only), or nothing
//!   (forced). Either every update lands or none does; a refused push says which ref
//!   was refused and why ([`Pushed::Refused`]).
//!
//! A merge queue pushing a target `main` it verified at `old` to `new`:
//!
//! ```no_run
//! # use borg::git::{Repo, remote::{Expect, Pushed, Update}};
//! # fn f(repo: &Repo, old: &str, new: &str) -> Result<(), borg::git::GitError> {
//! let target = Update::set("refs/heads/main", new, Expect::Is(old.into()));
//! match repo.push(&[target])? {
//!     Pushed::Done => {}                     // main moved from old to new
//!     Pushed::Refused(why) => { /* main moved meanwhile: fetch, verify again */ }
//! }
//! # Ok(()) }
//! ```
//!
//! The remote is `remote.origin.url` of the repository (a local mirror, see
//! [`super::mirror`]); URLs are shown without their password.

use super::{GitError, Repo};
use std::collections::BTreeMap;

/// What a push expects the remote ref to be before it is updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Anything: the update is forced.
    Any,
    /// The ref must not exist (a create).
    Absent,
    /// The ref must point at this object (a lease).
    Is(String),
}

/// One ref update of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The remote ref (full name, `refs/...`).
    pub dst: String,
    /// The object it is set to (a local object id or ref); None deletes it.
    pub new: Option<String>,
    /// What the remote ref must be for the update to land.
    pub expect: Expect,
}

impl Update {
    /// Sets `dst` to `new` if the remote ref is as `expect`ed.
    pub fn set(dst: &str, new: &str, expect: Expect) -> Update {
        Update {
            dst: dst.to_string(),
            new: Some(new.to_string()),
            expect,
        }
    }

    /// Deletes `dst` if it still points at `old`.
    pub fn delete(dst: &str, old: &str) -> Update {
        Update {
            dst: dst.to_string(),
            new: None,
            expect: Expect::Is(old.to_string()),
        }
    }
}

/// A ref update the remote (or git, before sending) refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The remote ref.
    pub dst: String,
    /// git's reason: `stale info` (a lease did not hold), `atomic push failed`
    /// (another update of the same push was refused), `remote rejected` reasons.
    pub reason: String,
}

/// How a push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Every update landed (or there was nothing to change).
    Done,
    /// Nothing landed; the updates that were refused and why.
    Refused(Vec<Refusal>),
}

impl Pushed {
    /// One line for people: each refused ref and its reason.
    pub fn describe(&self) -> String {
        match self {
            Pushed::Done => "pushed".into(),
            Pushed::Refused(r) => r
                .iter()
                .map(|x| format!("{} ({})", x.dst, x.reason))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The remote every host reaches.
pub const REMOTE: &str = "origin";

impl Repo {
    /// The remote's URL as configured, when this repository is a mirror of one.
    pub fn remote_url(&self) -> Option<&str> {
        self.remote.as_deref()
    }

    /// The remote's refs that match `patterns` (`git ls-remote` patterns: a full ref
    /// name, or one ending in `/*`), as name → object id.
    pub fn ls_remote(&self, patterns: &[String]) -> Result<BTreeMap<String, String>, GitError> {
        let out = self
            .git
            .at(&self.dir)
            .args(["ls-remote", "--refs", REMOTE])
            .args(patterns)
            .ok()?;
        let mut refs = BTreeMap::new();
        for line in out.text().lines() {
            if let Some((oid, name)) = line.split_once('\t') {
                refs.insert(name.to_string(), oid.to_string());
            }
        }
        Ok(refs)
    }

    /// Fetches the remote refs `src` into the local refs `dst` (forced: the remote is
    /// the truth for them), with their objects. Every `src` must exist on the remote
    /// (a pattern `refs/x/*:refs/y/*` matches any number). `FETCH_HEAD` is not written,
    /// so several fetches may run at once in one repository.
    pub fn fetch(&self, specs: &[(String, String)]) -> Result<(), GitError> {
        if specs.is_empty() {
            return Ok(());
        }
        let refspecs = specs.iter().map(|(s, d)| format!("+{s}:{d}"));
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

    /// The commits of `oids` this repository does not have.
    pub fn missing(&self, oids: &[String]) -> Result<Vec<String>, GitError> {
        if oids.is_empty() {
            return Ok(Vec::new());
        }
        let input: String = oids.iter().map(|o| format!("{o}\n")).collect();
        let out = self
            .git
            .at(&self.dir)
            .args(["cat-file", "--batch-check=%(objectname) %(objecttype)"])
            .stdin(input.into_bytes())
            .ok()?;
        let text = out.text();
        Ok(oids
            .iter()
            .zip(text.lines())
            .filter(|(_, line)| !line.ends_with(" commit"))
            .map(|(o, _)| o.clone())
            .collect())
    }

    /// Pushes `updates` to the remote in one atomic push: all land or none does.
    /// A push git or the remote refused is [`Pushed::Refused`]; a remote that cannot
    /// be reached (or any other failure) is an error.
    pub fn push(&self, updates: &[Update]) -> Result<Pushed, GitError> {
        if updates.is_empty() {
            return Ok(Pushed::Done);
        }
        let mut args: Vec<String> = [
            "push",
            "--porcelain",
            "--atomic",
            "--no-verify",
            "--no-signed",
            "--no-recurse-submodules",
        ]
        .map(String::from)
        .to_vec();
        for u in updates {
            match &u.expect {
                Expect::Any => {}
                Expect::Absent => args.push(format!("--force-with-lease={}:", u.dst)),
                Expect::Is(old) => args.push(format!("--force-with-lease={}:{old}", u.dst)),
            }
        }
        args.push(REMOTE.into());
        for u in updates {
            let force = if u.expect == Expect::Any { "+" } else { "" };
            args.push(format!(
                "{force}{}:{}",
                u.new.as_deref().unwrap_or(""),
                u.dst
            ));
        }
        let cmd = self.git.at(&self.dir).args(&args);
        let out = cmd.run()?;
        let refused = refusals(&out.text());
        match (out.code, refused.is_empty()) {
            (0, _) => Ok(Pushed::Done),
            (_, false) => Ok(Pushed::Refused(refused)),
            (_, true) => Err(cmd.failed(&out)),
        }
    }
}

/// The refused updates in `git push --porcelain` output: lines
/// `!\t<src>:<dst>\t[rejected] (reason)`.
fn refusals(porcelain: &str) -> Vec<Refusal> {
    porcelain
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            if f.next()? != "!" {
                return None;
            }
            let dst = f.next()?.rsplit_once(':')?.1.to_string();
            let summary = f.next().unwrap_or("");
            let reason = match (summary.find('('), summary.rfind(')')) {
                (Some(a), Some(b)) if a < b => summary[a + 1..b].to_string(),
                _ => summary.trim_matches(['[', ']']).to_string(),
            };
            let reason = if summary.starts_with("[remote rejected]") {
                format!("remote rejected: {reason}")
            } else {
                reason
            };
            Some(Refusal { dst, reason })
        })
        .collect()
}

/// Whether a repository setting names a remote reached over a transport rather than
/// a folder of this host (the rule lives with the settings that read it).
pub use crate::input::values::is_remote_url as is_url;

/// The URL without a password (`https://user:token@host/x` → `https://user:***@host/x`).
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let auth_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..auth_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}***{}",
            &url[..scheme_end + 3],
            &rest[..colon + 1],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_folders_are_told_apart() {
        for u in [
            "ssh://git@host/repo.git",
            "https://host/x.git",
            "file:///srv/x.git",
            "git@host:team/repo.git",
            "host:repo.git",
        ] {
            assert!(is_url(u), "{u}");
        }
        for p in ["/srv/repo.git", "repo", "./a:b", "../x/y:z", ""] {
            assert!(!is_url(p), "{p}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("https://me:tok3n@host/x.git"),
            "https://me:***@host/x.git"
        );
        assert_eq!(redact("ssh://git@host/x"), "ssh://git@host/x");
        assert_eq!(redact("git@host:x"), "git@host:x");
    }

    #[test]
    fn refusals_are_read_from_porcelain_output() {
        let out = "To /r.git\n!\tabc:refs/borg/fences/t\t[rejected] (stale info)\n!\tdef:refs/heads/borg/t\t[rejected] (atomic push failed)\n=\t:refs/x\t[up to date]\nDone";
        assert_eq!(
            refusals(out),
            vec![
                Refusal {
                    dst: "refs/borg/fences/t".into(),
                    reason: "stale info".into()
                },
                Refusal {
                    dst: "refs/heads/borg/t".into(),
                    reason: "atomic push failed".into()
                }
            ]
        );
        let remote = "!\tabc:refs/heads/x\t[remote rejected] (failed to update ref)";
        assert_eq!(
            refusals(remote)[0].reason,
            "remote rejected: failed to update ref"
        );
        assert!(refusals("To x\n*\ta:refs/heads/b\t[new branch]\nDone").is_empty());
    }
}
