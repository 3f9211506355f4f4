//! Many hosts sharing work through one git remote, as users run them: a bare
//! repository (shared storage), one PostgreSQL store, `borg worker` processes with
//! workspaces and host ids of their own (each with its own mirror of the remote),
//! `borg run LIST --repo REMOTE --no-work` enqueuing and waiting, fake-claude as the
//! agent writing files. Every task must succeed exactly once with its branch on the
//! remote, containing its dependencies' work, through a SIGKILLed worker whose
//! leftovers never land.
//!
//! Task ids carry a per-test suffix: other tests scan processes by `BORG_TASK_ID`.

mod common;
#[path = "support/hosts.rs"]
mod hosts;
#[path = "support/pg.rs"]
mod pg;

use borg::outcome::Status;
use borg::store::postgres::PgStore;
use borg::store::Store;
use common::git::{git, Repo};
use common::*;
use hosts::*;
use pg::PgDb;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

/// The id of task `i`.
fn id(i: usize, sfx: &str) -> String {
    format!("g{i}-{sfx}")
}

/// The tasks task `i` depends on: chains of 10 (each on the one before it), the
/// first of a chain on the first of the previous chain.
fn deps_of(i: usize) -> Vec<usize> {
    match (i % 10, i) {
        (0, 0) => vec![],
        (0, _) => vec![i - 10],
        _ => vec![i - 1],
    }
}

/// `n` tasks, each writing its own file `out/<i>.txt` after a sleep of `ms`.
fn chains(n: usize, ms: u64, sfx: &str) -> String {
    let mut out = String::new();
    for i in 0..n {
        let deps: Vec<String> = deps_of(i)
            .iter()
            .map(|d| format!("\"{}\"", id(*d, sfx)))
            .collect();
        out.push_str(&format!(
            "[[task]]\nid = \"{}\"\ndepends_on = [{}]\nprompt = '''\ntask {i}\n#fake sleep {ms}\n#fake write out/{i}.txt \"done {i}\\n\"\n#fake result \"wrote {i}\"\n'''\n\n",
            id(i, sfx),
            deps.join(", ")
        ));
    }
    out
}

/// A bare remote holding one commit on `main`, as a team's shared repository.
fn bare_remote(sb: &Sandbox) -> PathBuf {
    let src = Repo::init(
        &sb.path().join("src"),
        &[("README.md", "shared\n"), ("out/.keep", "")],
    );
    let remote = sb.path().join("remote.git");
    git(
        sb.path(),
        &[
            "clone",
            "-q",
            "--bare",
            src.dir.to_str().unwrap(),
            remote.to_str().unwrap(),
        ],
    );
    remote
}

