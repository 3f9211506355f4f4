//! The coordination capability of the store (`CoordStore`), against SQLite: fencing
//! (a stale attempt cannot lease, decide, message, save context or create tasks),
//! leases ending with their claim however it ends, globs, the fair queue, deadlock
//! detection, decision ids, read receipts, the agent task bound, and the migration
//! that lets a task end `out_of_scope`. Each runs on SQLite and on PostgreSQL
//! (`conformance!`; the PostgreSQL one needs a server, see `tests/store_postgres.rs`).

mod store_util;

use borg::outcome::Status;
use borg::store::coord::*;
use borg::store::*;
use std::time::Duration;
use store_util::*;

const T0: i64 = 1_800_000_000_000;

/// Claims `id` for `owner` and starts its attempt on `instance`: the actor.
fn running(st: &dyn Store, id: &str, owner: &str, instance: &str, now: i64) -> Actor {
    let mut r = req(owner, &["developer", "tester"], now);
    r.only = vec![id.into()];
    let c = st.claim_next(&r).unwrap().expect("claimable");
    let start = AttemptStart {
        instance: instance.into(),
        uid: format!("uid-{id}"),
        now_ms: now,
        ..Default::default()
    };
    st.start_attempt(&c.token, &start).unwrap();
    Actor {
        task: id.into(),
        fence: c.token.fence,
        instance: instance.into(),
        uid: format!("uid-{id}"),
    }
}

fn lock(paths: &[&str], queue: Option<u64>) -> LockRequest {
    LockRequest {
        paths: paths.iter().map(|p| p.to_string()).collect(),
        reason: "work".into(),
        ttl: Duration::from_secs(600),
        auto: false,
        queue: queue.map(Duration::from_secs),
    }
}

fn decision() -> NewDecision {
    NewDecision {
        category: "api".into(),
        title: "t".into(),
        description: "d".into(),
        scope: None,
    }
}

conformance! {
    fn a_stale_attempt_cannot_lease_decide_message_or_create(b) {
    let (_d, st) = b.fresh();
    let st: &dyn Store = &*st;
    st.sync_tasks(&[nt("a", "developer", 0, 0, &[])], T0)
        .unwrap();
    let old = running(st, "a", "o1", "dev-1", T0);
    // Its lease runs out and another borg takes the task over: fence + 1.
    let newer = running(st, "a", "o2", "dev-2", T0 + 120_000);
    assert_eq!(newer.fence, old.fence + 1);
    let now = T0 + 121_000;
    let stale = |e: StoreError| matches!(e, StoreError::StaleClaim { .. });
    assert!(stale(
        st.lock_paths(&old, &lock(&["x.rs"], None), now)
            .unwrap_err()
    ));
    assert!(stale(
        st.log_decision(Some(&old), &decision(), now).unwrap_err()
    ));
    let m = NewMessage {
        to: Recipient::All,
        subject: None,
        body: "b".into(),
    };
    assert!(stale(st.send_message(Some(&old), &m, now).unwrap_err()));
    assert!(stale(st.save_context(&old, "k", "v", now).unwrap_err()));
    assert!(stale(
        st.create_agent_task(&old, &nt("child", "developer", 0, 0, &[]), 20, now)
            .unwrap_err()
    ));
    assert!(stale(
        st.check_write(&old, "x.rs", Some(("auto", Duration::from_secs(60))), now)
            .unwrap_err()
    ));
    assert!(stale(
        st.record_activity(&old, &Activity::default(), Duration::from_secs(60), now)
            .unwrap_err()
    ));
    // Nothing was written; the current attempt works.
    assert!(st.leases(now).unwrap().is_empty());
    assert!(st.decisions(None, 10).unwrap().is_empty());
    assert!(st.messages(10).unwrap().is_empty());
    assert!(st.context("k").unwrap().is_none());
    assert!(st.task("child").unwrap().is_none());
    assert_eq!(
        st.lock_paths(&newer, &lock(&["x.rs"], None), now)
            .unwrap()
            .granted,
        ["x.rs"]
    );
    assert_eq!(
        st.log_decision(Some(&newer), &decision(), now).unwrap().id,
        "DEC-20270115-0001"
    );
}
}

