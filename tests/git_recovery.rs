//! Git mode and crashes: borg SIGKILLed while an agent was writing, or between `git
//! add` and `git commit`, or while git held `index.lock`; lock contention between
//! borg's own gits. Nothing is lost, nothing leaks into the next attempt, and the
//! user's repository is untouched.

mod common;
use common::git::{busy_user_repo, git, Repo};
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CALC: &str = "def add(a, b):\n    return a + b\n";

/// A task that writes, edits and hangs on its first attempt, and finishes on the next.
fn hanging_task(id: &str) -> String {
    one(
        id,
        "#fake on-attempt 1 write partial.txt \"half written\\n\"\n#fake on-attempt 1 bash \"echo '# more' >> calc.py\"\n#fake on-attempt 1 hang\n#fake write final.txt \"done\\n\"\n#fake result \"Finished.\"",
    )
}

/// Starts borg on `tasks`, waits until the first attempt has written its files, and
/// SIGKILLs borg; waits until the attempt's processes are gone. Returns the
/// instance's folder.
fn kill_mid_attempt(sb: &Sandbox, repo: &Repo, id: &str, tasks: &str) -> PathBuf {
    let mut borg = sb.spawn_run(tasks, &["--repo", repo.dir.to_str().unwrap()]);
    let found = wait_until(Duration::from_secs(20), || {
        instance_with(sb, "partial.txt").is_some()
            && std::fs::read_to_string(
                instance_with(sb, "partial.txt")
                    .unwrap()
                    .join("project-files/calc.py"),
            )
            .is_ok_and(|t| t.contains("# more"))
    });
    assert!(found, "the first attempt never wrote its files");
    signal(&borg, nix::sys::signal::Signal::SIGKILL);
    let _ = borg.wait();
    assert!(
        wait_until(Duration::from_secs(10), || task_procs(id).is_empty()),
        "the attempt's processes outlived borg"
    );
    instance_with(sb, "partial.txt").unwrap()
}

/// The instance whose worktree has `file`.
fn instance_with(sb: &Sandbox, file: &str) -> Option<PathBuf> {
    std::fs::read_dir(sb.ws())
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.join("project-files").join(file).exists())
}

/// The worktree's own git folder.
fn git_dir(wt: &Path) -> PathBuf {
    PathBuf::from(git(wt, &["rev-parse", "--absolute-git-dir"]).trim())
}

/// Checks the end state after the resumed run: interrupted work on the attempt's
/// ref, none of it in the task's result, the user's repository untouched.
fn assert_saved_and_clean(repo: &Repo, id: &str, rep: &serde_json::Value) {
    let t = task(rep, id);
    assert_eq!(t["status"], "succeeded");
    assert_eq!(t["attempts"], 2);
    let saved = format!("refs/borg/attempts/{id}/1");
    assert!(repo.show(&saved, "partial.txt").contains("half written"));
    assert!(repo.show(&saved, "calc.py").contains("# more"));
    let subject = repo.git(&["log", "-1", "--format=%s%n%b", &saved]);
    assert!(
        subject.starts_with(&format!("{id} (interrupted)")),
        "{subject}"
    );
    assert!(subject.contains("Borg-Attempt: 1"), "{subject}");
    let branch = format!("borg/{id}");
    assert!(repo.exists_at(&branch, "final.txt"));
    assert!(
        !repo.exists_at(&branch, "partial.txt"),
        "the interrupted work leaked"
    );
    assert!(
        !repo.show(&branch, "calc.py").contains("# more"),
        "the interrupted work leaked"
    );
    repo.assert_fsck_clean();
}

