//! Git mode with a remote shared by hosts (the repository is a host's mirror of it):
//! the attempt's side of the fenced protocol of [`crate::git::publish`].
//!
//! - [`take_fence`] (in start, right after the claim): the task's fence ref on the
//!   remote moved to this claim, after confirming the claim in the store; refs of the
//!   task the store does not account for deleted;
//! - [`fetch_sources`] (in start, before the start commit is built): the commits the
//!   task builds on (its dependencies', its resolve task's, its own parked work)
//!   fetched when the mirror lacks them;
//! - [`push_resolve_start`] (in start, when the dependencies conflict): the merge so far,
//!   where the resolve task starts, pushed so any host can run it;
//! - [`push_result`] (in record, before the store records the attempt): the branch and
//!   the attempt's ref pushed, fenced; a refusal of the fence means the claim was lost.

use super::{now_ms, Attempt};
use crate::git::publish::{claim_updates, fence_ref, resolve_ref, result_updates, Held, Holder};
use crate::git::remote::{Expect, Pushed, Update};
use crate::git::{GitError, Repo};
use crate::outcome::{AttemptRecord, Status};
use crate::store::{ClaimToken, Store, StoreError, TaskRow};
use std::time::{Duration, Instant};

/// How often taking the fence is tried again when another host moved it between the
/// read and the push.
const FENCE_TRIES: u32 = 5;

/// How long a result push keeps trying a remote that cannot be reached.
const PUSH_PATIENCE: Duration = Duration::from_secs(30);

/// Why the fence could not be taken.
pub(crate) enum NotTaken {
    /// The claim is not live any more (the store said so): nothing may be pushed.
    Lost(String),
    /// The remote could not be read or written.
    Remote(String),
}

/// What the claim needs to take the fence.
pub(crate) struct Claimed<'a> {
    /// The mirror.
    pub repo: &'a Repo,
    /// The store (the authority on the claim).
    pub store: &'a dyn Store,
    /// The claim.
    pub token: &'a ClaimToken,
    /// The claimed task as it was claimed.
    pub task: &'a TaskRow,
    /// The attempt the claim runs.
    pub attempt: u32,
    /// The lease a heartbeat renews.
    pub lease: Duration,
}

impl Claimed<'_> {
    fn holder(&self) -> Holder {
        Holder {
            task: self.task.id.clone(),
            fence: self.token.fence,
            owner: self.token.owner.clone(),
            attempt: self.attempt,
        }
    }
}

/// Step 1 of the protocol: reads the task's refs on the remote, confirms the claim,
/// and moves the fence to this claim in one atomic push with the cleanup (blocking:
/// git and the store).
pub(crate) fn take_fence(c: &Claimed) -> Result<Held, NotTaken> {
    let remote = |e: GitError| NotTaken::Remote(format!("the remote: {e}"));
    let holder = c.holder();
    let mine = c
        .repo
        .fence_object(&holder, None, &format!("claimed (attempt {})", c.attempt))
        .map_err(remote)?;
    let (branch, finished) = accounted(c)?;
    for _ in 0..FENCE_TRIES {
        let seen = c.repo.task_refs(&c.task.id).map_err(remote)?;
        // After reading the fence we would replace: a stale claim stops here.
        match c.store.heartbeat(c.token, c.lease, now_ms()) {
            Ok(()) => {}
            Err(e @ StoreError::StaleClaim { .. }) => return Err(NotTaken::Lost(e.to_string())),
            Err(e) => return Err(NotTaken::Remote(format!("the store: {e}"))),
        }
        let ups = claim_updates(
            &c.task.id,
            c.repo,
            &seen,
            &mine,
            branch.as_deref(),
            &finished,
        );
        let after = branch
            .clone()
            .filter(|b| seen.branch.as_deref() == Some(b.as_str()));
        match c.repo.push(&ups).map_err(remote)? {
            Pushed::Done => {
                return Ok(Held {
                    fence: mine,
                    branch: after,
                })
            }
            Pushed::Refused(r) => {
                tracing::debug!(task = %c.task.id, "taking the fence: {}", Pushed::Refused(r).describe());
            }
        }
    }
    Err(NotTaken::Remote(format!(
        "the fence {} kept moving; another host is claiming the task too",
        fence_ref(&c.task.id)
    )))
}

