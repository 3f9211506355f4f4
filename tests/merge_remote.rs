//! The merge queue on a shared remote (`--repo file://…`): `borg merge` works in
//! the host's mirror and pushes each advance of the target with a lease on the value
//! it started from. Someone moving the target between the queue's read and its push
//! (a `pre-receive` hook on the remote, the narrowest window there is) gets their
//! commit kept: the push is refused, the queue reads the target again and lands every
//! task once on top of it, never forcing. A push the remote refuses for another
//! reason stops the queue with a message saying so, the target as it was.
//!
//! Task ids carry a per-test suffix: other tests scan processes by `BORG_TASK_ID`.

mod common;
use common::git::{git, Repo};
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A bare remote holding one commit on `main`; its `file://` URL.
fn bare_remote(sb: &Sandbox) -> (PathBuf, String) {
    let src = Repo::init(&sb.path().join("src"), &[("README.md", "shared\n")]);
    let remote = sb.path().join("remote.git");
    let (s, r) = (src.dir.to_str().unwrap(), remote.to_str().unwrap());
    git(sb.path(), &["clone", "-q", "--bare", s, r]);
    let url = format!("file://{}", remote.display());
    (remote, url)
}

/// Five tasks: a chain of three and two on their own, each writing its own file.
fn tasks(sfx: &str) -> (String, Vec<String>) {
    let ids: Vec<String> = (0..5).map(|i| format!("m{i}-{sfx}")).collect();
    let mut out = String::new();
    for (i, t) in ids.iter().enumerate() {
        let dep = match i {
            1 | 2 => format!("\"{}\"", ids[i - 1]),
            _ => String::new(),
        };
        out.push_str(&format!(
            "[[task]]\nid = \"{t}\"\ndepends_on = [{dep}]\nprompt = '''\n#fake write out/{i}.txt \"done {i}\\n\"\n#fake result \"wrote {i}\"\n'''\n\n"
        ));
    }
    (out, ids)
}

