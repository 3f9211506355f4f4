//! Recovery after borg's own death: the restart sweep kills what a dead borg left
//! (checking start time and boot id), and the death signal never fires early.

mod common;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

fn children_of(pid: i32) -> Vec<i32> {
    borg::procs::all()
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
    let fake = fake_bin();
    let args = [
        "run",
        file.to_str().unwrap(),
        "--claude",
        fake.to_str().unwrap(),
        "--progress",
        "none",
    ];
    let mut first = sb.borg(&args).spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || procs_with_env(
            "BORG_TASK_ID",
            "orphan"
        )
        .len()
            >= 2),
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
    let left = procs_with_env("BORG_TASK_ID", "orphan");
    assert!(
        left.len() >= 2,
        "expected the orphaned attempt to be alive before the sweep: {left:?}"
    );

    let out = sb
        .borg(&[&args[..], &["--json"]].concat())
        .output()
        .unwrap();
    let survivors = procs_with_env("BORG_TASK_ID", "orphan");
    for p in &survivors {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    assert!(survivors.is_empty(), "the restart sweep left {survivors:?}");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task(&rep, "orphan")["status"], "succeeded");
    assert_eq!(task(&rep, "orphan")["attempts"], 2);
    let show = sb
        .borg(&["task", "show", "orphan", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
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
    let st = borg::procs::stat(me as i32).unwrap().start_time;
    let boot = borg::procs::boot_id();
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
    borg::recovery::sweep(&[row]);
    // Still alive: this test process itself was the "reused" pid.
    assert!(borg::procs::stat(me as i32).is_some());
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
