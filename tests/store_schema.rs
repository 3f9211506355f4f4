//! Opening the SQLite store: migration of an old schema, refusal of newer or foreign
//! files, corruption, lock timeouts, several connections on one file.
//!
//! `tests/fixtures/store-v1.db` is a schema-v1 store (made with the sqlite3 CLI from the
//! v1 migration step) holding two tasks (`v1-a` succeeded, `v1-b` pending after two
//! attempts, depending on `v1-a`), one attempt, one owner, one handoff and one event.

mod store_util;

use borg::outcome::Status;
use borg::store::sqlite::{SqliteStore, SCHEMA_VERSION};
use borg::store::*;
use std::path::Path;
use std::time::{Duration, Instant};
use store_util::*;

fn user_version(path: &Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn migrates_a_v1_store_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("borg.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1.db"),
        &path,
    )
    .unwrap();
    assert_eq!(user_version(&path), 1);

    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 7);

    let tasks = s.tasks().unwrap();
    assert_eq!(tasks.len(), 2);
    let a = &tasks[0];
    assert_eq!(
        (a.id.as_str(), a.status, a.attempts, a.fence),
        ("v1-a", Status::Succeeded, 1, 1)
    );
    assert_eq!(
        a.last_record,
        Some(serde_json::json!({ "status": "succeeded" }))
    );
    let b = &tasks[1];
    assert_eq!(
        (b.id.as_str(), b.status, b.depends_on.clone()),
        ("v1-b", Status::Pending, vec!["v1-a".to_string()])
    );
    assert_eq!(
        b.counted_attempts, 2,
        "v1 counted every attempt: back-filled from attempts"
    );
    assert_eq!(b.from_handoff, None);
    let att = s.attempts("v1-a").unwrap();
    assert_eq!(
        (
            att.len(),
            att[0].start.pid,
            att[0].start.resume_session.clone()
        ),
        (1, 4242, None)
    );
    assert_eq!(s.owners().unwrap()[0].id, "old-borg");
    assert_eq!(s.handoffs(None).unwrap()[0].request.reason, "please test");
    assert_eq!(s.events_since(0, 10).unwrap()[0].kind, "created");

    // v2 features work on the migrated file
    s.set_fleet("k", &serde_json::json!(true), 1).unwrap();
    let c = claim(&s, &req("new-borg", &["tester"], 1000));
    assert_eq!(
        (c.task.id.as_str(), c.token.fence, c.attempt),
        ("v1-b", 3, 3)
    );
    drop(s);
    // reopening a current store is a no-op
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.fleet("k").unwrap(), Some(serde_json::json!(true)));
    assert!(s.integrity_check().unwrap().is_empty());
    // v4's tables work on the migrated file.
    let reg = borg::store::agents::AgentRegistration {
        id: "a".into(),
        capabilities: vec!["x".into()],
        version: None,
        token_sha256: "00".into(),
    };
    s.register_agent(&reg, 1).unwrap();
    assert_eq!(s.agent_by_token("00").unwrap().unwrap().id, "a");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("borg.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::NewerSchema {
            found,
            supported,
            path: p,
        }) => {
            assert_eq!((found, supported), (99, SCHEMA_VERSION));
            assert!(p.ends_with("borg.db"));
        }
        Err(e) => panic!("expected NewerSchema, got {e:?}"),
        Ok(_) => panic!("expected NewerSchema, got a store"),
    }
}

fn expect_corrupt(path: &Path) {
    match SqliteStore::open(path) {
        Err(StoreError::Corrupt { path: p, message }) => {
            assert!(p.ends_with("borg.db"), "{p}");
            assert!(!message.is_empty());
            // the user-facing text names the file
            let shown = StoreError::Corrupt { path: p, message }.to_string();
            assert!(shown.contains("borg.db"), "{shown}");
        }
        Err(e) => panic!("expected Corrupt, got {e:?}"),
        Ok(_) => panic!("expected Corrupt, got a store"),
    }
}

#[test]
fn a_text_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("borg.db");
    std::fs::write(&path, "this is not a database\n".repeat(200)).unwrap();
    expect_corrupt(&path);
    // and the file was left alone
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .starts_with("this is not"));
}

