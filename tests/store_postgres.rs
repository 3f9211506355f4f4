//! Opening the PostgreSQL store: migrations (once, under a lock, even when several
//! borgs start at once), refusal of a newer schema and of another program's database,
//! the errors a person gets for a wrong URL, password, database or server, reconnecting
//! after the server restarts, and the change notes of LISTEN/NOTIFY.
//!
//! They need a server: the shared one of `scripts/with-postgres.sh` or one of their own
//! (`PgServer`); without either they say so and pass, except in CI (BORG_REQUIRE_PG=1).

mod store_util;

use borg::store::postgres::{PgStore, SCHEMA_VERSION};
use borg::store::*;
use std::time::{Duration, Instant};
use store_util::pg::{self, PgDb, PgServer};
use store_util::*;

fn expect_err(url: &str) -> StoreError {
    match PgStore::open(url) {
        Ok(_) => panic!("expected an error opening {}", location::redact(url)),
        Err(e) => e,
    }
}

#[test]
fn a_fresh_database_is_migrated_once_by_concurrent_openers() {
    let Some(db) = PgDb::create() else { return };
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || PgStore::open(&url).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().expect("every opener gets the store");
    }
    assert_eq!(
        pg::query(
            &db.url,
            "SELECT value FROM borg_meta WHERE key = 'schema_version'"
        ),
        vec![SCHEMA_VERSION.to_string()]
    );
    // and it works
    let s = PgStore::open(&db.url).unwrap();
    s.sync_tasks(&[nt("a", "dev", 0, 0, &[])], 0).unwrap();
    assert_eq!(claim_id(&s, &req("o", &["dev"], 1)).as_deref(), Some("a"));
}

/// A store made by a borg before v5 (no `unmet` counts) gets them on the next open,
/// from the tasks it holds: only ready tasks are claimed, in order, and the counts
/// follow later changes.
#[test]
fn a_v4_store_gets_its_unmet_counts_on_upgrade() {
    let Some(db) = PgDb::create() else { return };
    let s = PgStore::open(&db.url).unwrap();
    s.sync_tasks(
        &[
            nt("a", "dev", 0, 0, &[]),
            nt("b", "dev", 5, 1, &["a"]),
            nt("c", "dev", 9, 2, &["a", "b", "ghost"]),
        ],
        0,
    )
    .unwrap();
    let unmet = || pg::query(&db.url, "SELECT id || '=' || unmet FROM tasks ORDER BY id");
    assert_eq!(
        unmet(),
        ["a=0", "b=1", "c=3"],
        "kept by the triggers from the sync on"
    );
    let c = s.claim_next(&req("o", &["dev"], 1)).unwrap().unwrap();
    s.finish_attempt(&c.token, &ok(2)).unwrap();
    assert_eq!(unmet(), ["a=0", "b=0", "c=2"]);
    drop(s);
    // Back to v4 as an older borg left it.
    pg::sql(
        &db.url,
        "DROP TRIGGER tasks_succeeded_on ON tasks; DROP TRIGGER tasks_succeeded_off ON tasks;
         DROP TRIGGER tasks_inserted_succeeded ON tasks; DROP TRIGGER task_deps_changed ON task_deps;
         DROP FUNCTION borg_dependents_met(); DROP FUNCTION borg_dependents_unmet();
         DROP FUNCTION borg_dep_changed(); DROP INDEX tasks_ready; ALTER TABLE tasks DROP COLUMN unmet;
         UPDATE borg_meta SET value = '4' WHERE key = 'schema_version'",
    )
    .unwrap();
    let s = PgStore::open(&db.url).unwrap();
    assert_eq!(unmet(), ["a=0", "b=0", "c=2"]);
    assert_eq!(claim_id(&s, &req("o", &["dev"], 3)).as_deref(), Some("b"));
    assert_eq!(claim_id(&s, &req("o", &["dev"], 3)), None);
    s.sync_tasks(&[nt("ghost", "dev", 0, 3, &[])], 4).unwrap();
    assert_eq!(unmet(), ["a=0", "b=0", "c=2", "ghost=0"]);
}

#[test]
fn newer_schema_is_refused() {
    let Some(db) = PgDb::create() else { return };
    drop(PgStore::open(&db.url).unwrap());
    pg::sql(
        &db.url,
        "UPDATE borg_meta SET value = '99' WHERE key = 'schema_version'",
    )
    .unwrap();
    match expect_err(&db.url) {
        StoreError::NewerSchema {
            found, supported, ..
        } => assert_eq!((found, supported), (99, SCHEMA_VERSION)),
        e => panic!("expected NewerSchema, got {e:?}"),
    }
}

