//! The store's merge-queue capability (`MergeStore`): a target claimed with a lease and
//! a fencing token (a second borg refused, a stale claim changing nothing), and the
//! queue's steps (landed, conflict with its resolve task, rejected with its fix task,
//! gate runs), each one fenced transaction. Each runs on SQLite and on PostgreSQL
//! (`conformance!`; the PostgreSQL one needs a server, see `tests/store_postgres.rs`).

mod store_util;

use borg::outcome::Status;
use borg::store::merge::{Landing, MergeState, MergeStep};
use borg::store::*;
use std::time::Duration;
use store_util::*;

const LEASE: Duration = Duration::from_secs(60);

/// Registers a live owner `id`.
fn owner(s: &(impl AsStore + ?Sized), id: &str) {
    s.st()
        .register_owner(&OwnerInfo {
            id: id.into(),
            host: "h".into(),
            host_id: "h".into(),
            pid: 1,
            start_time: 1,
            boot_id: "boot".into(),
            started_at_ms: 0,
            heartbeat_ms: 0,
        })
        .unwrap();
}

/// Tasks `a`, `b` (depends on nothing) succeeded, and `c` pending on `b`.
fn two_done(s: &(impl AsStore + ?Sized)) {
    s.st()
        .sync_tasks(
            &[
                nt("a", "dev", 0, 0, &[]),
                nt("b", "dev", 0, 1, &[]),
                nt("c", "dev", 0, 2, &["b"]),
            ],
            0,
        )
        .unwrap();
    for _ in 0..2 {
        let c = claim(s, &req("o", &["dev"], 1));
        s.st().finish_attempt(&c.token, &ok(2)).unwrap();
    }
}

conformance! {
    fn a_target_is_held_by_one_borg_and_a_stale_claim_changes_nothing(b) {
    let (_d, st) = b.fresh();
    let s = &st;
    owner(s, "o1");
    owner(s, "o2");
    let c1 = s.claim_target("borg/integration/t", "t", "base1", "o1", LEASE, 1_000).unwrap();
    assert_eq!(c1.fence, 1);
    let again = s.claim_target("borg/integration/t", "t", "other", "o1", LEASE, 2_000).unwrap();
    assert_eq!(again.fence, 2, "the holder claims again with a new fence");
    match s.claim_target("borg/integration/t", "t", "base1", "o2", LEASE, 3_000) {
        Err(StoreError::Conflict(m)) => {
            assert!(m.contains("the merge target borg/integration/t is being advanced by o1"), "{m}");
            assert!(m.contains("its lease ends in 59 s"), "{m}");
        }
        other => panic!("expected a conflict: {other:?}"),
    }
    // Once the lease ran out, another borg takes it; the first one's writes fail.
    let c2 = s.claim_target("borg/integration/t", "t", "base1", "o2", LEASE, 70_000).unwrap();
    assert_eq!(c2.fence, 3);
    let step = MergeStep::GateRuns(1);
    match s.record_merge(&again, &step, 71_000) {
        Err(StoreError::StaleClaim { fence, current, .. }) => assert_eq!((fence, current), (2, 3)),
        other => panic!("expected a stale claim: {other:?}"),
    }
    assert!(matches!(s.renew_target(&again, LEASE, 71_000), Err(StoreError::StaleClaim { .. })));
    assert!(matches!(s.release_target(&again, 71_000), Err(StoreError::StaleClaim { .. })));
    let (row, entries) = s.merge_target("borg/integration/t").unwrap().unwrap();
    assert_eq!((row.start.as_str(), row.gate_runs, row.owner.as_deref()), ("base1", 0, Some("o2")));
    assert!(entries.is_empty());
    s.record_merge(&c2, &step, 72_000).unwrap();
    s.release_target(&c2, 73_000).unwrap();
    let (row, _) = s.merge_target("borg/integration/t").unwrap().unwrap();
    assert_eq!((row.gate_runs, row.owner, row.fence), (1, None, 3));
    // Released: anyone claims it at once; an unregistered (dead) owner's claim too.
    let c3 = s.claim_target("borg/integration/t", "t", "x", "o1", LEASE, 74_000).unwrap();
    assert_eq!(c3.fence, 4);
    let c4 = s.claim_target("borg/integration/u", "t", "x", "ghost", LEASE, 74_000).unwrap();
    let c5 = s.claim_target("borg/integration/u", "t", "x", "o2", LEASE, 75_000).unwrap();
    assert_eq!((c4.fence, c5.fence), (1, 2));
    assert!(s.merge_target("nothing").unwrap().is_none());
    }
}

