//! Many writers on one store, on both backends (SQLite: each test's name; PostgreSQL:
//! `NAME::postgres`): threads with their own connections, and separate processes
//! killed with SIGKILL mid-run. The checks are on what ended up in the file:
//! every task finished exactly once, no (task, fence) claimed twice, dependencies
//! finished before their dependents were claimed (by event id), integrity ok, and no
//! finish that a worker saw committed is missing after a kill.
//!
//! Latency figures are printed (run with `--nocapture`), never asserted.

#[macro_use]
mod store_util;

use borg::outcome::Status;
use borg::store::location::StoreLocation;
use borg::store::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
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

/// Runs `threads` workers, each with its own store handle on `db`, until `target`
/// tasks succeeded. 10 % of attempts are parked (Retry, not counted) to exercise the
/// way back to pending.
fn run_threads(db: &TestDb, threads: usize, target: usize, work: Duration) -> Measured {
    let done = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Measured::default()));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let (done, out) = (done.clone(), out.clone());
                scope.spawn(move || {
                    let s = db.open();
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
    });
    Arc::try_unwrap(out).ok().unwrap().into_inner().unwrap()
}

/// The invariants every run must keep, checked from the tables and the event log.
fn check_store(s: &TestStore, list: &[NewTask]) {
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

/// A fresh store (the db must outlive its use) holding a random DAG of `n` tasks,
/// synced at 0 ms; the db and the list.
fn dag_store(b: &Backend, n: usize, seed: u64) -> (TestDb, Vec<NewTask>) {
    let db = b.db();
    let list = random_dag(n, seed);
    db.open().sync_tasks(&list, 0).unwrap();
    (db, list)
}

conformance! {
    fn eight_threads_finish_500_tasks_exactly_once(b) {
        let (db, list) = dag_store(b, 500, 7);
        let t0 = Instant::now();
        let m = run_threads(&db, 8, list.len(), Duration::ZERO);
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
        check_store(&db.open(), &list);
    }
}

/// Where the latency benches put their store: for SQLite `BORG_BENCH_DIR` (e.g.
/// /dev/shm to take the disk's fsync out of the figures), else cargo's target tmp dir
/// (a real disk); for PostgreSQL a fresh database.
fn bench_db(b: &Backend) -> TestDb {
    if *b == Backend::Postgres {
        return b.db();
    }
    let dir = match std::env::var("BORG_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
    };
    TestDb::sqlite_in(dir)
}

conformance! {
    /// Latency with 10 000 tasks in the table (8 threads, one connection each, 2 000 tasks
    /// run back to back, then 1 000 more with 50 ms of "work" per claim). Slow with synchronous=FULL (every commit is an fsync), so not run by default:
    /// `cargo test --release --test store_concurrency -- --ignored --nocapture`.
    #[ignore]
    fn latency_with_10k_tasks(b) {
        let db = bench_db(b);
        let list = random_dag(10_000, 11);
        let s = db.open();
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
        let m = run_threads(&db, 8, 2_000, Duration::ZERO);
        report("8 threads, no work: claim (10k table)", m.claim);
        report("8 threads, no work: finish (10k table)", m.finish);
        report("8 threads, no work: claim+finish (10k table)", m.both);
        // closer to borg: each claim is held for a while (an agent runs for minutes; 50 ms
        // here) so the lock is contended but not saturated
        let m = run_threads(&db, 8, 1_000, Duration::from_millis(50));
        report("8 threads, 50 ms work: claim (10k table)", m.claim);
        report("8 threads, 50 ms work: finish (10k table)", m.finish);
        report("8 threads, 50 ms work: claim+finish (10k table)", m.both);
    }
}

/// Worker process body: does nothing unless started by `sigkill_loses_no_committed_finish`.
/// Prints `FINISHED <task> <fence>` after each finish that returned Ok (= committed).
#[test]
fn worker_entry() {
    let Ok(path) = std::env::var(WORKER_ENV) else {
        return;
    };
    let owner = std::env::var("BORG_STORE_TEST_OWNER").unwrap();
    let s = StoreLocation::of(Path::new(&path)).open().unwrap();
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

conformance! {
    fn sigkill_loses_no_committed_finish(b) {
        let (db, list) = dag_store(b, 400, 3);
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
                    .env(WORKER_ENV, db.location())
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

            let s = db.open();
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
        let s = db.open();
        let left = s
            .tasks()
            .unwrap()
            .iter()
            .filter(|t| t.status != Status::Succeeded)
            .count();
        run_threads(&db, 4, left, Duration::ZERO);
        check_store(&s, &list);
    }
}

conformance! {
    /// Single-thread claim cost as a 10 000-task table drains (how much the scan over
    /// blocked tasks grows). `cargo test --release --test store_concurrency -- --ignored --nocapture`.
    #[ignore]
    fn claim_cost_as_10k_table_drains(b) {
        let db = bench_db(b);
        let list = random_dag(10_000, 11);
        let s = db.open();
        let t = Instant::now();
        s.sync_tasks(&list, 0).unwrap();
        println!("sync of 10 000 tasks: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
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
}

/// One claim as a worker saw it.
struct Seen {
    task: String,
    fence: i64,
    claimed_ms: i64,
    lease_ms: i64,
    /// The finish returned Ok (so it must be in the store).
    finished: bool,
}

/// Issue 17: 8 workers, 2 000 claim/finish cycles with short leases; a few workers
/// stall past their lease so others take the task over. No task is claimed twice
/// while a claim's lease lives (unless that claim finished first), no finish that
/// returned Ok is missing, every stale finish is refused.
fn leased_cycles(b: &Backend) {
    let (db, list) = dag_store(b, 1_800, 21);
    let lease = Duration::from_millis(300);
    let cycles = Arc::new(AtomicUsize::new(0));
    let seen = Mutex::new(Vec::<Seen>::new());
    std::thread::scope(|scope| {
        for w in 0..8 {
            let (db, cycles, seen) = (&db, cycles.clone(), &seen);
            scope.spawn(move || {
                let s = db.open();
                let owner = format!("w{w}");
                let mut rng = StdRng::seed_from_u64(100 + w);
                let mut idle = 0;
                while cycles.load(Ordering::SeqCst) < 2_000 && idle < 2_000 {
                    let now = borg::run::attempt::now_ms();
                    let mut r = req(&owner, &["dev", "tester"], now);
                    r.lease = lease;
                    let Some(c) = s.claim_next(&r).unwrap() else {
                        idle += 1;
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    };
                    idle = 0;
                    if rng.gen_bool(0.01) {
                        // a stall past the lease: another worker may take it over
                        std::thread::sleep(lease + Duration::from_millis(100));
                    }
                    let end = borg::run::attempt::now_ms();
                    let f = if rng.gen_bool(0.15) {
                        fin_retry(Status::Failed, 0, false, end)
                    } else {
                        ok(end)
                    };
                    let finished = match s.finish_attempt(&c.token, &f) {
                        Ok(()) => true,
                        Err(StoreError::StaleClaim { .. }) => false,
                        Err(e) => panic!("finish: {e}"),
                    };
                    cycles.fetch_add(1, Ordering::SeqCst);
                    seen.lock().unwrap().push(Seen {
                        task: c.task.id,
                        fence: c.token.fence,
                        claimed_ms: now,
                        lease_ms: lease.as_millis() as i64,
                        finished,
                    });
                }
            });
        }
    });
    let s = db.open();
    let mut seen = seen.into_inner().unwrap();
    assert!(seen.len() >= 2_000, "only {} cycles", seen.len());
    seen.sort_by(|a, b| (&a.task, a.fence).cmp(&(&b.task, b.fence)));
    let mut stale = 0;
    for pair in seen.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.task != b.task {
            continue;
        }
        assert!(
            a.fence < b.fence,
            "{} claimed twice with fence {}",
            a.task,
            a.fence
        );
        assert!(
            a.finished || b.claimed_ms > a.claimed_ms + a.lease_ms,
            "{} claimed (fence {}) while the live claim of fence {} had not finished",
            a.task,
            b.fence,
            a.fence
        );
    }
    for c in &seen {
        let att = s.attempts(&c.task).unwrap();
        let row = att.iter().find(|a| a.fence == c.fence);
        if c.finished {
            let row = row.expect("an attempt row for a finished claim");
            assert!(
                row.status == Status::Succeeded || row.status == Status::Failed,
                "{}/{}: finish returned Ok but the attempt is {}",
                c.task,
                c.fence,
                row.status
            );
        } else {
            stale += 1;
            assert!(
                row.is_none_or(|r| r.status == Status::Interrupted),
                "{}/{}: a refused finish left a trace",
                c.task,
                c.fence
            );
        }
    }
    println!(
        "{} cycles, {} stale finishes refused, {} tasks",
        seen.len(),
        stale,
        list.len()
    );
    assert_eq!(s.integrity_check().unwrap(), Vec::<String>::new());
}

conformance! {
    fn eight_workers_2000_leased_cycles_no_double_claim_no_lost_finish(b) {
        leased_cycles(b)
    }
}
