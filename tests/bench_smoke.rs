//! The claims bench of `bench/run.sh` (figure 4): p50 and p99 latency of claim +
//! complete with 8 concurrent workers on the SQLite store, durability on (WAL,
//! synchronous=FULL), each worker with its own connection as separate borgs would have.
//!
//! It runs in the normal `cargo test` with a tiny size, as a smoke test: it checks that
//! the bench works and that every task finished exactly once, never how fast.
//! `bench/run.sh claims` runs it in release mode with `BORG_BENCH_CLAIMS=4000` and
//! `BORG_BENCH_DIR` set, and reads the `BENCH claims {json}` line it prints.

#[macro_use]
mod store_util;

use borg::outcome::Status;
use borg::store::sqlite::SqliteStore;
use borg::store::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store_util::*;

const WORKERS: usize = 8;

/// Workers of the `pg` bench: 8, or `BORG_BENCH_WORKERS` (1 gives the uncontended cost).
fn pg_workers() -> usize {
    std::env::var("BORG_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(WORKERS)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[test]
fn claims_latency() {
    // borg itself: one process, one store (one connection), 8 attempts claiming and
    // completing through it.
    run("one-store", true, Duration::ZERO);
    // 8 borg processes on one store file: a connection each, SQLite's locking between them.
    run("8-connections", false, Duration::ZERO);
    // Workers that do something between claim and complete, as agents do: the store is
    // then not saturated. Reported beside the saturated figures, never instead of them.
    run("one-store-5ms-work", true, Duration::from_millis(5));
}

fn run(label: &str, shared: bool, work: Duration) {
    let n: usize = std::env::var("BORG_BENCH_CLAIMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = match std::env::var("BORG_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let path = dir.path().join("borg.db");
    let list: Vec<NewTask> = (0..n)
        .map(|i| nt(&format!("t{i:06}"), "dev", (i % 3) as i64, i as i64, &[]))
        .collect();
    SqliteStore::open(&path)
        .unwrap()
        .sync_tasks(&list, 0)
        .unwrap();

    let claimed = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::<Duration>::with_capacity(n)));
    let one = Arc::new(SqliteStore::open(&path).unwrap());
    let t0 = Instant::now();
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (path, claimed, lat) = (path.clone(), claimed.clone(), lat.clone());
            let one = one.clone();
            std::thread::spawn(move || {
                let s = if shared {
                    one
                } else {
                    Arc::new(SqliteStore::open(&path).unwrap())
                };
                let owner = format!("worker-{w}");
                let mut mine = Vec::new();
                loop {
                    let t = Instant::now();
                    let Some(c) = s.claim_next(&req(&owner, &["dev"], 1_000)).unwrap() else {
                        break;
                    };
                    let claim_t = t.elapsed();
                    claimed.fetch_add(1, Ordering::SeqCst);
                    // The child's start is recorded too (borg does it once the child runs).
                    s.start_attempt(&c.token, &start(&owner, 100 + w as i64, 1_000))
                        .unwrap();
                    std::thread::sleep(work);
                    let t = Instant::now();
                    s.finish_attempt(&c.token, &ok(1_000)).unwrap();
                    mine.push(claim_t + t.elapsed());
                }
                lat.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let wall = t0.elapsed();
    let mut v = Arc::try_unwrap(lat).unwrap().into_inner().unwrap();
    v.sort();
    assert_eq!(claimed.load(Ordering::SeqCst), n, "every task claimed once");
    let s = SqliteStore::open(&path).unwrap();
    assert!(s
        .statuses()
        .unwrap()
        .iter()
        .all(|(_, st)| *st == Status::Succeeded));
    println!(
        "BENCH claims {}",
        serde_json::json!({
            "mode": label,
            "n": n,
            "workers": WORKERS,
            "p50_ms": pct(&v, 0.5),
            "p90_ms": pct(&v, 0.9),
            "p99_ms": pct(&v, 0.99),
            "max_ms": pct(&v, 1.0),
            "per_s": n as f64 / wall.as_secs_f64(),
        })
    );
}

/// The `pg` bench of `bench/run.sh` (issue 17): claim + complete with 8 workers, timed
/// as figure 4 times it (the child's start recorded between, not counted) and as the
/// whole cycle with the start; each worker with its own store handle (as 8 hosts would
/// have) and all 8 on one shared handle (one borg, 8 attempts); SQLite and PostgreSQL
/// side by side in one run. The PostgreSQL half needs `BORG_TEST_PG_URL` (a fresh
/// database is made for each mode). Prints `BENCH pg {json}` lines; asserts only that
/// every task finished once.
#[test]
fn pg_claims_latency() {
    let sqlite = Backend::Sqlite.db();
    run_on("sqlite-8-handles", &sqlite, false);
    run_on("sqlite-one-handle", &Backend::Sqlite.db(), true);
    if pg::admin_url().is_none() {
        return;
    }
    let one = Backend::Postgres.db();
    run_on("postgres-8-handles", &one, false);
    let two = Backend::Postgres.db();
    run_on("postgres-one-handle", &two, true);
}

/// One mode of `pg_claims_latency` on `db`.
fn run_on(label: &str, db: &TestDb, shared: bool) {
    let n: usize = std::env::var("BORG_BENCH_CLAIMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let list: Vec<NewTask> = (0..n)
        .map(|i| nt(&format!("t{i:06}"), "dev", (i % 3) as i64, i as i64, &[]))
        .collect();
    db.open().sync_tasks(&list, 0).unwrap();
    let one = Arc::new(db.open());
    // (claim + finish, as figure 4 times it; claim + start + finish, the whole cycle)
    let lat = Mutex::new(Vec::<(Duration, Duration)>::with_capacity(n));
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..pg_workers() {
            let (one, lat) = (one.clone(), &lat);
            scope.spawn(move || {
                let s = if shared { one } else { Arc::new(db.open()) };
                let owner = format!("worker-{w}");
                let mut mine = Vec::new();
                loop {
                    let t = Instant::now();
                    let Some(c) = s.claim_next(&req(&owner, &["dev"], 1_000)).unwrap() else {
                        break;
                    };
                    let claimed = t.elapsed();
                    s.start_attempt(&c.token, &start(&owner, 100 + w as i64, 1_000))
                        .unwrap();
                    let f = Instant::now();
                    s.finish_attempt(&c.token, &ok(1_000)).unwrap();
                    mine.push((claimed + f.elapsed(), t.elapsed()));
                }
                lat.lock().unwrap().extend(mine);
            });
        }
    });
    let wall = t0.elapsed();
    let both = lat.into_inner().unwrap();
    let mut v: Vec<Duration> = both.iter().map(|b| b.0).collect();
    let mut cycle: Vec<Duration> = both.iter().map(|b| b.1).collect();
    v.sort();
    cycle.sort();
    assert_eq!(v.len(), n, "every task claimed once");
    assert!(db
        .open()
        .statuses()
        .unwrap()
        .iter()
        .all(|(_, st)| *st == Status::Succeeded));
    println!(
        "BENCH pg {}",
        serde_json::json!({
            "mode": label,
            "n": n,
            "workers": pg_workers(),
            "p50_ms": pct(&v, 0.5),
            "p99_ms": pct(&v, 0.99),
            "max_ms": pct(&v, 1.0),
            "cycle_p50_ms": pct(&cycle, 0.5),
            "cycle_p99_ms": pct(&cycle, 0.99),
            "per_s": n as f64 / wall.as_secs_f64(),
        })
    );
}