#[test]
fn a_damaged_database_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("borg.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        let list: Vec<NewTask> = (0..300)
            .map(|i| nt(&format!("t{i}"), "dev", 0, i, &[]))
            .collect();
        s.sync_tasks(&list, 0).unwrap();
    }
    // checkpoint everything into the main file, then scribble over a b-tree page
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        c.execute_batch("PRAGMA journal_mode=DELETE").unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4096 * 4);
    for b in &mut bytes[4096 * 2 + 8..4096 * 3] {
        *b = 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();
    expect_corrupt(&path);
}

#[test]
fn a_foreign_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("borg.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE photos (id INTEGER)")
        .unwrap();
    expect_corrupt(&path);
}

#[test]
fn a_held_write_lock_times_out_as_locked_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("borg.db");
    let s = SqliteStore::open_with(&path, Duration::from_millis(300)).unwrap();
    s.sync_tasks(&[nt("a", "dev", 0, 0, &[])], 0).unwrap();

    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("UPDATE tasks SET priority = 5", []).unwrap();

    let t0 = Instant::now();
    match s.claim_next(&req("o", &["dev"], 1)) {
        Err(StoreError::Locked { path: p, secs }) => {
            assert!(p.ends_with("borg.db"));
            assert_eq!(secs, 1, "300 ms shown rounded up");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "it waited for the busy timeout first"
    );
    // WAL: readers do not wait for the writer, and see the last committed state
    assert_eq!(s.task("a").unwrap().unwrap().priority, 0);
    // opening a current store needs no write lock; its first write waits, then fails
    let reader = SqliteStore::open_with(&path, Duration::from_millis(100)).unwrap();
    assert_eq!(reader.tasks().unwrap().len(), 1);
    assert!(matches!(
        reader.set_fleet("k", &serde_json::json!(1), 1),
        Err(StoreError::Locked { .. })
    ));
    // a store that needs migrating cannot be opened while the lock is held
    let old = dir.path().join("old.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1.db"),
        &old,
    )
    .unwrap();
    let mut holder = rusqlite::Connection::open(&old).unwrap();
    let htx = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    assert!(matches!(
        SqliteStore::open_with(&old, Duration::from_millis(100)),
        Err(StoreError::Locked { .. })
    ));
    htx.rollback().unwrap();

    tx.commit().unwrap();
    let c = claim(&s, &req("o", &["dev"], 1));
    assert_eq!(c.task.priority, 5);
}

#[test]
fn two_stores_on_one_file_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x/y/borg.db");
    let s1 = SqliteStore::open(&path).unwrap();
    let s2 = SqliteStore::open(&path).unwrap();
    assert_eq!(s1.path(), path.as_path());
    s1.sync_tasks(&[nt("a", "dev", 0, 0, &[])], 0).unwrap();
    let c = claim(&s2, &req("o2", &["dev"], 1));
    assert!(s1.claim_next(&req("o1", &["dev"], 2)).unwrap().is_none());
    s2.finish_attempt(&c.token, &ok(3)).unwrap();
    assert_eq!(status(&s1, "a"), Status::Succeeded);
    // pragmas are in force on every connection
    let c = rusqlite::Connection::open(&path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SqliteStore>();
    let (_d, s) = fresh();
    let s: std::sync::Arc<dyn Store> = std::sync::Arc::new(s);
    let h = {
        let s = s.clone();
        std::thread::spawn(move || s.sync_tasks(&[nt("a", "dev", 0, 0, &[])], 0).unwrap())
    };
    h.join().unwrap();
    assert_eq!(s.tasks().unwrap().len(), 1);
}

#[test]
fn integrity_check_reports_a_wrong_unmet_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("borg.db");
    let s = SqliteStore::open(&path).unwrap();
    s.sync_tasks(
        &[nt("a", "dev", 0, 0, &[]), nt("b", "dev", 0, 1, &["a"])],
        0,
    )
    .unwrap();
    assert!(s.integrity_check().unwrap().is_empty());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE tasks SET unmet = 0 WHERE id = 'b'")
        .unwrap();
    let problems = s.integrity_check().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("task b"), "{problems:?}");
    // the authoritative NOT EXISTS check still keeps b from running before a
    let r = req("o", &["dev"], 1);
    assert_eq!(claim_id(&s, &r).as_deref(), Some("a"));
    assert!(s.claim_next(&r).unwrap().is_none());
}