conformance! {
    fn the_queues_steps_land_resolve_and_reject(b) {
    let (_d, st) = b.fresh();
    let s = &st;
    owner(s, "o1");
    two_done(s);
    let c = s.claim_target("borg/integration/t", "t", "base", "o1", LEASE, 10).unwrap();
    // a conflicts: its resolve task is created with the entry.
    let resolve = nt("a.resolve-1", "dev", 0, 3, &[]);
    let conflict = MergeStep::Conflict {
        task: "a".into(),
        commit: "ca".into(),
        files: vec!["calc.py".into()],
        resolve: resolve.clone(),
    };
    s.record_merge(&c, &conflict, 11).unwrap();
    assert_eq!(status(s, "a.resolve-1"), Status::Pending);
    let again = s.record_merge(&c, &conflict, 12);
    assert!(matches!(again, Err(StoreError::Conflict(_))), "a taken id changes nothing: {again:?}");
    // Its resolution lands: the entry keeps how it landed.
    let landed = MergeStep::Landed {
        head: "h1".into(),
        tasks: vec![Landing { task: "a".into(), commit: "ra".into(), merged: "m1".into() }],
    };
    s.record_merge(&c, &landed, 13).unwrap();
    // b breaks the gates: integration_failed, its dependent skipped, a fix task made.
    let rejected = MergeStep::Rejected {
        task: "b".into(),
        commit: "cb".into(),
        gate: "python3 -m unittest".into(),
        output_tail: "FAILED (failures=1)".into(),
        error: "the integration gate failed".into(),
        fix: Some(nt("b.fix-1", "dev", 0, 4, &[])),
    };
    s.record_merge(&c, &rejected, 14).unwrap();
    let (row, entries) = s.merge_target("borg/integration/t").unwrap().unwrap();
    assert_eq!(row.head.as_deref(), Some("h1"));
    let a = entries.iter().find(|e| e.task == "a").unwrap();
    assert_eq!(a.state, MergeState::Landed);
    assert_eq!((a.commit.as_str(), a.merged.as_deref()), ("ra", Some("m1")));
    assert_eq!(a.resolve_task.as_deref(), Some("a.resolve-1"));
    assert_eq!(a.files, ["calc.py"]);
    let e = entries.iter().find(|e| e.task == "b").unwrap();
    assert_eq!(e.state, MergeState::Rejected);
    assert_eq!(e.gate.as_deref(), Some("python3 -m unittest"));
    assert_eq!(e.output_tail.as_deref(), Some("FAILED (failures=1)"));
    assert_eq!(e.fix_task.as_deref(), Some("b.fix-1"));
    assert_eq!(status(s, "b"), Status::IntegrationFailed);
    assert_eq!(status(s, "c"), Status::Skipped);
    assert_eq!(status(s, "b.fix-1"), Status::Pending);
    let rec = s.attempts("b").unwrap().pop().unwrap().record.unwrap();
    assert_eq!(rec["fault"], "integration");
    assert_eq!(rec["error"], "the integration gate failed");
    let kinds: Vec<String> = s
        .events_since(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind.starts_with("merge_"))
        .map(|e| format!("{}:{}", e.kind, e.task.unwrap_or_default()))
        .collect();
    assert_eq!(kinds, ["merge_conflict:a", "merge_landed:a", "merge_rejected:b"]);
    }
}
