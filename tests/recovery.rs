//! Recovery after borg's own death: the restart sweep kills what a dead borg left
//! (checking start time and boot id), and the death signal never fires early.

mod common;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

fn children_of(pid: i32) -> Vec<i32> {
    borg::supervise::procs::all()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .map(|p| p.pid)
        .collect()
}

#[test]
fn a_new_borg_sweeps_the_processes_of_a_dead_borg_whose_shim_died_too() {
    let sb = Sandbox::new();
    let tasks = "[[task]]\nid = \"orphan\"\nprompt = '''\n#fake first 1 grandchild-setsid\n#fake first 1 hang\n#fake result \"second time lucky\"\n'''\n";
    let file = sb.write("tasks.toml", tasks);
    let mut first = sb.fake_run(&file, &["--progress", "none"]).spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || task_procs("orphan").len() >= 2),
        "the attempt did not start"
    );
    // Kill the shim first, then borg: nothing is left to clean up the attempt's tree,
    // as after an OOM kill of both. claude and its escaped grandchild live on.
    let borg_pid = first.id() as i32;
    for shim in children_of(borg_pid) {
        let _ = kill(Pid::from_raw(shim), Signal::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(200));
    kill(Pid::from_raw(borg_pid), Signal::SIGKILL).unwrap();
    let _ = first.wait();
    std::thread::sleep(Duration::from_millis(300));
    let left = task_procs("orphan");
    assert!(
        left.len() >= 2,
        "expected the orphaned attempt to be alive before the sweep: {left:?}"
    );

    let out = sb
        .fake_run(&file, &["--progress", "none", "--json"])
        .output()
        .unwrap();
    let survivors = task_procs("orphan");
    for p in &survivors {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    assert!(survivors.is_empty(), "the restart sweep left {survivors:?}");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep = json_of(&out);
    assert_eq!(task(&rep, "orphan")["status"], "succeeded");
    assert_eq!(task(&rep, "orphan")["attempts"], 2);
    let v = sb.json(&["task", "show", "orphan", "--json"]);
    let statuses: Vec<&str> = v["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["interrupted", "succeeded"]);
}

#[test]
fn the_sweep_never_hits_a_process_whose_pid_was_reused() {
    // A recorded pid with a different start time (or boot) is not ours: same_process says no.
    let me = std::process::id() as i64;
    let st = borg::supervise::procs::stat(me as i32).unwrap().start_time;
    let boot = borg::supervise::procs::boot_id();
    let row = borg::store::AttemptRow {
        task: "t".into(),
        attempt: 1,
        fence: 1,
        owner: "gone".into(),
        start: borg::store::AttemptStart {
            pid: me,
            pgid: me,
            start_time: st + 12345,
            boot_id: boot,
            uid: String::new(),
            ..Default::default()
        },
        status: borg::outcome::Status::Interrupted,
        record: None,
        started_ms: 0,
        finished_ms: None,
    };
    borg::run::recovery::sweep(&[row]);
    // Still alive: this test process itself was the "reused" pid.
    assert!(borg::supervise::procs::stat(me as i32).is_some());
}

#[test]
fn a_child_outlives_tokios_idle_thread_retirement() {
    // The death signal follows the thread that forked; tokio retires idle blocking
    // threads after 10 s. A child running longer than that must not be killed by it.
    let sb = Sandbox::new();
    let (out, rep) = sb.run_json("[[task]]\nid = \"long\"\nprompt = '''\n#fake sleep 11500\n#fake result \"still here\"\n'''\n", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(task(&rep, "long")["status"], "succeeded");
    assert_eq!(task(&rep, "long")["result"], "still here");
}

#[test]
fn replacing_the_borg_binary_during_a_run_does_not_break_new_attempts() {
    // An upgrade (cargo install, a package manager) renames a new file over borg's path
    // while a long run goes on; later attempts must still start their shim.
    let sb = Sandbox::new();
    let copy = sb.path().join("borg-copy");
    std::fs::copy(borg_bin(), &copy).unwrap();
    let file = sb.write("tasks.toml", "[[task]]\nid = \"a\"\nprompt = \"#fake sleep 1200\"\n[[task]]\nid = \"b\"\ndepends_on = [\"a\"]\nprompt = \"x\"\n");
    let mut cmd = sb.fake_run(&file, &["--json", "--progress", "none"]);
    let cmd = cmd.stdout(std::process::Stdio::piped());
    let args: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let mut run = std::process::Command::new(&copy);
    run.current_dir(sb.path())
        .env_clear()
        .envs(envs)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null());
    let child = run.spawn().unwrap();
    assert!(wait_until(Duration::from_secs(10), || !task_procs("a").is_empty()));
    let staged = sb.path().join("borg-copy.new");
    std::fs::copy(borg_bin(), &staged).unwrap();
    std::fs::rename(&staged, &copy).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep = json_of(&out);
    assert_eq!(task(&rep, "b")["status"], "succeeded", "{rep:#}");
}