#[test]
fn another_programs_database_is_refused_and_left_alone() {
    let Some(db) = PgDb::create() else { return };
    pg::sql(&db.url, "CREATE TABLE photos (id INTEGER)").unwrap();
    let e = expect_err(&db.url);
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("photos") && text.contains("not a borg database"),
        "{text}"
    );
    assert_eq!(
        pg::query(
            &db.url,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ),
        vec!["1".to_string()],
        "nothing was created"
    );
}

#[test]
fn wrong_password_missing_database_and_bad_urls_name_what_to_fix() {
    let Some(admin) = pg::admin_url() else { return };
    // The shared server checks passwords (scram) on TCP.
    let wrong = admin.replacen("borg:", "borg:not-the-password", 1);
    let wrong = if wrong == admin {
        admin.replacen("borg@", "borg:not-the-password@", 1)
    } else {
        wrong
    };
    let e = expect_err(&wrong);
    let text = e.to_string();
    assert!(matches!(e, StoreError::Refused { .. }), "{e:?}");
    assert!(text.contains("password"), "{text}");
    assert!(
        !text.contains("not-the-password"),
        "the password is never shown: {text}"
    );

    let e = expect_err(&pg::with_db(&admin, "no_such_db_for_borg"));
    let text = e.to_string();
    assert!(matches!(e, StoreError::Refused { .. }), "{e:?}");
    assert!(
        text.contains("no_such_db_for_borg") && text.contains("createdb"),
        "{text}"
    );

    let e = expect_err("postgres://borg:pw@127.0.0.1:notaport/db");
    assert!(matches!(e, StoreError::Refused { .. }), "{e:?}");
    assert!(e.to_string().contains("not a valid PostgreSQL URL"), "{e}");
    assert!(!e.to_string().contains(":pw@"), "{e}");
}

#[test]
fn an_unreachable_server_is_reported_quickly() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t0 = Instant::now();
    let e = expect_err(&format!("postgres://borg:secret@127.0.0.1:{port}/borg"));
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("secret"), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

#[test]
fn calls_survive_a_server_restart_and_report_a_long_outage() {
    let Some(mut srv) = PgServer::start() else {
        return;
    };
    let db = PgDb::create_on(&srv.admin_url());
    let s = PgStore::open_with(&db.url, Duration::from_secs(20)).unwrap();
    s.sync_tasks(&[nt("a", "dev", 0, 0, &[]), nt("b", "dev", 0, 1, &[])], 0)
        .unwrap();
    let c = claim(&s, &req("o", &["dev"], 1));
    // restart: the pooled connections die; the next call reconnects
    srv.stop();
    srv.resume();
    s.finish_attempt(&c.token, &ok(2)).unwrap();
    assert_eq!(status(&s, "a"), borg::outcome::Status::Succeeded);

    // down for longer than the retry window: the call says so, then works again
    let short = PgStore::open_with(&db.url, Duration::from_millis(500)).unwrap();
    srv.stop();
    let e = short.tasks().unwrap_err();
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e:?}");
    srv.resume();
    assert_eq!(short.tasks().unwrap().len(), 2);
    drop(db);
}

#[test]
fn changes_are_pushed_with_their_actor() {
    let Some(db) = PgDb::create() else { return };
    let a = PgStore::open(&db.url).unwrap();
    let b = PgStore::open(&db.url).unwrap();
    let mut notes = a.subscribe().expect("PostgreSQL pushes");
    // the listener says it is listening (an empty note) before anything else
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let first = tokio::time::timeout(Duration::from_secs(10), notes.recv())
            .await
            .expect("listening")
            .unwrap();
        assert_eq!(first, "");
        b.sync_tasks(&[nt("x", "dev", 0, 0, &[])], 0).unwrap();
        let t0 = Instant::now();
        let note = tokio::time::timeout(Duration::from_secs(10), notes.recv())
            .await
            .expect("a note for the change")
            .unwrap();
        assert_eq!(note, "sync", "the actor of the change");
        println!("note after {:?}", t0.elapsed());
        claim(&b, &req("owner-b", &["dev"], 1));
        let note = tokio::time::timeout(Duration::from_secs(10), notes.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(note, "owner-b");
    });
}

#[test]
fn sqlite_does_not_push() {
    let (_d, s) = fresh();
    assert!(s.subscribe().is_none());
}