conformance! {
    fn leases_end_with_their_claim_however_it_ends(b) {
    let (_d, st) = b.fresh();
    let st: &dyn Store = &*st;
    st.sync_tasks(
        &[
            nt("a", "developer", 0, 0, &[]),
            nt("b", "developer", 0, 1, &[]),
            nt("c", "developer", 0, 2, &[]),
        ],
        T0,
    )
    .unwrap();
    let a = running(st, "a", "o1", "dev-1", T0);
    let b = running(st, "b", "o2", "dev-2", T0);
    let c = running(st, "c", "o1", "dev-3", T0);
    for (who, p) in [(&a, "a.rs"), (&b, "b.rs"), (&c, "c.rs")] {
        assert_eq!(
            st.lock_paths(who, &lock(&[p], None), T0).unwrap().granted,
            [p]
        );
    }
    assert_eq!(st.leases(T0).unwrap().iter().filter(|l| l.live).count(), 3);
    // a finishes; b's owner is released; c's claim lease expires.
    let tok = |x: &Actor, owner: &str| ClaimToken {
        task: x.task.clone(),
        fence: x.fence,
        owner: owner.into(),
    };
    st.finish_attempt(&tok(&a, "o1"), &ok(T0 + 1000)).unwrap();
    st.release_owner("o2", T0 + 1000).unwrap();
    let later = T0 + 61_000;
    // Expired with its claim even before anyone sweeps it...
    assert!(st.leases(later).unwrap().iter().all(|l| !l.live));
    st.release_expired(later).unwrap();
    // ...and gone once the claim is released.
    assert!(st.leases(later).unwrap().is_empty());
}
}