#[test]
fn borg_killed_mid_attempt_then_run_again_saves_the_work_and_completes() {
    let sb = Sandbox::new();
    let id = "gr-kill-5e1";
    let repo = busy_user_repo(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let before = repo.user_state();
    let tasks = hanging_task(id);
    let inst = kill_mid_attempt(&sb, &repo, id, &tasks);
    assert!(
        inst.join("git-attempt.json").is_file(),
        "the attempt's marker"
    );
    let (out, rep) = sb.run_json(&tasks, &["--repo", repo.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let note = format!(
        "attempt 1 of {id} was interrupted; its work is saved to refs/borg/attempts/{id}/1"
    );
    assert!(stderr(&out).contains(&note), "{}", stderr(&out));
    assert_saved_and_clean(&repo, id, &rep);
    assert!(!inst.join("git-attempt.json").exists());
    assert_eq!(repo.user_state(), before);
}

#[test]
fn killed_between_add_and_commit_with_a_stale_index_lock_the_next_run_recovers() {
    let sb = Sandbox::new();
    let id = "gr-lock-77c";
    let repo = Repo::init(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let before = repo.user_state();
    let tasks = hanging_task(id);
    let inst = kill_mid_attempt(&sb, &repo, id, &tasks);
    let wt = inst.join("project-files");
    // As if borg died after `git add -A` and before `git commit`, while its git still
    // held the index lock: staged changes, and a lock whose git is gone.
    git(&wt, &["add", "-A"]);
    let lock = git_dir(&wt).join("index.lock");
    std::fs::write(&lock, "").unwrap();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(
        inst.join("git.pid"),
        format!("{pid} 12345 {}\n", borg::supervise::procs::boot_id()),
    )
    .unwrap();
    let (out, rep) = sb.run_json(&tasks, &["--repo", repo.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!lock.exists());
    assert_saved_and_clean(&repo, id, &rep);
    assert_eq!(repo.user_state(), before);
}

#[test]
fn an_index_lock_held_by_a_live_process_is_waited_for() {
    let sb = Sandbox::new();
    let id = "gr-live-3b9";
    let repo = Repo::init(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let tasks = hanging_task(id);
    let inst = kill_mid_attempt(&sb, &repo, id, &tasks);
    let lock = git_dir(&inst.join("project-files")).join("index.lock");
    // A live process holds the lock open for 2 s, then lets it go.
    let mut holder = std::process::Command::new("sh")
        .args([
            "-c",
            "exec 3<>\"$1\"; sleep 2; rm -f \"$1\"",
            "sh",
            lock.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || lock.exists()));
    let began = Instant::now();
    let file = sb.write("tasks.toml", &tasks);
    let run = sb
        .run_cmd(&file, &["--repo", repo.dir.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(lock.exists(), "borg removed a lock a live process holds");
    let out = run.wait_with_output().unwrap();
    holder.wait().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        began.elapsed() >= Duration::from_millis(1800),
        "borg did not wait for the lock"
    );
    assert_saved_and_clean(&repo, id, &json_of(&out));
}

#[test]
fn lock_contention_between_gits_is_retried_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(&dir.path().join("r"), &[("a.txt", "a\n")]);
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let r =
        borg::git::Repo::open(borg::git::Git::new(&env), &repo.dir, "borg/", "developer").unwrap();
    let lock = repo.dir.join(".git/refs/heads/borg/x.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "").unwrap();
    let l2 = lock.clone();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        std::fs::remove_file(l2).unwrap();
    });
    let began = Instant::now();
    r.set_ref("refs/heads/borg/x", &r.base, "test")
        .expect("retried until the lock went");
    assert!(began.elapsed() >= Duration::from_millis(350));
    release.join().unwrap();
    assert_eq!(repo.rev("borg/x"), r.base);
}

#[test]
fn task_ids_are_checked_like_git_check_ref_format() {
    let ids = [
        "a", ".a", "a.", "a..b", "a.lock", "a.lock.b", "-a", "a-", "_", "a_b.c-d", "lock", ".lock",
        "a.b.lock", "HEAD", "x..", "..x", "...", "a.-b", "9", "A.B", "-", "head", "x.lockx",
    ];
    let dir = tempfile::tempdir().unwrap();
    for id in ids.iter().filter(|i| borg::input::tasklist::valid_id(i)) {
        for (prefix, bare) in [("borg/", false), ("", true)] {
            let name = format!("{prefix}{id}");
            let ok = std::process::Command::new("git")
                .current_dir(dir.path())
                .args(["check-ref-format", "--branch", &name])
                .output()
                .unwrap()
                .status
                .success();
            let ours = borg::git::repo::ref_rule_broken(id, bare);
            assert_eq!(
                ok,
                ours.is_none(),
                "{name}: git says {ok}, borg says {ours:?}"
            );
        }
    }
}

#[test]
fn a_run_without_a_list_resumes_on_the_repository_the_store_recorded() {
    let sb = Sandbox::new();
    let id = "gr-nolist-c40";
    let repo = Repo::init(&sb.path().join("repo"), &[("calc.py", CALC)]);
    let tasks = hanging_task(id);
    kill_mid_attempt(&sb, &repo, id, &tasks);
    let out = sb
        .borg(&[
            "run",
            "--claude",
            fake_bin().to_str().unwrap(),
            "--json",
            "--progress",
            "none",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("(recorded in the store)"),
        "{}",
        stderr(&out)
    );
    assert_saved_and_clean(&repo, id, &json_of(&out));
}
