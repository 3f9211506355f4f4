//! Many writers on one store file: threads with their own connections, and separate
//! processes killed with SIGKILL mid-run. The checks are on what ended up in the file:
//! every task finished exactly once, no (task, fence) claimed twice, dependencies
//! finished before their dependents were claimed (by event id), integrity ok, and no
//! finish that a worker saw committed is missing after a kill.
//!
//! Latency figures are printed (run with `--nocapture`), never asserted.

mod store_util;

use borg::outcome::Status;
use borg::store::sqlite::SqliteStore;
use borg::store::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store_util::*;

/// Env var that turns `worker_entry` into a worker process on the given store.
const WORKER_ENV: &str = "BORG_STORE_TEST_WORKER";

/// `n` tasks, each depending on up to 3 random earlier ones, random priority, two roles.
fn random_dag(n: usize, seed: u64) -> Vec<NewTask> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let ndeps = if i == 0 {
                0
            } else {
                rng.gen_range(0..=3.min(i))
            };
            let deps: HashSet<usize> = (0..ndeps).map(|_| rng.gen_range(0..i)).collect();
            let deps: Vec<String> = deps.into_iter().map(|d| format!("t{d:05}")).collect();
            let dep_refs: Vec<&str> = deps.iter().map(String::as_str).collect();
            let role = if rng.gen_bool(0.3) { "tester" } else { "dev" };
            let mut t = nt(
                &format!("t{i:05}"),
                role,
                rng.gen_range(0..3),
                i as i64,
                &dep_refs,
            );
            t.max_attempts = 1000;
            t
        })
        .collect()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(label: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{label}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        pct(&v, 0.5).as_secs_f64() * 1e3,
        pct(&v, 0.9).as_secs_f64() * 1e3,
        pct(&v, 0.99).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

/// What the threads measured.
#[derive(Default)]
struct Measured {
    claim: Vec<Duration>,
    finish: Vec<Duration>,
    both: Vec<Duration>,
    claims: Vec<(String, i64)>,
}

/// Runs `threads` workers, each with its own `SqliteStore` on `path`, until `target`
/// tasks succeeded. 10 % of attempts are parked (Retry, not counted) to exercise the
/// way back to pending. `limit`, if set, stops after that many successes.
fn run_threads(path: &Path, threads: usize, target: usize, work: Duration) -> Measured {
    let done = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Measured::default()));
    let handles: Vec<_> = (0..threads)
        .map(|w| {
            let (path, done, out) = (path.to_path_buf(), done.clone(), out.clone());
            std::thread::spawn(move || {
                let s = SqliteStore::open(&path).unwrap();
                let roles: &[&str] = match w % 4 {
                    0 => &["dev"],
                    1 => &["tester"],
                    _ => &["dev", "tester"],
                };
                let owner = format!("thread-{w}");
                let mut rng = StdRng::seed_from_u64(w as u64);
                let mut mine = Measured::default();
                while done.load(Ordering::SeqCst) < target {
                    let t0 = Instant::now();
                    let Some(c) = s.claim_next(&req(&owner, roles, 1_000)).unwrap() else {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let claim_t = t0.elapsed();
                    assert!(roles.contains(&c.task.role.as_str()), "role filter");
                    mine.claims.push((c.task.id.clone(), c.token.fence));
                    s.start_attempt(&c.token, &start(&owner, 100 + w as i64, 1_000))
                        .unwrap();
                    std::thread::sleep(work);
                    let t1 = Instant::now();
                    if rng.gen_bool(0.1) {
                        let f = fin_retry(Status::RateLimited, 0, false, 1_000);
                        s.finish_attempt(&c.token, &f).unwrap();
                    } else {
                        s.finish_attempt(&c.token, &ok(1_000)).unwrap();
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    let fin_t = t1.elapsed();
                    mine.claim.push(claim_t);
                    mine.finish.push(fin_t);
                    mine.both.push(claim_t + fin_t);
                }
                let mut o = out.lock().unwrap();
                o.claim.extend(mine.claim);
                o.finish.extend(mine.finish);
                o.both.extend(mine.both);
                o.claims.extend(mine.claims);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    Arc::try_unwrap(out).ok().unwrap().into_inner().unwrap()
}

/// The invariants every run must keep, checked from the tables and the event log.
fn check_store(s: &SqliteStore, list: &[NewTask]) {
    let tasks = s.tasks().unwrap();
    assert_eq!(tasks.len(), list.len());
    for t in &tasks {
        assert_eq!(t.status, Status::Succeeded, "{} not finished", t.id);
        assert_eq!(t.owner, None);
    }
    let events = s.events_since(0, usize::MAX).unwrap();
    let mut claimed: HashMap<String, Vec<i64>> = HashMap::new(); // task → claimed event ids
    let mut seen_claims = HashSet::new();
    let mut succeeded: HashMap<String, i64> = HashMap::new(); // task → succeeded event id
    for e in &events {
        let task = e.task.clone().unwrap_or_default();
        match e.kind.as_str() {
            "claimed" => {
                assert!(
                    seen_claims.insert((task.clone(), e.fence)),
                    "({task}, {:?}) claimed twice",
                    e.fence
                );
                claimed.entry(task).or_default().push(e.id);
            }
            "succeeded" => assert!(
                succeeded.insert(task.clone(), e.id).is_none(),
                "{task} succeeded twice"
            ),
            _ => {}
        }
    }
    assert_eq!(
        succeeded.len(),
        list.len(),
        "every task succeeded exactly once"
    );
    for t in list {
        for d in &t.depends_on {
            let dep_done = succeeded[d];
            for c in &claimed[&t.id] {
                assert!(
                    dep_done < *c,
                    "{} claimed (event {c}) before its dependency {d} succeeded (event {dep_done})",
                    t.id
                );
            }
        }
    }
    // attempts agree with claims: one row per started claim, fences distinct
    for t in &tasks {
        let att = s.attempts(&t.id).unwrap();
        let fences: HashSet<i64> = att.iter().map(|a| a.fence).collect();
        assert_eq!(fences.len(), att.len());
        assert_eq!(
            att.iter().filter(|a| a.status == Status::Succeeded).count(),
            1,
            "{}",
            t.id
        );
    }
    assert_eq!(s.integrity_check().unwrap(), Vec::<String>::new());
}

/// A store file in a temp dir (the dir must outlive its use) holding a random DAG of
/// `n` tasks, synced at 0 ms; the dir, the file and the list.
fn dag_store(n: usize, seed: u64) -> (tempfile::TempDir, PathBuf, Vec<NewTask>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("borg.db");
    let list = random_dag(n, seed);
    SqliteStore::open(&path)
        .unwrap()
        .sync_tasks(&list, 0)
        .unwrap();
    (dir, path, list)
}

#[test]
fn eight_threads_finish_500_tasks_exactly_once() {
    let (_dir, path, list) = dag_store(500, 7);
    let t0 = Instant::now();
    let m = run_threads(&path, 8, list.len(), Duration::ZERO);
    let wall = t0.elapsed();
    let unique: HashSet<&(String, i64)> = m.claims.iter().collect();
    assert_eq!(
        unique.len(),
        m.claims.len(),
        "a (task, fence) was handed out twice"
    );
    println!(
        "500 tasks, 8 threads, {} claims, {:.2} s wall",
        m.claims.len(),
        wall.as_secs_f64()
    );
    report("claim", m.claim);
    report("finish", m.finish);
    report("claim+finish", m.both);
    check_store(&SqliteStore::open(&path).unwrap(), &list);
}

/// Where the latency benches put their database: `BORG_BENCH_DIR` (e.g. /dev/shm to
/// take the disk's fsync out of the figures), else cargo's target tmp dir (a real disk).
fn bench_dir() -> tempfile::TempDir {
    match std::env::var("BORG_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
    }
}

/// Latency with 10 000 tasks in the table (8 threads, one connection each, 2 000 tasks
/// run back to back, then 1 000 more with 50 ms of "work" per claim). Slow with synchronous=FULL (every commit is an fsync), so not run by default:
/// `cargo test --release --test store_concurrency -- --ignored --nocapture`.
#[test]
#[ignore]
fn latency_with_10k_tasks() {
    let dir = bench_dir();
    let path = dir.path().join("borg.db");
    let list = random_dag(10_000, 11);
    let s = SqliteStore::open(&path).unwrap();
    let t0 = Instant::now();
    s.sync_tasks(&list, 0).unwrap();
    println!(
        "sync of 10 000 tasks: {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    // a single claim+finish with nothing else going on
    let mut single = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let c = claim(&s, &req("solo", &["dev", "tester"], 1_000));
        s.finish_attempt(&c.token, &ok(1_000)).unwrap();
        single.push(t.elapsed());
    }
    report("1 thread claim+finish (10k table)", single);
    // saturated: no work between claim and finish, the write lock is never free
    let m = run_threads(&path, 8, 2_000, Duration::ZERO);
    report("8 threads, no work: claim (10k table)", m.claim);
    report("8 threads, no work: finish (10k table)", m.finish);
    report("8 threads, no work: claim+finish (10k table)", m.both);
    // closer to borg: each claim is held for a while (an agent runs for minutes; 50 ms
    // here) so the lock is contended but not saturated
    let m = run_threads(&path, 8, 1_000, Duration::from_millis(50));
    report("8 threads, 50 ms work: claim (10k table)", m.claim);
    report("8 threads, 50 ms work: finish (10k table)", m.finish);
    report("8 threads, 50 ms work: claim+finish (10k table)", m.both);
}

/// Worker process body: does nothing unless started by `sigkill_loses_no_committed_finish`.
/// Prints `FINISHED <task> <fence>` after each finish that returned Ok (= committed).
#[test]
fn worker_entry() {
    let Ok(path) = std::env::var(WORKER_ENV) else {
        return;
    };
    let owner = std::env::var("BORG_STORE_TEST_OWNER").unwrap();
    let s = SqliteStore::open(Path::new(&path)).unwrap();
    let mut out = std::io::stdout();
    let mut idle_since = Instant::now();
    loop {
        match s
            .claim_next(&req(&owner, &["dev", "tester"], 1_000))
            .unwrap()
        {
            Some(c) => {
                s.start_attempt(&c.token, &start("w", std::process::id() as i64, 1_000))
                    .unwrap();
                s.finish_attempt(&c.token, &ok(1_000)).unwrap();
                writeln!(out, "FINISHED {} {}", c.task.id, c.token.fence).unwrap();
                out.flush().unwrap();
                idle_since = Instant::now();
            }
            None if idle_since.elapsed() > Duration::from_secs(3) => return,
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

#[test]
fn sigkill_loses_no_committed_finish() {
    let (_dir, path, list) = dag_store(400, 3);
    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(99);
    let mut printed: Vec<(String, i64)> = Vec::new();
    for round in 0..3 {
        // three worker processes on one file, killed at a random moment
        let mut children = Vec::new();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        for k in 0..3 {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "worker_entry",
                    "--nocapture",
                    "--test-threads=1",
                    "-q",
                ])
                .env(WORKER_ENV, &path)
                .env("BORG_STORE_TEST_OWNER", format!("proc-{round}-{k}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let lines = lines.clone();
            let reader = std::thread::spawn(move || {
                for l in BufReader::new(stdout).lines() {
                    let Ok(l) = l else { break };
                    lines.lock().unwrap().push(l);
                }
            });
            children.push((child, reader));
        }
        // wait until the workers are under way (process start is slow on a loaded
        // machine), then let them run a random while longer
        let t0 = Instant::now();
        while lines.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..250)));
        for (child, _) in children.iter_mut() {
            // SIGKILL; a worker that already ran out of tasks and exited is fine too
            let _ = child.kill();
        }
        for (mut child, reader) in children {
            child.wait().unwrap();
            reader.join().unwrap();
        }
        let round_lines: Vec<(String, i64)> = lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("FINISHED "))
            .map(|l| {
                let (t, f) = l.split_once(' ').unwrap();
                (t.to_string(), f.parse().unwrap())
            })
            .collect();
        println!(
            "round {round}: {} finishes printed before SIGKILL",
            round_lines.len()
        );
        printed.extend(round_lines);

        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(
            s.integrity_check().unwrap(),
            Vec::<String>::new(),
            "round {round}"
        );
        for (task, fence) in &printed {
            let t = s.task(task).unwrap().unwrap();
            assert_eq!(
                t.status,
                Status::Succeeded,
                "{task} was printed finished but is {}",
                t.status
            );
            let a = s.attempts(task).unwrap();
            assert!(
                a.iter()
                    .any(|a| a.fence == *fence && a.status == Status::Succeeded),
                "{task}/{fence} missing"
            );
        }
        // the dead processes are provably gone: hand their claims back at once
        for k in 0..3 {
            s.release_owner(&format!("proc-{round}-{k}"), 2_000)
                .unwrap();
        }
        assert!(s.running_attempts().unwrap().is_empty());
    }
    assert!(!printed.is_empty(), "the workers never got going");
    // finish the rest with threads and check the whole history
    let s = SqliteStore::open(&path).unwrap();
    let left = s
        .tasks()
        .unwrap()
        .iter()
        .filter(|t| t.status != Status::Succeeded)
        .count();
    run_threads(&path, 4, left, Duration::ZERO);
    check_store(&s, &list);
}

/// Single-thread claim cost as a 10 000-task table drains (how much the scan over
/// blocked tasks grows). `cargo test --release --test store_concurrency -- --ignored --nocapture`.
#[test]
#[ignore]
fn claim_cost_as_10k_table_drains() {
    let dir = bench_dir();
    let path = dir.path().join("borg.db");
    let list = random_dag(10_000, 11);
    let s = SqliteStore::open(&path).unwrap();
    s.sync_tasks(&list, 0).unwrap();
    for chunk in 0..10 {
        let mut claims = Vec::new();
        let mut finishes = Vec::new();
        for _ in 0..1000 {
            let t = Instant::now();
            let c = claim(&s, &req("solo", &["dev", "tester"], 1_000));
            claims.push(t.elapsed());
            let t = Instant::now();
            s.finish_attempt(&c.token, &ok(1_000)).unwrap();
            finishes.push(t.elapsed());
        }
        report(
            &format!("tasks {}..{} claim", chunk * 1000, chunk * 1000 + 1000),
            claims,
        );
        report(
            &format!("tasks {}..{} finish", chunk * 1000, chunk * 1000 + 1000),
            finishes,
        );
    }
}