conformance! {
    fn globs_conflict_with_what_they_cover_and_the_hook_check_sees_them(b) {
    let (_d, st) = b.fresh();
    let st: &dyn Store = &*st;
    st.sync_tasks(
        &[
            nt("a", "developer", 0, 0, &[]),
            nt("b", "developer", 0, 1, &[]),
        ],
        T0,
    )
    .unwrap();
    let a = running(st, "a", "o1", "dev-1", T0);
    let b = running(st, "b", "o1", "dev-2", T0);
    assert_eq!(
        st.lock_paths(&a, &lock(&["src/auth/**"], None), T0)
            .unwrap()
            .granted,
        ["src/auth/**"]
    );
    let out = st
        .lock_paths(
            &b,
            &lock(&["src/auth/token.rs", "src/main.rs", "src/**"], None),
            T0,
        )
        .unwrap();
    assert_eq!(out.granted, ["src/main.rs"]);
    let refused: Vec<&str> = out.refused.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(refused, ["src/auth/token.rs", "src/**"]);
    assert_eq!(out.refused[0].held.task, "a");
    assert_eq!(out.refused[0].held.instance, "dev-1");
    match st.check_write(&b, "src/auth/deep/x.rs", None, T0).unwrap() {
        WriteCheck::Denied(bl) => assert_eq!(bl.held.path, "src/auth/**"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        st.check_write(&a, "src/auth/x.rs", None, T0).unwrap(),
        WriteCheck::Allowed { leased: false }
    );
    // Auto-lock takes a lease that then stops the other.
    assert_eq!(
        st.check_write(&b, "README.md", Some(("auto", Duration::from_secs(60))), T0)
            .unwrap(),
        WriteCheck::Allowed { leased: true }
    );
    assert!(matches!(
        st.check_write(&a, "README.md", None, T0).unwrap(),
        WriteCheck::Denied(_)
    ));
    // Releasing gives it back.
    assert_eq!(
        st.unlock_paths(&b, &["README.md".into()], T0).unwrap(),
        ["README.md"]
    );
    assert!(matches!(
        st.check_write(&a, "README.md", None, T0).unwrap(),
        WriteCheck::Allowed { .. }
    ));
}
}

conformance! {
    fn the_queue_is_fair_and_a_wait_that_closes_a_cycle_is_refused(b) {
    let (_d, st) = b.fresh();
    let st: &dyn Store = &*st;
    let ids = ["h", "w1", "w2"];
    st.sync_tasks(
        &ids.iter()
            .enumerate()
            .map(|(i, id)| nt(id, "developer", 0, i as i64, &[]))
            .collect::<Vec<_>>(),
        T0,
    )
    .unwrap();
    let h = running(st, "h", "o1", "dev-h", T0);
    let w1 = running(st, "w1", "o1", "dev-1", T0);
    let w2 = running(st, "w2", "o1", "dev-2", T0);
    st.lock_paths(&h, &lock(&["f.txt"], None), T0).unwrap();
    assert_eq!(
        st.lock_paths(&w1, &lock(&["f.txt"], Some(60)), T0)
            .unwrap()
            .refused
            .len(),
        1
    );
    assert_eq!(
        st.lock_paths(&w2, &lock(&["f.txt"], Some(60)), T0 + 1)
            .unwrap()
            .refused
            .len(),
        1
    );
    st.unlock_paths(&h, &[], T0 + 2).unwrap();
    // w2 asks first after the release, but w1 queued first: w2 is refused, w1 granted.
    let o2 = st
        .lock_paths(&w2, &lock(&["f.txt"], Some(60)), T0 + 3)
        .unwrap();
    assert_eq!(o2.refused[0].kind, BlockKind::Queued);
    assert_eq!(o2.refused[0].held.task, "w1");
    assert!(matches!(
        st.check_write(&w2, "f.txt", None, T0 + 3).unwrap(),
        WriteCheck::Denied(_)
    ));
    assert_eq!(
        st.lock_paths(&w1, &lock(&["f.txt"], Some(60)), T0 + 4)
            .unwrap()
            .granted,
        ["f.txt"]
    );
    // Now w2 waits for w1 (f.txt); w1 wants g.txt, which h takes; h wants f.txt... h
    // waiting for f.txt (held by w1) while w1 waits for g.txt (held by h) is a cycle.
    st.lock_paths(&h, &lock(&["g.txt"], None), T0 + 5).unwrap();
    assert!(st
        .lock_paths(&w1, &lock(&["g.txt"], Some(60)), T0 + 6)
        .unwrap()
        .deadlock
        .is_none());
    let out = st
        .lock_paths(&h, &lock(&["f.txt"], Some(60)), T0 + 7)
        .unwrap();
    let cycle = out.deadlock.expect("a cycle");
    assert_eq!(cycle.first().unwrap().waiter.1, "h");
    assert_eq!(cycle.last().unwrap().holder.1, "h");
    assert!(
        cycle
            .iter()
            .any(|e| e.path == "g.txt" && e.waiter.1 == "w1"),
        "{cycle:?}"
    );
    // Nothing was queued for h: w2 (queued for f.txt) is still next after w1.
    st.unlock_paths(&w1, &[], T0 + 8).unwrap();
    assert_eq!(
        st.lock_paths(&w2, &lock(&["f.txt"], Some(60)), T0 + 9)
            .unwrap()
            .granted,
        ["f.txt"]
    );
}
}

conformance! {
    fn decision_ids_count_per_day_and_messages_are_read_once_per_instance(b) {
    let (_d, st) = b.fresh();
    let st: &dyn Store = &*st;
    st.sync_tasks(&[nt("a", "developer", 0, 0, &[])], T0)
        .unwrap();
    let a = running(st, "a", "o1", "dev-1", T0);
    let day2 = T0 + 86_400_000;
    let ids: Vec<String> = [T0, T0 + 1, day2]
        .iter()
        .map(|&t| st.log_decision(Some(&a), &decision(), t).unwrap().id)
        .collect();
    assert_eq!(
        ids,
        [
            "DEC-20270115-0001",
            "DEC-20270115-0002",
            "DEC-20270116-0001"
        ]
    );
    assert_eq!(st.decisions(None, 1).unwrap()[0].id, "DEC-20270116-0001");
    assert_eq!(st.decisions_of("a").unwrap().len(), 3);
    let send = |to: Recipient| {
        st.send_message(
            None,
            &NewMessage {
                to,
                subject: None,
                body: "hi".into(),
            },
            T0,
        )
        .unwrap()
    };
    send(Recipient::Role("tester".into()));
    send(Recipient::All);
    send(Recipient::Instance("dev-9".into()));
    let reader = |i: &str, r: &str| Reader {
        instance: i.into(),
        role: r.into(),
        task: None,
    };
    assert_eq!(
        st.unread_messages(&reader("t-1", "tester"), true, 10, T0)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        st.unread_messages(&reader("t-1", "tester"), true, 10, T0)
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        st.unread_messages(&reader("t-2", "tester"), false, 10, T0)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        st.unread_messages(&reader("dev-9", "developer"), false, 10, T0)
            .unwrap()
            .len(),
        2
    );
    // A sender never reads its own broadcast.
    st.send_message(
        Some(&a),
        &NewMessage {
            to: Recipient::All,
            subject: None,
            body: "me".into(),
        },
        T0,
    )
    .unwrap();
    let mine = st
        .unread_messages(&reader("dev-1", "developer"), false, 10, T0)
        .unwrap();
    assert!(mine.iter().all(|m| m.body != "me"));
}
}

conformance! {
    fn agent_tasks_are_bounded_per_run_and_join_the_runs_scope(b) {
    let (_d, st) = b.fresh();
    let st: &dyn Store = &*st;
    st.sync_tasks(&[nt("p", "developer", 0, 0, &[])], T0)
        .unwrap();
    let p = running(st, "p", "o1", "dev-1", T0);
    for n in 0..3 {
        st.create_agent_task(&p, &nt(&format!("c{n}"), "tester", 0, 0, &["p"]), 3, T0)
            .unwrap();
    }
    let e = st
        .create_agent_task(&p, &nt("c3", "tester", 0, 0, &[]), 3, T0)
        .unwrap_err();
    assert!(e.to_string().contains("max_agent_tasks"), "{e}");
    let e = st
        .create_agent_task(&p, &nt("c0", "tester", 0, 0, &[]), 10, T0)
        .unwrap_err();
    assert!(e.to_string().contains("exists already"), "{e}");
    assert_eq!(st.agent_tasks("p").unwrap(), ["c0", "c1", "c2"]);
    // In the creating run's scope: a scoped claim of that owner can take them.
    let tok = ClaimToken {
        task: "p".into(),
        fence: p.fence,
        owner: "o1".into(),
    };
    st.finish_attempt(&tok, &ok(T0 + 10)).unwrap();
    let mut r = req("o1", &["tester"], T0 + 20);
    r.scoped = true;
    assert_eq!(st.claim_next(&r).unwrap().unwrap().task.id, "c0");
}
}

#[test]
fn a_task_can_end_out_of_scope_after_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("borg.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1.db"),
        &path,
    )
    .unwrap();
    let st = borg::store::sqlite::SqliteStore::open(&path).unwrap();
    st.sync_tasks(&[nt("oos", "developer", 0, 9, &[])], T0)
        .unwrap();
    let a = running(&st, "oos", "o1", "dev-1", T0);
    let tok = ClaimToken {
        task: "oos".into(),
        fence: a.fence,
        owner: "o1".into(),
    };
    st.finish_attempt(&tok, &fin_final(Status::OutOfScope, T0 + 1))
        .unwrap();
    assert_eq!(st.task("oos").unwrap().unwrap().status, Status::OutOfScope);
    assert!(st.integrity_check().unwrap().is_empty());
    // A second open (another connection) sees the same schema.
    drop(st);
    let again = borg::store::sqlite::SqliteStore::open(&path).unwrap();
    assert_eq!(
        again.task("oos").unwrap().unwrap().status,
        Status::OutOfScope
    );
}