/// What of the task's refs the store accounts for: the branch (the recorded result of
/// a task that succeeded before and was retried, or of one parked on a usage limit)
/// and the attempts whose results it recorded.
fn accounted(c: &Claimed) -> Result<(Option<String>, Vec<u32>), NotTaken> {
    let last = AttemptRecord::from_stored(c.task.last_record.as_ref());
    let branch = last
        .filter(|r| matches!(r.status, Some(Status::Succeeded | Status::RateLimited)))
        .and_then(|r| r.git.commit);
    let rows = c
        .store
        .attempts(&c.task.id)
        .map_err(|e| NotTaken::Remote(format!("the store: {e}")))?;
    let finished = rows
        .iter()
        .filter(|a| !matches!(a.status, Status::Running | Status::Interrupted))
        .map(|a| a.attempt as u32)
        .collect();
    Ok((branch, finished))
}

/// A commit the task builds on, and where the remote keeps it.
pub(crate) struct Source {
    /// The commit.
    pub commit: String,
    /// The remote ref that contains it.
    pub remote: String,
    /// The mirror's ref to fetch it into.
    pub local: String,
    /// Whose it is, for messages.
    pub of: String,
}

/// Fetches, in one fetch, the sources the mirror lacks; fails naming any still
/// missing (blocking).
pub(crate) fn fetch_sources(repo: &Repo, sources: &[Source]) -> Result<(), String> {
    let commits: Vec<String> = sources.iter().map(|s| s.commit.clone()).collect();
    let missing = repo.missing(&commits).map_err(|e| e.to_string())?;
    if missing.is_empty() {
        return Ok(());
    }
    let mut specs: Vec<(String, String)> = Vec::new();
    for s in sources.iter().filter(|s| missing.contains(&s.commit)) {
        let spec = (s.remote.clone(), s.local.clone());
        if !specs.contains(&spec) {
            specs.push(spec);
        }
    }
    repo.fetch(&specs)
        .map_err(|e| format!("cannot fetch what the task builds on from the remote: {e}"))?;
    let still = repo.missing(&missing).map_err(|e| e.to_string())?;
    if let Some(s) = sources.iter().find(|s| still.contains(&s.commit)) {
        return Err(format!(
            "the remote's {} does not contain {}, the recorded result of {}",
            s.remote,
            crate::git::short(&s.commit),
            s.of
        ));
    }
    Ok(())
}

/// Pushes `ours`, where the resolve task `resolve` starts, fenced by the waiting
/// task's claim (blocking).
pub(crate) fn push_resolve_start(
    c: &Claimed,
    held: &Held,
    resolve: &str,
    ours: &str,
) -> Result<(), String> {
    let what = format!("waits for {resolve}");
    let done = c
        .repo
        .fence_object(&c.holder(), Some(&held.fence), &what)
        .map_err(|e| e.to_string())?;
    let ups = vec![
        Update::set(
            &fence_ref(&c.task.id),
            &done,
            Expect::Is(held.fence.clone()),
        ),
        Update::set(&resolve_ref(resolve), ours, Expect::Any),
    ];
    match c.repo.push(&ups).map_err(|e| e.to_string())? {
        Pushed::Done => Ok(()),
        refused => Err(format!(
            "the remote refused the resolve task's start: {}",
            refused.describe()
        )),
    }
}

/// How pushing an attempt's result ended.
pub(crate) enum Published {
    /// Landed (or nothing to push).
    Done,
    /// The fence moved on: another host holds the task; nothing landed.
    Lost(String),
    /// The remote could not be reached or refused for another reason.
    Failed(String),
}

