//! The store's git-mode capability (`GitStore`): a claimed task handing its claim back
//! to wait for a new resolve task, fenced, in one transaction. Each runs on SQLite and
//! on PostgreSQL (`conformance!`; the PostgreSQL one needs a server, see
//! `tests/store_postgres.rs`).

mod store_util;

use borg::outcome::Status;
use borg::store::*;
use store_util::*;

conformance! {
    fn a_claimed_task_waits_for_a_new_task_and_runs_once_it_succeeded(b) {
    let (_d, st) = b.fresh();
    let s = &st;
    s.sync_tasks(
        &[nt("a", "dev", 0, 0, &[]), nt("b", "dev", 0, 1, &[]), nt("w", "rev", 0, 2, &["a", "b"])],
        0,
    )
    .unwrap();
    for _ in 0..2 {
        let c = claim(s, &req("o", &["dev"], 1));
        s.finish_attempt(&c.token, &ok(2)).unwrap();
    }
    let w = claim(s, &req("o", &["rev"], 3));
    assert_eq!((w.task.id.as_str(), w.attempt), ("w", 1));
    s.upsert_instance(&InstanceRow {
        id: "rev-1".into(),
        role: "rev".into(),
        state: "busy".into(),
        current_task: Some("w".into()),
        owner: Some("o".into()),
        updated_ms: 3,
    })
    .unwrap();
    let r = nt("w.resolve-1", "dev", 0, 2, &[]);
    s.wait_for_new_task(&w.token, &r, "merging b conflicts in calc.py", 4)
        .unwrap();

    let row = s.task("w").unwrap().unwrap();
    assert_eq!(row.status, Status::Pending);
    assert_eq!(row.owner, None);
    assert_eq!(row.attempts, 0, "the claim ran no attempt");
    assert_eq!(row.fence, w.token.fence, "the fence stays where the claim put it");
    assert_eq!(row.depends_on, ["a", "b", "w.resolve-1"]);
    assert_eq!(status(s, "w.resolve-1"), Status::Pending);
    let inst = s.instances().unwrap();
    assert_eq!(inst[0].state, "idle");
    let ev = s.events_since(0, 100).unwrap();
    let waiting = ev.iter().find(|e| e.kind == "waiting").expect("a waiting event");
    assert_eq!(waiting.data["on"], "w.resolve-1");
    assert!(ev
        .iter()
        .any(|e| e.kind == "created" && e.task.as_deref() == Some("w.resolve-1") && e.data["parent"] == "w"));

    // w is not claimable before its resolve task succeeded; the resolve task is.
    assert_eq!(claim_id(s, &req("o", &["rev"], 5)), None);
    let rc = claim(s, &req("o", &["dev"], 5));
    assert_eq!(rc.task.id, "w.resolve-1");
    s.finish_attempt(&rc.token, &ok(6)).unwrap();
    let again = claim(s, &req("o", &["rev"], 7));
    assert_eq!((again.task.id.as_str(), again.attempt), ("w", 1));
    }
}

conformance! {
    fn a_failed_resolve_task_skips_the_waiting_task_and_its_dependents(b) {
    let (_d, st) = b.fresh();
    let s = &st;
    s.sync_tasks(
        &[nt("a", "dev", 0, 0, &[]), nt("w", "rev", 0, 1, &["a"]), nt("x", "dev", 0, 2, &["w"])],
        0,
    )
    .unwrap();
    let a = claim(s, &req("o", &["dev"], 1));
    s.finish_attempt(&a.token, &ok(2)).unwrap();
    let w = claim(s, &req("o", &["rev"], 3));
    s.wait_for_new_task(&w.token, &nt("w.resolve-1", "dev", 0, 1, &[]), "conflict", 4)
        .unwrap();
    let r = claim(s, &req("o", &["dev"], 5));
    s.finish_attempt(&r.token, &fin_final(Status::Failed, 6)).unwrap();
    assert_eq!(status(s, "w"), Status::Skipped);
    assert_eq!(status(s, "x"), Status::Skipped);
    }
}

conformance! {
    fn a_stale_claim_or_a_taken_id_changes_nothing(b) {
    let (_d, st) = b.fresh();
    let s = &st;
    s.sync_tasks(&[nt("a", "dev", 0, 0, &[]), nt("w", "dev", 0, 1, &[])], 0)
        .unwrap();
    let c = claim(s, &req("o", &["dev"], 1));
    let mut stale = c.token.clone();
    stale.fence -= 1;
    let e = s
        .wait_for_new_task(&stale, &nt("n", "dev", 0, 2, &[]), "why", 2)
        .unwrap_err();
    assert!(matches!(e, StoreError::StaleClaim { .. }), "{e}");
    assert!(s.task("n").unwrap().is_none());
    let other = if c.task.id == "a" { "w" } else { "a" };
    let e = s
        .wait_for_new_task(&c.token, &nt(other, "dev", 0, 2, &[]), "why", 2)
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    let row = s.task(&c.task.id).unwrap().unwrap();
    assert_eq!(row.status, Status::Running, "rolled back: still claimed");
    assert!(row.depends_on.is_empty());
    }
}