/// Starts `borg run LIST --repo REMOTE --no-work` (enqueue and wait), JSON report on
/// stdout.
fn enqueue(sb: &Sandbox, url: &str, remote: &Path, tasks: &str) -> Child {
    let file = sb.write("tasks.toml", tasks);
    borg_at(
        sb,
        &sb.path().join("ws-coordinator"),
        url,
        &[
            "run",
            file.to_str().unwrap(),
            "--repo",
            remote.to_str().unwrap(),
            "--no-work",
            "--json",
            "--progress",
            "plain",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start borg run --no-work")
}

/// The report of the `--no-work` run: exit 0, every task succeeded.
fn finished_report(run: Child, n: usize) -> serde_json::Value {
    let out: Output = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "borg run --no-work: {err}");
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(rep["totals"]["succeeded"], n, "{rep}");
    rep
}

/// The remote's refs, name → object.
fn remote_refs(remote: &Path) -> BTreeMap<String, String> {
    git(
        remote,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

/// A trailer of a commit of the remote.
fn trailer(remote: &Path, commit: &str, key: &str) -> Option<String> {
    let body = git(remote, &["log", "-1", "--format=%B", commit]);
    let head = format!("{key}: ");
    body.lines()
        .find_map(|l| l.strip_prefix(&head).map(|v| v.trim().to_string()))
}

/// Every task's branch is on the remote at the commit of its one succeeded attempt,
/// made by that attempt, with its dependencies' work in it; attempt refs exist on the
/// remote only for finished attempts (none for interrupted ones); each fence names the
/// claim that succeeded. Returns how many tasks were checked.
fn remote_matches_store(s: &PgStore, remote: &Path, n: usize, sfx: &str) -> usize {
    let refs = remote_refs(remote);
    let mut commits = BTreeMap::new();
    for i in 0..n {
        let t = id(i, sfx);
        let att = s.attempts(&t).unwrap();
        let ok = att
            .iter()
            .find(|a| a.status == Status::Succeeded)
            .unwrap_or_else(|| panic!("{t} has no succeeded attempt"));
        let rec = ok.record.as_ref().expect("a record");
        let commit = rec["commit"]
            .as_str()
            .unwrap_or_else(|| panic!("no commit: {rec}"))
            .to_string();
        let branch = refs.get(&format!("refs/heads/borg/{t}"));
        assert_eq!(branch, Some(&commit), "{t}: the remote's branch");
        let n_att = trailer(remote, &commit, "Borg-Attempt");
        assert_eq!(
            n_att,
            Some(ok.attempt.to_string()),
            "{t}: made by its attempt"
        );
        let fence = &refs[&format!("refs/borg/fences/{t}")];
        let held = trailer(remote, fence, "Borg-Fence");
        assert_eq!(held, Some(ok.fence.to_string()), "{t}: the fence's holder");
        for a in &att {
            let r = format!("refs/borg/attempts/{t}/{}", a.attempt);
            let finished = !matches!(a.status, Status::Running | Status::Interrupted);
            assert_eq!(refs.contains_key(&r), finished, "{r}: {}", a.status);
        }
        let shown = git(remote, &["show", &format!("{commit}:out/{i}.txt")]);
        assert_eq!(shown, format!("done {i}\n"), "{t}: its own work");
        commits.insert(i, commit);
    }
    for i in 0..n {
        for d in deps_of(i) {
            let ok = git_cmd(
                remote,
                &["merge-base", "--is-ancestor", &commits[&d], &commits[&i]],
            )
            .status()
            .unwrap()
            .success();
            assert!(
                ok,
                "{} does not contain its dependency {}",
                id(i, sfx),
                id(d, sfx)
            );
        }
    }
    let ours = refs
        .keys()
        .filter(|r| r.starts_with("refs/heads/borg/"))
        .count();
    assert_eq!(ours, n, "one branch per task on the remote");
    n
}

use common::git::git_cmd;

#[test]
fn three_workers_share_work_through_a_bare_remote_through_a_sigkill() {
    let Some(db) = PgDb::create() else { return };
    let sb = Sandbox::new();
    let sfx = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let remote = bare_remote(&sb);
    let base = git(&remote, &["rev-parse", "refs/heads/main"]);
    let n = 200;
    let run = enqueue(&sb, &db.url, &remote, &chains(n, 100, sfx));
    let s = PgStore::open(&db.url).unwrap();
    // One host names the remote; the others take it from the store, where `borg run`
    // recorded it before its tasks.
    wait_store(&s, Duration::from_secs(60), |r| !r.is_empty());
    // Someone pushes to main after the list was enqueued: the run keeps its base.
    let src = Repo {
        dir: sb.path().join("src"),
    };
    src.write("late.txt", "pushed after the enqueue\n");
    let late = src.commit_all("late");
    src.git(&["push", "-q", remote.to_str().unwrap(), "main"]);
    let w1 = Worker::start_with(&sb, &db.url, "g1", 3, &["--repo", remote.to_str().unwrap()]);
    let mut w2 = Worker::start(&sb, &db.url, "g2", 3);
    let w3 = Worker::start(&sb, &db.url, "g3", 3);
    wait_store(&s, Duration::from_secs(240), |r| succeeded(r) >= 40);
    let old_pid = w2.child.id();
    let mine = format!("borg-g2-{old_pid}-");
    let holds = wait_until(Duration::from_secs(60), || {
        s.running_attempts()
            .map(|a| a.iter().any(|a| a.owner.starts_with(&mine)))
            .unwrap_or(false)
    });
    assert!(holds, "worker g2 never ran an attempt: {}", w2.stderr());
    w2.child.kill().unwrap();
    w2.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let w2b = Worker::start(&sb, &db.url, "g2", 3);
    let rep = finished_report(run, n);
    let interrupted = exactly_once(&s, n);
    assert!(
        interrupted.iter().any(|(_, o)| o.starts_with(&mine)),
        "the killed worker held tasks that others took over: {interrupted:?}"
    );
    assert_eq!(remote_matches_store(&s, &remote, n, sfx), n);
    // The user's branch is as they left it; every task started from the recorded
    // base (the worker given --repo too), not from main as it is now.
    assert_eq!(git(&remote, &["rev-parse", "refs/heads/main"]).trim(), late);
    for (r, c) in remote_refs(&remote) {
        if r.starts_with("refs/heads/borg/") {
            let mut on_base = git_cmd(&remote, &["merge-base", "--is-ancestor", base.trim(), &c]);
            let mut on_late = git_cmd(&remote, &["merge-base", "--is-ancestor", &late, &c]);
            assert!(on_base.output().unwrap().status.success(), "{r}");
            assert!(
                !on_late.output().unwrap().status.success(),
                "{r} has main's late commit"
            );
        }
    }
    // Every host made its worktrees from a mirror of its own.
    for h in ["g1", "g2", "g3"] {
        let mirror = sb.path().join(format!("ws-{h}/.repo"));
        assert_eq!(
            git(&mirror, &["rev-parse", "--is-bare-repository"]).trim(),
            "true"
        );
        let wts = git(&mirror, &["worktree", "list", "--porcelain"]);
        let ws = sb.path().join(format!("ws-{h}"));
        assert!(
            wts.lines()
                .filter_map(|l| l.strip_prefix("worktree "))
                .skip(1)
                .all(|w| Path::new(w).starts_with(&ws)),
            "{h}: {wts}"
        );
    }
    assert_eq!(rep["tasks"].as_array().unwrap().len(), n);
    // `borg diff` on a host that ran none of it fetches the attempt's commit.
    let t = id(57, sfx);
    let o = borg_at(
        &sb,
        &sb.path().join("ws-coordinator"),
        &db.url,
        &["diff", &t, "--stat"],
    )
    .output()
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "borg diff: {}", stderr(&o));
    assert!(
        out.contains("out/57.txt") && !out.contains("out/56.txt"),
        "{out}"
    );
    for w in [w1, w2b, w3] {
        w.stop();
    }
}

#[test]
fn a_stale_host_back_from_a_pause_lands_nothing() {
    let Some(db) = PgDb::create() else { return };
    let sb = Sandbox::new();
    sb.config("lease = \"3s\"");
    let sfx = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let remote = bare_remote(&sb);
    let n = 12;
    // p1 starts before any list names the remote: it must not run a git-mode task in
    // template mode, and starts again in git mode when it sees the record.
    let paused = Worker::start(&sb, &db.url, "p1", 2);
    let s = PgStore::open(&db.url).unwrap();
    let up = wait_until(Duration::from_secs(30), || {
        s.owners().unwrap().iter().any(|o| o.host_id == "p1")
    });
    assert!(up, "p1 registered: {}", paused.stderr());
    let run = enqueue(&sb, &db.url, &remote, &chains(n, 2000, sfx));
    let mine = format!("borg-p1-{}-", paused.child.id());
    let holds = wait_until(Duration::from_secs(60), || {
        s.running_attempts()
            .map(|a| a.iter().any(|a| a.owner.starts_with(&mine)))
            .unwrap_or(false)
    });
    assert!(holds, "worker p1 never ran an attempt: {}", paused.stderr());
    // p1 freezes (a host stalled, a VM paused) while its children run on; p2 takes
    // its tasks over once the lease ran out, then p1 comes back with old claims.
    signal(&paused.child, nix::sys::signal::Signal::SIGSTOP);
    let other = Worker::start(&sb, &db.url, "p2", 2);
    let taken = wait_until(Duration::from_secs(30), || {
        s.events_since(0, usize::MAX)
            .map(|e| e.iter().any(|e| e.kind == "lease-expired"))
            .unwrap_or(false)
    });
    assert!(taken, "p2 never took p1's tasks over: {}", other.stderr());
    std::thread::sleep(Duration::from_secs(3));
    signal(&paused.child, nix::sys::signal::Signal::SIGCONT);
    finished_report(run, n);
    let interrupted = exactly_once(&s, n);
    assert!(
        interrupted.iter().any(|(_, o)| o.starts_with(&mine)),
        "p1's claims were taken over: {interrupted:?}"
    );
    assert_eq!(remote_matches_store(&s, &remote, n, sfx), n);
    let said = paused.stop();
    assert!(said.contains("starting again in git mode"), "{said}");
    other.stop();
}