/// Step 2 of the protocol: the attempt's branch (when it succeeded, or parked with its
/// work) and attempt ref pushed with the fence's lease. Interrupted attempts keep
/// their work on this host only.
pub(crate) async fn push_result(att: &Attempt, status: Status) -> Published {
    let Some((repo, held)) = att
        .git
        .as_ref()
        .and_then(|g| g.held.clone().map(|h| (g.repo.clone(), h)))
    else {
        return Published::Done;
    };
    let r = &att.record;
    let commit = r.git.commit.clone();
    let branch = commit
        .clone()
        .filter(|_| matches!(status, Status::Succeeded | Status::RateLimited));
    let attempt = r.git.attempt_ref.as_ref().and(commit.clone());
    if status == Status::Interrupted || (branch.is_none() && attempt.is_none()) {
        return Published::Done;
    }
    let holder = Holder {
        task: att.claim.task.id.clone(),
        fence: att.claim.token.fence,
        owner: att.claim.token.owner.clone(),
        attempt: r.attempt,
    };
    let n = r.attempt;
    tokio::task::spawn_blocking(move || {
        push_blocking(
            &repo,
            &held,
            &holder,
            status,
            branch,
            attempt.map(|c| (n, c)),
        )
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn push_blocking(
    repo: &Repo,
    held: &Held,
    holder: &Holder,
    status: Status,
    branch: Option<String>,
    attempt: Option<(u32, String)>,
) -> Published {
    let what = format!("attempt {} {}", holder.attempt, status.as_str());
    let done = match repo.fence_object(holder, Some(&held.fence), &what) {
        Ok(d) => d,
        Err(e) => return Published::Failed(e.to_string()),
    };
    let ups = result_updates(
        &holder.task,
        repo,
        held,
        &done,
        branch.as_deref(),
        attempt.as_ref().map(|(n, c)| (*n, c.as_str())),
    );
    let began = Instant::now();
    let mut pause = Duration::from_millis(500);
    loop {
        let (err, refused) = match repo.push(&ups) {
            Ok(Pushed::Done) => return Published::Done,
            Ok(refused) => (refused.describe(), true),
            Err(e) => (e.to_string(), false),
        };
        // The fence says what happened: moved on to `done` (an earlier try landed),
        // someone else's (lost), or still ours (the push failed for another reason).
        match repo.task_refs(&holder.task).map(|t| t.fence) {
            Ok(Some(f)) if f == done => return Published::Done,
            Ok(f) if f.as_deref() != Some(held.fence.as_str()) => {
                return Published::Lost(format!(
                    "another host took the task over: the remote's {} moved on, so nothing of this attempt was pushed",
                    fence_ref(&holder.task)
                ))
            }
            Ok(_) if refused => {
                return Published::Failed(format!("the remote refused the push: {err}"))
            }
            _ => {}
        }
        if began.elapsed() >= PUSH_PATIENCE {
            return Published::Failed(format!("cannot push to the remote: {err}"));
        }
        tracing::warn!(task = %holder.task, "pushing the attempt's result: {err}; trying again");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    //! The fenced protocol between two hosts, each with its own mirror of one bare
    //! remote, on one store: host `a` claims, loses its lease to host `b`, and
    //! whatever `a` pushes after that never stays on the remote.

    use super::*;
    use crate::git::publish::{fence_ref, TaskRefs};
    use crate::git::Git;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Claim, ClaimRequest, NewTask};
    use std::path::Path;
    use std::process::Command;

    struct World {
        _dir: tempfile::TempDir,
        remote: std::path::PathBuf,
        a: Repo,
        b: Repo,
        store: SqliteStore,
    }

    fn sh(dir: &Path, args: &[&str]) -> String {
        let o = Command::new("git")
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "u")
            .env("GIT_AUTHOR_EMAIL", "u@x")
            .env("GIT_COMMITTER_NAME", "u")
            .env("GIT_COMMITTER_EMAIL", "u@x")
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        sh(&src, &["init", "-q", "-b", "main"]);
        std::fs::write(src.join("f.txt"), "x\n").unwrap();
        sh(&src, &["add", "-A"]);
        sh(&src, &["commit", "-qm", "initial"]);
        let remote = dir.path().join("remote.git");
        sh(dir.path(), &["clone", "-q", "--bare", "src", "remote.git"]);
        let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        let url = remote.display().to_string();
        let mirror = |h: &str| {
            let m = dir.path().join(h).join(".repo");
            let mut r = Repo::mirror(Git::new(&env), &url, &m, "borg/", "developer").unwrap();
            r.sync(None).unwrap();
            r
        };
        let (a, b) = (mirror("a"), mirror("b"));
        let store = SqliteStore::open(&dir.path().join("borg.db")).unwrap();
        World {
            _dir: dir,
            remote,
            a,
            b,
            store,
        }
    }

    fn task(store: &SqliteStore, id: &str) {
        let t = NewTask {
            id: id.into(),
            role: "developer".into(),
            priority: 0,
            order: 0,
            depends_on: vec![],
            instance: None,
            max_attempts: 3,
            spec: serde_json::json!({}),
            hash: "h".into(),
            awaits_person: false,
        };
        store.sync_tasks(&[t], now_ms() - 60_000).unwrap();
    }

    fn claim(store: &SqliteStore, owner: &str, at: i64) -> Claim {
        let r = ClaimRequest {
            owner: owner.into(),
            roles: vec!["developer".into()],
            idle_instances: vec![],
            reuse: vec![],
            only: vec![],
            scoped: false,
            lease: Duration::from_secs(1),
            now_ms: at,
        };
        store.claim_next(&r).unwrap().expect("a task to claim")
    }

    fn claimed<'a>(repo: &'a Repo, store: &'a SqliteStore, c: &'a Claim) -> Claimed<'a> {
        Claimed {
            repo,
            store,
            token: &c.token,
            task: &c.task,
            attempt: c.attempt as u32,
            lease: Duration::from_secs(1),
        }
    }

    fn holder(c: &Claim) -> Holder {
        Holder {
            task: c.task.id.clone(),
            fence: c.token.fence,
            owner: c.token.owner.clone(),
            attempt: c.attempt as u32,
        }
    }

    /// A commit of `repo` on its base: an attempt's work.
    fn work(repo: &Repo, what: &str) -> String {
        let tree = format!("{}^{{tree}}", repo.base);
        sh(
            &repo.dir,
            &["commit-tree", &tree, "-p", &repo.base, "-m", what],
        )
    }

    fn refs_of(w: &World, task: &str) -> TaskRefs {
        w.a.task_refs(task).unwrap()
    }

    /// Pushes an attempt's result as record does.
    fn publish(repo: &Repo, held: &Held, c: &Claim, commit: &str) -> Published {
        let n = c.attempt as u32;
        push_blocking(
            repo,
            held,
            &holder(c),
            Status::Succeeded,
            Some(commit.to_string()),
            Some((n, commit.to_string())),
        )
    }

    fn take(w: &World, repo: &Repo, c: &Claim) -> Held {
        match take_fence(&claimed(repo, &w.store, c)) {
            Ok(h) => h,
            Err(NotTaken::Lost(e) | NotTaken::Remote(e)) => panic!("fence not taken: {e}"),
        }
    }

    #[test]
    fn a_stale_host_pushing_after_the_takeover_is_refused_and_nothing_lands() {
        let w = world();
        task(&w.store, "t");
        let now = now_ms();
        let ca = claim(&w.store, "a", now - 5_000);
        let held_a = take(&w, &w.a, &ca);
        // a's lease (1 s) ran out long ago; b takes the task over and its fence.
        let cb = claim(&w.store, "b", now + 10_000);
        assert_eq!(cb.token.fence, ca.token.fence + 1);
        let held_b = take(&w, &w.b, &cb);
        let late = work(&w.a, "a's late work");
        match publish(&w.a, &held_a, &ca, &late) {
            Published::Lost(why) => assert!(why.contains("another host"), "{why}"),
            _ => panic!("the stale push was not refused"),
        }
        let r = refs_of(&w, "t");
        assert_eq!(
            (r.branch, r.attempts.len()),
            (None, 0),
            "nothing of a landed"
        );
        assert_eq!(r.fence.as_deref(), Some(held_b.fence.as_str()));
        // and a cannot take the fence back: the store says its claim is gone
        assert!(matches!(
            take_fence(&claimed(&w.a, &w.store, &ca)),
            Err(NotTaken::Lost(_))
        ));
        // b's own result lands
        let mine = work(&w.b, "b's work");
        assert!(matches!(
            publish(&w.b, &held_b, &cb, &mine),
            Published::Done
        ));
        let r = refs_of(&w, "t");
        assert_eq!(r.branch.as_deref(), Some(mine.as_str()));
        assert_eq!(r.attempts.get(&(cb.attempt as u32)), Some(&mine));
        let fence = sh(&w.remote, &["log", "-1", "--format=%B", &fence_ref("t")]);
        assert!(
            fence.contains(&format!("Borg-Fence: {}", cb.token.fence)),
            "{fence}"
        );
    }

    #[test]
    fn a_stale_push_that_beat_the_new_holder_is_deleted_when_it_takes_the_fence() {
        let w = world();
        task(&w.store, "u");
        let now = now_ms();
        let ca = claim(&w.store, "a", now - 5_000);
        let held_a = take(&w, &w.a, &ca);
        let cb = claim(&w.store, "b", now + 10_000);
        // a pushes in the moment between b's claim in the store and b's fence push:
        // the remote cannot know yet, so it lands...
        let late = work(&w.a, "a's late work");
        assert!(matches!(
            publish(&w.a, &held_a, &ca, &late),
            Published::Done
        ));
        assert_eq!(refs_of(&w, "u").branch.as_deref(), Some(late.as_str()));
        // ...its record is refused by the store's fence...
        assert!(matches!(
            w.store
                .heartbeat(&ca.token, Duration::from_secs(1), now_ms()),
            Err(StoreError::StaleClaim { .. })
        ));
        // ...and b's fence push deletes what the store does not account for.
        let held_b = take(&w, &w.b, &cb);
        let r = refs_of(&w, "u");
        assert_eq!(
            (r.branch, r.attempts.len()),
            (None, 0),
            "a's push was undone"
        );
        assert_eq!(r.fence, Some(held_b.fence));
    }
}