/// Runs the list through the remote; every task succeeds with its branch there.
fn run_list(sb: &Sandbox, url: &str, remote: &Path, sfx: &str) -> Vec<String> {
    let (list, ids) = tasks(sfx);
    let (out, rep) = sb.run_json(&list, &["--repo", url]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(rep["totals"]["succeeded"], ids.len(), "{rep}");
    let refs = git(
        remote,
        &["for-each-ref", "--format=%(refname)", "refs/heads/borg/"],
    );
    for t in &ids {
        assert!(
            refs.contains(&format!("refs/heads/borg/{t}\n")),
            "{t}: {refs}"
        );
    }
    ids
}

/// A `pre-receive` hook on the remote running `body` for each update of a merge
/// queue's target (`$old $new $ref` set).
fn hook(remote: &Path, body: &str) {
    let text = format!(
        "#!/bin/sh\nzero=0000000000000000000000000000000000000000\nwhile read old new ref; do\n  case \"$ref\" in refs/heads/borg/integration/*) ;; *) continue ;; esac\n{body}\ndone\nexit 0\n"
    );
    let p = remote.join("hooks/pre-receive");
    std::fs::write(&p, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The first-parent history of `tip` after `base`, as (commit, `Borg-Task`).
fn first_parents(remote: &Path, base: &str, tip: &str) -> Vec<(String, String)> {
    let fmt = "--format=%H %(trailers:key=Borg-Task,valueonly,separator=%x2c)";
    let range = format!("{base}..{tip}");
    git(remote, &["log", "--first-parent", "--reverse", fmt, &range])
        .lines()
        .map(|l| {
            let (c, t) = l.split_once(' ').unwrap_or((l, ""));
            (c.to_string(), t.trim().to_string())
        })
        .collect()
}

#[test]
fn a_target_moved_under_the_queue_is_read_again_and_kept() {
    let sb = Sandbox::new();
    let sfx = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let (remote, url) = bare_remote(&sb);
    let base = git(&remote, &["rev-parse", "refs/heads/main"])
        .trim()
        .to_string();
    let ids = run_list(&sb, &url, &remote, sfx);
    // Once, when the queue first advances the target: someone else moves it first.
    let mark = sb.path().join("moved");
    hook(
        &remote,
        &format!(
            "  [ \"$old\" = \"$zero\" ] && continue\n  [ -e {m} ] && continue\n  touch {m}\n  unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n  export GIT_AUTHOR_NAME=someone GIT_AUTHOR_EMAIL=someone@example.com GIT_COMMITTER_NAME=someone GIT_COMMITTER_EMAIL=someone@example.com\n  c=$(echo \"someone else's commit\" | git commit-tree -p \"$old\" \"$old^{{tree}}\")\n  git update-ref \"$ref\" \"$c\" \"$old\" || exit 1\n  echo \"$c\" > {m}",
            m = mark.display()
        ),
    );
    let out = sb.borg(&["merge", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep = json_of(&out);
    let theirs = std::fs::read_to_string(&mark).expect("the hook moved the target");
    let theirs = theirs.trim();
    assert!(!theirs.is_empty(), "the hook moved the target");
    let target = rep["target"].as_str().expect("target");
    let tip = git(&remote, &["rev-parse", &format!("refs/heads/{target}")]);
    let path = first_parents(&remote, &base, tip.trim());
    // Their commit is kept, first; every task lands once after it, a task after the
    // one it depends on.
    assert_eq!(path.first().map(|p| p.0.as_str()), Some(theirs), "{path:?}");
    let mut at = BTreeMap::new();
    for (k, (_, t)) in path.iter().enumerate().skip(1) {
        assert!(
            at.insert(t.clone(), k).is_none(),
            "{t} landed twice: {path:?}"
        );
    }
    let want: Vec<&String> = ids.iter().collect();
    assert_eq!(at.keys().collect::<Vec<_>>(), {
        let mut w = want.clone();
        w.sort();
        w
    });
    assert!(
        at[&ids[0]] < at[&ids[1]] && at[&ids[1]] < at[&ids[2]],
        "{path:?}"
    );
    for i in 0..ids.len() {
        let shown = git(&remote, &["show", &format!("{}:out/{i}.txt", tip.trim())]);
        assert_eq!(shown, format!("done {i}\n"));
    }
    assert_eq!(
        rep["landed"].as_array().map(Vec::len),
        Some(ids.len()),
        "{rep}"
    );
    // Run again: nothing lands twice, the target stays.
    let again = sb.borg(&["merge", "--json"]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let now = git(&remote, &["rev-parse", &format!("refs/heads/{target}")]);
    assert_eq!(now, tip);
}

#[test]
fn a_push_the_remote_refuses_stops_the_queue_and_says_so() {
    let sb = Sandbox::new();
    let sfx = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let (remote, url) = bare_remote(&sb);
    let base = git(&remote, &["rev-parse", "refs/heads/main"])
        .trim()
        .to_string();
    run_list(&sb, &url, &remote, sfx);
    // The target may be created, never advanced.
    hook(
        &remote,
        "  [ \"$old\" = \"$zero\" ] && continue\n  echo \"advancing $ref is not allowed here\" >&2\n  exit 1",
    );
    let out = sb.borg(&["merge"]).output().unwrap();
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the remote refused the merge queue's push"),
        "{err}"
    );
    let targets = git(
        &remote,
        &[
            "for-each-ref",
            "--format=%(objectname)",
            "refs/heads/borg/integration/",
        ],
    );
    assert_eq!(targets.trim(), base, "the target is where it was created");
}

#[test]
fn run_merge_on_a_remote_lands_the_work_there_through_a_gate() {
    let sb = Sandbox::new();
    // The gate runs in the integration worktree made from the host's mirror.
    sb.config("\n[merge]\nverify = [\"test -f out/0.txt\"]");
    let sfx = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let (remote, url) = bare_remote(&sb);
    let base = git(&remote, &["rev-parse", "refs/heads/main"])
        .trim()
        .to_string();
    let (list, ids) = tasks(sfx);
    let (out, rep) = sb.run_json(&list, &["--repo", &url, "--merge"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let m = &rep["merge"];
    assert_eq!(
        m["landed"].as_array().map(Vec::len),
        Some(ids.len()),
        "{rep}"
    );
    assert!(m["gate_runs"].as_i64().unwrap_or(0) >= 1, "{m}");
    let target = m["target"].as_str().expect("target");
    let tip = git(&remote, &["rev-parse", &format!("refs/heads/{target}")]);
    assert_eq!(m["end"].as_str(), Some(tip.trim()), "{m}");
    let path = first_parents(&remote, &base, tip.trim());
    let mut tasks: Vec<String> = path.iter().map(|p| p.1.clone()).collect();
    assert!(tasks.iter().all(|t| !t.is_empty()), "{path:?}");
    tasks.sort();
    assert_eq!(tasks, ids, "each task's merge commit once on the remote");
}
