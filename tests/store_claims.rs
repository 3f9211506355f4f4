//! Behaviour of the store through the public `Store` API, on both backends (SQLite:
//! each test's name; PostgreSQL: `NAME::postgres`): claim order and
//! filters, fencing, failure propagation, retry, releases, sync and handoffs.

#[macro_use]
mod store_util;

use borg::outcome::Status;
use borg::store::*;
use std::time::Duration;
use store_util::*;

/// A fresh store holding `tasks`, synced at 0 ms.
fn fresh_with(b: &Backend, tasks: &[NewTask]) -> (TestDb, TestStore) {
    let (d, s) = b.fresh();
    s.sync_tasks(tasks, 0).unwrap();
    (d, s)
}

/// A fresh store holding one pending task "a" for role dev.
fn fresh_with_a(b: &Backend) -> (TestDb, TestStore) {
    fresh_with(b, &[nt("a", "dev", 0, 0, &[])])
}

/// [`fresh_with_a`], with "a" claimed by owner "o" at 1 ms.
fn a_claimed(b: &Backend) -> (TestDb, TestStore, Claim) {
    let (d, s) = fresh_with_a(b);
    let c = claim(&s, &req("o", &["dev"], 1));
    (d, s, c)
}

/// A handoff request with only a target role and a reason.
fn handoff(to_role: &str, reason: &str) -> HandoffRequest {
    HandoffRequest {
        to_role: to_role.into(),
        reason: reason.into(),
        state: None,
        next_steps: vec![],
    }
}

conformance! {
    fn claim_order_is_priority_then_order_then_id(b) {
        let (_d, s) = b.fresh();
        let rep = s
            .sync_tasks(
                &[
                    nt("c", "dev", 0, 2, &[]),
                    nt("a", "dev", 0, 3, &[]),
                    nt("b", "dev", 5, 9, &[]),
                    nt("d", "dev", 0, 2, &[]),
                ],
                0,
            )
            .unwrap();
        assert_eq!(rep.added.len(), 4);
        let r = req("o1", &["dev"], 10);
        let got: Vec<String> = (0..4).map(|_| claim(&s, &r).task.id).collect();
        assert_eq!(got, ["b", "c", "d", "a"]);
        assert!(s.claim_next(&r).unwrap().is_none());
    }
}

conformance! {
    fn claim_sets_running_owner_fence_lease_and_event(b) {
        let (_d, s) = fresh_with_a(b);
        let c = claim(&s, &req("o1", &["dev"], 1000));
        assert_eq!(
            c.token,
            ClaimToken {
                task: "a".into(),
                fence: 1,
                owner: "o1".into()
            }
        );
        assert_eq!(c.attempt, 1);
        assert_eq!(c.task.status, Status::Running);
        assert_eq!(c.task.owner.as_deref(), Some("o1"));
        assert_eq!(c.task.lease_expires_ms, Some(61_000));
        assert_eq!(c.task.attempts, 1);
        let ev = s.events_since(0, 100).unwrap();
        assert_eq!(ev.last().unwrap().kind, "claimed");
        assert_eq!(ev.last().unwrap().fence, Some(1));
    }
}

conformance! {
    fn deps_block_until_succeeded_and_unknown_deps_never_satisfy(b) {
        let (_d, s) = fresh_with(b, &[
            nt("a", "dev", 0, 0, &[]),
            nt("b", "dev", 9, 1, &["a"]),
            nt("x", "dev", 9, 2, &["ghost"]),
        ]);
        let r = req("o1", &["dev"], 1);
        let c = claim(&s, &r);
        assert_eq!(c.task.id, "a", "b has higher priority but waits for a");
        assert!(
            s.claim_next(&r).unwrap().is_none(),
            "b blocked by running a; x by an unknown id"
        );
        s.finish_attempt(&c.token, &ok(2)).unwrap();
        assert_eq!(claim_id(&s, &r).as_deref(), Some("b"));
        assert!(s.claim_next(&r).unwrap().is_none());
        assert_eq!(status(&s, "x"), Status::Pending);
        assert_eq!(s.integrity_check().unwrap(), Vec::<String>::new());
    }
}

conformance! {
    fn role_pin_only_and_not_before_filters(b) {
        let mut pinned = nt("p", "dev", 10, 0, &[]);
        pinned.instance = Some("dev-1".into());
        let (_d, s) = fresh_with(b, &[
            pinned,
            nt("t", "tester", 5, 1, &[]),
            nt("d1", "dev", 0, 2, &[]),
            nt("d2", "dev", 0, 3, &[]),
        ]);

        // role filter: a tester slot only sees the tester task
        assert_eq!(
            claim_id(&s, &req("o", &["tester"], 1)).as_deref(),
            Some("t")
        );
        // pin: dev-1 not idle → the pinned task is passed over
        let mut r = req("o", &["dev"], 1);
        r.only = vec!["p".into(), "d2".into()];
        assert_eq!(claim_id(&s, &r).as_deref(), Some("d2"), "only + pin filter");
        r.idle_instances = vec!["dev-1".into()];
        assert_eq!(claim_id(&s, &r).as_deref(), Some("p"));
        assert!(s.claim_next(&r).unwrap().is_none(), "d1 is not in `only`");
        // empty roles claim nothing
        assert!(s.claim_next(&req("o", &[], 1)).unwrap().is_none());

        // not_before: retry later
        let c = claim(&s, &req("o", &["dev"], 1));
        assert_eq!(c.task.id, "d1");
        s.finish_attempt(&c.token, &fin_retry(Status::Failed, 500, true, 2))
            .unwrap();
        assert!(s.claim_next(&req("o", &["dev"], 499)).unwrap().is_none());
        let c = claim(&s, &req("o", &["dev"], 500));
        assert_eq!((c.task.id.as_str(), c.attempt, c.token.fence), ("d1", 2, 2));
        assert_eq!(c.task.counted_attempts, 1);
    }
}

conformance! {
    fn max_attempts_counts_only_counted_retries(b) {
        let mut t = nt("a", "dev", 0, 0, &[]);
        t.max_attempts = 1;
        let (_d, s) = fresh_with(b, &[t]);
        let r = req("o", &["dev"], 1);
        let c = claim(&s, &r);
        // parking (rate limit) does not use up the only attempt
        s.finish_attempt(&c.token, &fin_retry(Status::RateLimited, 0, false, 2))
            .unwrap();
        let c = claim(&s, &r);
        s.finish_attempt(&c.token, &fin_retry(Status::Failed, 0, true, 3))
            .unwrap();
        assert!(
            s.claim_next(&r).unwrap().is_none(),
            "counted attempts exhausted"
        );
        let t = s.task("a").unwrap().unwrap();
        assert_eq!((t.attempts, t.counted_attempts), (2, 1));
    }
}

/// Snapshot of everything a stale write could touch.
fn snapshot(
    s: &TestStore,
) -> (
    Vec<TaskRow>,
    Vec<AttemptRow>,
    Vec<HandoffRow>,
    Vec<EventRow>,
) {
    (
        s.tasks().unwrap(),
        s.attempts("a").unwrap(),
        s.handoffs(None).unwrap(),
        s.events_since(0, 10_000).unwrap(),
    )
}

conformance! {
    fn fencing_rejects_the_stale_owner_and_changes_nothing(b) {
        let (_d, s) = fresh_with(b, &[nt("a", "dev", 0, 0, &[]), nt("b", "dev", 0, 1, &["a"])]);
        let mut r1 = req("o1", &["dev"], 0);
        r1.lease = Duration::from_secs(10);
        let c1 = claim(&s, &r1);
        s.start_attempt(&c1.token, &start("dev-1", 100, 5)).unwrap();
        s.heartbeat(&c1.token, Duration::from_secs(10), 9_000)
            .unwrap(); // lease → 19 000

        // not yet expired: o2 gets nothing
        assert!(s
            .claim_next(&req("o2", &["dev"], 18_999))
            .unwrap()
            .is_none());
        // expired: o2 takes it over with fence 2; o1's attempt is interrupted
        let c2 = claim(&s, &req("o2", &["dev"], 19_001));
        assert_eq!(
            (c2.task.id.as_str(), c2.token.fence, c2.attempt),
            ("a", 2, 2)
        );
        let a1 = &s.attempts("a").unwrap()[0];
        assert_eq!((a1.status, a1.fence), (Status::Interrupted, 1));
        let kinds: Vec<String> = s
            .events_since(0, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert!(kinds.contains(&"lease-expired".to_string()), "{kinds:?}");

        let before = snapshot(&s);
        let stale = |e: StoreError| match e {
            StoreError::StaleClaim {
                task,
                fence,
                current,
            } => assert_eq!((task.as_str(), fence, current), ("a", 1, 2)),
            other => panic!("expected StaleClaim, got {other:?}"),
        };
        stale(
            s.heartbeat(&c1.token, Duration::from_secs(10), 20_000)
                .unwrap_err(),
        );
        stale(
            s.start_attempt(&c1.token, &start("dev-1", 200, 20_000))
                .unwrap_err(),
        );
        let mut f = ok(20_000);
        f.new_tasks = vec![nt("zombie", "dev", 0, 9, &[])];
        stale(s.finish_attempt(&c1.token, &f).unwrap_err());
        stale(
            s.finish_attempt(&c1.token, &fin_final(Status::Failed, 20_000))
                .unwrap_err(),
        );
        let hr = handoff("tester", "r");
        stale(s.request_handoff(&c1.token, None, &hr, 20_000).unwrap_err());
        assert_eq!(before, snapshot(&s), "a stale write changed the store");
        assert!(s.task("zombie").unwrap().is_none());

        // the new owner finishes normally
        s.finish_attempt(&c2.token, &ok(21_000)).unwrap();
        assert_eq!(status(&s, "a"), Status::Succeeded);
        // and a finished claim is itself stale now
        assert!(matches!(
            s.heartbeat(&c2.token, Duration::from_secs(1), 21_001),
            Err(StoreError::StaleClaim { .. })
        ));
    }
}

conformance! {
    fn unknown_task_token_is_not_found(b) {
        let (_d, s) = b.fresh();
        let t = ClaimToken {
            task: "nope".into(),
            fence: 1,
            owner: "o".into(),
        };
        assert!(matches!(
            s.heartbeat(&t, Duration::from_secs(1), 0),
            Err(StoreError::NotFound(_))
        ));
    }
}

conformance! {
    fn start_and_finish_record_the_attempt(b) {
        let (_d, s, c) = a_claimed(b);
        let st = start("dev-1", 4242, 2);
        s.start_attempt(&c.token, &st).unwrap();
        let running = s.running_attempts().unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].start, st);
        assert_eq!(
            (
                running[0].attempt,
                running[0].fence,
                running[0].owner.as_str()
            ),
            (1, 1, "o")
        );
        s.finish_attempt(&c.token, &ok(9)).unwrap();
        let a = &s.attempts("a").unwrap()[0];
        assert_eq!(
            (a.status, a.finished_ms, a.started_ms),
            (Status::Succeeded, Some(9), 2)
        );
        assert_eq!(a.record, Some(serde_json::json!({ "status": "succeeded" })));
        assert!(s.running_attempts().unwrap().is_empty());
        let t = s.task("a").unwrap().unwrap();
        assert_eq!((t.owner, t.lease_expires_ms), (None, None));
        assert_eq!(
            t.last_record,
            Some(serde_json::json!({ "status": "succeeded" }))
        );
    }
}

conformance! {
    fn finish_without_start_still_records_an_attempt(b) {
        let (_d, s, c) = a_claimed(b);
        s.finish_attempt(&c.token, &fin_final(Status::SpawnFailed, 3))
            .unwrap();
        let a = s.attempts("a").unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].status, Status::SpawnFailed);
        assert!(matches!(
            s.finish_attempt(&c.token, &fin_final(Status::Failed, 3)),
            Err(StoreError::StaleClaim { .. })
        ));
    }
}

conformance! {
    fn non_final_status_in_final_disposition_is_refused(b) {
        let (_d, s, c) = a_claimed(b);
        assert!(matches!(
            s.finish_attempt(
                &c.token,
                &fin(Status::Failed, Disposition::Final(Status::Running), 3)
            ),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(status(&s, "a"), Status::Running);
    }
}

conformance! {
    fn failure_skips_transitive_dependents_and_retry_unskips(b) {
        // a ← b ← c ; a ← d ; e independent ; f depends on c and on g (g fails on its own)
        let (_d, s) = fresh_with(b, &[
            nt("a", "dev", 0, 0, &[]),
            nt("b", "dev", 0, 1, &["a"]),
            nt("c", "dev", 0, 2, &["b"]),
            nt("d", "dev", 0, 3, &["a"]),
            nt("e", "dev", 0, 4, &[]),
            nt("g", "dev", 0, 5, &[]),
            nt("f", "dev", 0, 6, &["c", "g"]),
        ]);
        let r = req("o", &["dev"], 1);
        let ca = claim(&s, &r);
        assert_eq!(ca.task.id, "a");
        s.finish_attempt(&ca.token, &fin_final(Status::Failed, 2))
            .unwrap();
        for id in ["b", "c", "d", "f"] {
            assert_eq!(status(&s, id), Status::Skipped, "{id}");
        }
        assert_eq!(status(&s, "e"), Status::Pending);
        let skipped_events = s
            .events_since(0, 1000)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "skipped")
            .count();
        assert_eq!(skipped_events, 4);
        // g fails too
        let ce = claim(&s, &r);
        assert_eq!(ce.task.id, "e");
        let cg = claim(&s, &r);
        assert_eq!(cg.task.id, "g");
        s.finish_attempt(&cg.token, &fin_final(Status::TimedOut, 3))
            .unwrap();

        // running task cannot be retried; unknown is NotFound
        assert!(matches!(s.retry_task("e", 4), Err(StoreError::Conflict(_))));
        assert!(matches!(
            s.retry_task("zz", 4),
            Err(StoreError::NotFound(_))
        ));

        s.retry_task("a", 10).unwrap();
        let a = s.task("a").unwrap().unwrap();
        assert_eq!(
            (a.status, a.counted_attempts, a.not_before_ms, a.attempts),
            (Status::Pending, 0, 10, 1)
        );
        for id in ["b", "c", "d"] {
            assert_eq!(status(&s, id), Status::Pending, "{id} un-skipped");
        }
        assert_eq!(
            status(&s, "f"),
            Status::Skipped,
            "f still blocked by the failed g"
        );
        // retry of g un-skips f (skipped again because of g)
        s.retry_task("g", 11).unwrap();
        assert_eq!(status(&s, "f"), Status::Pending);
        // and the chain runs
        let r = req("o", &["dev"], 20);
        assert_eq!(claim_id(&s, &r).as_deref(), Some("a"));
        assert_eq!(s.integrity_check().unwrap(), Vec::<String>::new());
    }
}

conformance! {
    fn skip_tasks_skips_pending_and_dependents(b) {
        let (_d, s) = fresh_with(b, &[
            nt("a", "dev", 0, 0, &[]),
            nt("b", "dev", 0, 1, &["a"]),
            nt("c", "dev", 0, 2, &[]),
        ]);
        s.skip_tasks(&["a".into()], "user said so", 5).unwrap();
        assert_eq!(status(&s, "a"), Status::Skipped);
        assert_eq!(status(&s, "b"), Status::Skipped);
        assert_eq!(status(&s, "c"), Status::Pending);
    }
}

conformance! {
    fn release_owner_hands_tasks_back_at_once(b) {
        let (_d, s) = b.fresh();
        let owner = OwnerInfo {
            id: "o1".into(),
            host: "h".into(),
            host_id: "h".into(),
            pid: 77,
            start_time: 5,
            boot_id: "b".into(),
            started_at_ms: 0,
            heartbeat_ms: 0,
        };
        s.register_owner(&owner).unwrap();
        s.heartbeat_owner("o1", 50).unwrap();
        assert_eq!(s.owners().unwrap()[0].heartbeat_ms, 50);
        s.upsert_instance(&InstanceRow {
            id: "dev-1".into(),
            role: "dev".into(),
            state: "busy".into(),
            current_task: Some("a".into()),
            owner: Some("o1".into()),
            updated_ms: 1,
        })
        .unwrap();
        s.sync_tasks(
            &[
                nt("a", "dev", 0, 0, &[]),
                nt("b", "dev", 0, 1, &[]),
                nt("c", "dev", 0, 2, &[]),
            ],
            0,
        )
        .unwrap();
        let ca = claim(&s, &req("o1", &["dev"], 1));
        let cb = claim(&s, &req("o1", &["dev"], 1));
        let cc = claim(&s, &req("o2", &["dev"], 1));
        s.start_attempt(&ca.token, &start("dev-1", 10, 2)).unwrap();
        s.start_attempt(&cc.token, &start("dev-2", 20, 2)).unwrap();

        let gone = s.release_owner("o1", 100).unwrap();
        assert_eq!(gone.len(), 1, "only a had a started attempt");
        assert_eq!(
            (gone[0].task.as_str(), gone[0].start.pid, gone[0].status),
            ("a", 10, Status::Interrupted)
        );
        for (id, fence) in [("a", 2), ("b", 2)] {
            let t = s.task(id).unwrap().unwrap();
            assert_eq!(
                (t.status, t.fence, t.owner),
                (Status::Pending, fence, None),
                "{id}"
            );
        }
        assert_eq!(status(&s, "c"), Status::Running, "other owners untouched");
        assert!(s.owners().unwrap().is_empty());
        assert!(matches!(
            s.heartbeat_owner("o1", 101),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(s.instances().unwrap()[0].state, "idle");
        // the zombie is fenced off; the tasks are claimable at once (no lease wait)
        assert!(matches!(
            s.finish_attempt(&ca.token, &ok(101)),
            Err(StoreError::StaleClaim { .. })
        ));
        assert!(matches!(
            s.heartbeat(&cb.token, Duration::from_secs(1), 101),
            Err(StoreError::StaleClaim { .. })
        ));
        let again = claim(&s, &req("o3", &["dev"], 101));
        assert_eq!(
            (again.task.id.as_str(), again.token.fence, again.attempt),
            ("a", 3, 2)
        );
        assert_eq!(
            s.running_attempts().unwrap().len(),
            1,
            "c's attempt still running"
        );
        assert_eq!(s.integrity_check().unwrap(), Vec::<String>::new());
    }
}

conformance! {
    fn release_expired_releases_only_expired_leases(b) {
        let (_d, s) = fresh_with(b, &[nt("a", "dev", 0, 0, &[]), nt("b", "dev", 0, 1, &[])]);
        let mut r = req("o1", &["dev"], 0);
        r.lease = Duration::from_millis(100);
        let ca = claim(&s, &r);
        r.lease = Duration::from_millis(1000);
        let cb = claim(&s, &r);
        s.start_attempt(&ca.token, &start("i", 5, 1)).unwrap();
        let out = s.release_expired(500).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].task, "a");
        assert_eq!(status(&s, "a"), Status::Pending);
        assert_eq!(s.task("a").unwrap().unwrap().fence, 2);
        assert_eq!(status(&s, "b"), Status::Running);
        s.heartbeat(&cb.token, Duration::from_millis(1000), 600)
            .unwrap();
        assert!(s.release_expired(1200).unwrap().is_empty());
    }
}

conformance! {
    fn sync_adds_keeps_updates_and_reports_changes_after_success(b) {
        let (_d, s) = b.fresh();
        let list = vec![
            nt("a", "dev", 0, 0, &[]),
            nt("b", "dev", 0, 1, &[]),
            nt("c", "dev", 0, 2, &[]),
            nt("d", "dev", 0, 3, &[]),
        ];
        s.sync_tasks(&list, 0).unwrap();
        let ca = claim(&s, &req("o", &["dev"], 1));
        s.finish_attempt(&ca.token, &ok(2)).unwrap(); // a succeeded
        let cb = claim(&s, &req("o", &["dev"], 3)); // b running

        let mut changed = list.clone();
        for t in changed.iter_mut() {
            t.hash = format!("{}-v2", t.hash);
            t.priority = 7;
            t.spec = serde_json::json!({ "prompt": "new" });
        }
        changed[2].depends_on = vec!["d".into()];
        changed[3].hash = list[3].hash.clone(); // d unchanged
        changed.push(nt("e", "tester", 1, 4, &["a"]));
        let rep = s.sync_tasks(&changed, 10).unwrap();
        assert_eq!(rep.added, ["e"]);
        assert_eq!(rep.unchanged, ["d"]);
        assert_eq!(rep.updated, ["c"]);
        assert_eq!(rep.changed_after_success, ["a"]);

        let a = s.task("a").unwrap().unwrap();
        assert_eq!(
            (a.status, a.priority, a.hash.as_str()),
            (Status::Succeeded, 0, "h-a"),
            "succeeded row untouched"
        );
        let b = s.task("b").unwrap().unwrap();
        assert_eq!(
            (b.status, b.priority, b.hash.as_str()),
            (Status::Running, 0, "h-b"),
            "running row untouched"
        );
        let c = s.task("c").unwrap().unwrap();
        assert_eq!(
            (c.priority, c.hash.as_str(), c.depends_on.clone()),
            (7, "h-c-v2", vec!["d".to_string()])
        );
        assert_eq!(c.spec, serde_json::json!({ "prompt": "new" }));
        s.finish_attempt(&cb.token, &ok(11)).unwrap();
        assert_eq!(s.integrity_check().unwrap(), Vec::<String>::new());
    }
}

conformance! {
    fn handoff_becomes_a_task_for_the_target_role(b) {
        let (_d, s) = fresh_with(b, &[nt("dev-task", "dev", 0, 0, &[])]);
        let c = claim(&s, &req("o", &["dev"], 1));
        let hr = HandoffRequest {
            to_role: "tester".into(),
            reason: "needs tests".into(),
            state: Some("code done".into()),
            next_steps: vec!["write tests".into()],
        };
        let h1 = s.request_handoff(&c.token, Some("dev-1"), &hr, 2).unwrap();
        let h2 = s.request_handoff(&c.token, None, &hr, 3).unwrap();
        let rows = s.handoffs(Some("dev-task")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].state,
                rows[0].fence,
                rows[0].from_role.as_str(),
                rows[0].from_instance.as_deref()
            ),
            (HandoffState::Pending, 1, "dev", Some("dev-1"))
        );
        assert_eq!(rows[0].request, hr);

        let mut f = ok(5);
        let mut t = nt("dev-task.test", "tester", 0, 1, &["dev-task"]);
        t.max_attempts = 2;
        f.new_tasks = vec![t];
        f.converted_handoffs = vec![(h1, "dev-task.test".into())];
        s.finish_attempt(&c.token, &f).unwrap();

        let rows = s.handoffs(None).unwrap();
        assert_eq!(
            (rows[0].state, rows[0].new_task.as_deref()),
            (HandoffState::Accepted, Some("dev-task.test"))
        );
        assert_eq!(
            rows[1].state,
            HandoffState::Pending,
            "not converted: stays pending"
        );
        let nt_row = s.task("dev-task.test").unwrap().unwrap();
        assert_eq!(
            (nt_row.from_handoff, nt_row.status),
            (Some(h1), Status::Pending)
        );
        assert!(
            s.claim_next(&req("o", &["dev"], 6)).unwrap().is_none(),
            "the new task is for testers"
        );
        let ct = claim(&s, &req("o", &["tester"], 6));
        assert_eq!(ct.task.id, "dev-task.test");

        // a person accepts the other one, then changes their mind
        assert_eq!(
            s.accept_handoff(h2, 7).unwrap().state,
            HandoffState::Accepted
        );
        let rej = s.reject_handoff(h2, "not needed", 8).unwrap();
        assert_eq!(
            (rej.state, rej.reject_reason.as_deref()),
            (HandoffState::Rejected, Some("not needed"))
        );
        assert!(matches!(
            s.accept_handoff(999, 9),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(s.integrity_check().unwrap(), Vec::<String>::new());
    }
}

conformance! {
    fn rejecting_a_converted_handoff_skips_its_pending_task(b) {
        let (_d, s, c) = a_claimed(b);
        let hr = handoff("reviewer", "review");
        let h = s.request_handoff(&c.token, None, &hr, 2).unwrap();
        let mut f = ok(3);
        f.new_tasks = vec![
            nt("a.review", "reviewer", 0, 1, &["a"]),
            nt("a.after", "dev", 0, 2, &["a.review"]),
        ];
        f.converted_handoffs = vec![(h, "a.review".into())];
        s.finish_attempt(&c.token, &f).unwrap();
        s.reject_handoff(h, "no", 4).unwrap();
        assert_eq!(status(&s, "a.review"), Status::Skipped);
        assert_eq!(status(&s, "a.after"), Status::Skipped);
        assert_eq!(s.integrity_check().unwrap(), Vec::<String>::new());
    }
}

conformance! {
    fn failed_attempt_drops_pending_handoffs(b) {
        let (_d, s, c) = a_claimed(b);
        let hr = handoff("tester", "r");
        let h = s.request_handoff(&c.token, None, &hr, 2).unwrap();
        s.finish_attempt(&c.token, &fin_final(Status::Failed, 3))
            .unwrap();
        assert_eq!(s.handoffs(None).unwrap()[0].state, HandoffState::Dropped);
        assert!(matches!(
            s.accept_handoff(h, 4),
            Err(StoreError::Conflict(_))
        ));
    }
}

conformance! {
    fn instances_fleet_and_events_paging(b) {
        let (_d, s) = b.fresh();
        let row = InstanceRow {
            id: "dev-1".into(),
            role: "dev".into(),
            state: "idle".into(),
            current_task: None,
            owner: None,
            updated_ms: 1,
        };
        s.upsert_instance(&row).unwrap();
        let mut busy = row.clone();
        busy.state = "busy".into();
        busy.current_task = Some("a".into());
        s.upsert_instance(&busy).unwrap();
        assert_eq!(s.instances().unwrap(), vec![busy]);
        s.remove_instance("dev-1").unwrap();
        assert!(s.instances().unwrap().is_empty());
        assert!(matches!(
            s.remove_instance("dev-1"),
            Err(StoreError::NotFound(_))
        ));

        assert_eq!(s.fleet("parked_until").unwrap(), None);
        s.set_fleet("parked_until", &serde_json::json!(12345), 1)
            .unwrap();
        s.set_fleet("parked_until", &serde_json::json!({ "ms": 6 }), 2)
            .unwrap();
        assert_eq!(
            s.fleet("parked_until").unwrap(),
            Some(serde_json::json!({ "ms": 6 }))
        );

        s.sync_tasks(
            &[
                nt("a", "dev", 0, 0, &[]),
                nt("b", "dev", 0, 1, &[]),
                nt("c", "dev", 0, 2, &[]),
            ],
            0,
        )
        .unwrap();
        let first = s.events_since(0, 2).unwrap();
        assert_eq!(first.len(), 2);
        let rest = s.events_since(first[1].id, 100).unwrap();
        assert_eq!(rest.len(), 1);
        assert!(rest[0].id > first[1].id);
        assert_eq!(rest[0].kind, "created");
    }
}

conformance! {
    fn fencing_holds_within_one_owner(b) {
        // One borg process stalls past its lease and claims the same task again: the owner
        // id is the same, only the fence tells the two claims apart.
        let (_d, s) = fresh_with_a(b);
        let mut r = req("o1", &["dev"], 0);
        r.lease = Duration::from_millis(10);
        let old = claim(&s, &r);
        r.now_ms = 11;
        let new = claim(&s, &r);
        assert_eq!((old.token.fence, new.token.fence), (1, 2));
        let before = (s.tasks().unwrap(), s.events_since(0, 1000).unwrap());
        assert!(matches!(
            s.heartbeat(&old.token, Duration::from_secs(1), 12),
            Err(StoreError::StaleClaim { .. })
        ));
        assert!(matches!(
            s.start_attempt(&old.token, &start("i", 3, 12)),
            Err(StoreError::StaleClaim { .. })
        ));
        assert!(matches!(
            s.finish_attempt(&old.token, &ok(12)),
            Err(StoreError::StaleClaim { .. })
        ));
        let hr = handoff("t", "r");
        assert!(matches!(
            s.request_handoff(&old.token, None, &hr, 12),
            Err(StoreError::StaleClaim { .. })
        ));
        assert_eq!(
            before,
            (s.tasks().unwrap(), s.events_since(0, 1000).unwrap())
        );
        s.finish_attempt(&new.token, &ok(13)).unwrap();
    }
}

conformance! {
    fn retry_of_a_succeeded_task_blocks_its_dependents_again(b) {
        let (_d, s) = fresh_with(b, &[
            nt("a", "dev", 0, 0, &[]),
            nt("b", "dev", 0, 1, &["a"]),
            nt("c", "dev", 0, 2, &["later"]),
        ]);
        let r = req("o", &["dev"], 1);
        let c = claim(&s, &r);
        s.finish_attempt(&c.token, &ok(2)).unwrap();
        s.retry_task("a", 3).unwrap();
        let r = req("o", &["dev"], 10);
        assert_eq!(
            claim_id(&s, &r).as_deref(),
            Some("a"),
            "b waits for a again"
        );
        assert!(s.claim_next(&r).unwrap().is_none());
        // a dependency that appears later, and succeeds, unblocks its dependent
        s.sync_tasks(&[nt("later", "dev", 9, 3, &[])], 4).unwrap();
        let c = claim(&s, &r);
        assert_eq!(c.task.id, "later");
        s.finish_attempt(&c.token, &ok(5)).unwrap();
        assert_eq!(claim_id(&s, &r).as_deref(), Some("c"));
        // changing deps in place is reflected too
        let mut b2 = nt("b", "dev", 0, 1, &[]);
        b2.hash = "changed".into();
        assert_eq!(s.sync_tasks(&[b2], 6).unwrap().updated, ["b"]);
        assert_eq!(claim_id(&s, &r).as_deref(), Some("b"));
        assert_eq!(s.integrity_check().unwrap(), Vec::<String>::new());
    }
}

conformance! {
    fn heartbeat_extends_the_lease_and_revives_an_expired_untaken_one(b) {
        let (_d, s) = fresh_with_a(b);
        let mut r = req("o1", &["dev"], 0);
        r.lease = Duration::from_millis(100);
        let c = claim(&s, &r);
        s.heartbeat(&c.token, Duration::from_millis(100), 90)
            .unwrap(); // → 190
        assert!(
            s.claim_next(&req("o2", &["dev"], 150)).unwrap().is_none(),
            "renewed lease keeps others out"
        );
        // expired at 190 but nobody took it: the fence still matches, the claim lives on
        s.heartbeat(&c.token, Duration::from_millis(100), 250)
            .unwrap();
        assert_eq!(s.task("a").unwrap().unwrap().lease_expires_ms, Some(350));
        assert!(s.release_expired(300).unwrap().is_empty());
        // once released by the sweep, the old claim is dead
        assert_eq!(
            s.release_expired(351).unwrap().len(),
            0,
            "no attempt was started"
        );
        assert!(matches!(
            s.heartbeat(&c.token, Duration::from_millis(100), 352),
            Err(StoreError::StaleClaim { current: 2, .. })
        ));
        let kinds: Vec<String> = s
            .events_since(0, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds.last().map(String::as_str), Some("lease-expired"));
    }
}

conformance! {
    fn an_expired_claim_competes_with_pending_tasks_by_priority(b) {
        let (_d, s) = fresh_with(b, &[
            nt("high", "dev", 5, 1, &[]),
            nt("low", "dev", 0, 0, &[]),
            nt("top", "dev", 9, 2, &[]),
        ]);
        let mut r = req("o1", &["dev"], 0);
        r.lease = Duration::from_millis(10);
        assert_eq!(claim(&s, &r).task.id, "top");
        assert_eq!(claim(&s, &r).task.id, "high");
        let later = req("o2", &["dev"], 100);
        // both leases expired: takeovers first (higher priority than the pending "low")
        assert_eq!(claim_id(&s, &later).as_deref(), Some("top"));
        assert_eq!(claim_id(&s, &later).as_deref(), Some("high"));
        assert_eq!(claim_id(&s, &later).as_deref(), Some("low"));
        assert_eq!(s.task("top").unwrap().unwrap().fence, 2);
    }
}

conformance! {
    fn grouped_writes_keep_each_writes_own_outcome(b) {
        // Many threads share one store, so their writes are committed in groups. A stale
        // write in a group is refused and changes nothing; the good ones all land.
        let tasks: Vec<NewTask> = (0..32)
            .map(|i| nt(&format!("t{i}"), "dev", 0, i, &[]))
            .collect();
        let (_d, s) = fresh_with(b, &tasks);
        let s = std::sync::Arc::new(s);
        let before = s.events_since(0, 100_000).unwrap().len();
        let handles: Vec<_> = (0..16)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut good = 0;
                    for _ in 0..2 {
                        let c = s
                            .claim_next(&req(&format!("w{w}"), &["dev"], 1))
                            .unwrap()
                            .unwrap();
                        let mut stale = c.token.clone();
                        stale.fence += 100;
                        let e = s.heartbeat(&stale, Duration::from_secs(60), 2).unwrap_err();
                        assert!(matches!(e, StoreError::StaleClaim { .. }), "{e}");
                        s.heartbeat(&c.token, Duration::from_secs(60), 2).unwrap();
                        good += 1;
                    }
                    good
                })
            })
            .collect();
        let claimed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(claimed, 32);
        let rows = s.tasks().unwrap();
        assert!(rows
            .iter()
            .all(|t| t.status == Status::Running && t.fence == 1));
        let events = s.events_since(0, 100_000).unwrap();
        let claimed_events = events[before..]
            .iter()
            .filter(|e| e.kind == "claimed")
            .count();
        assert_eq!(
            claimed_events, 32,
            "one claimed event per claim, nothing from the stale writes"
        );
    }
}

conformance! {
    /// The claim acquires the first reusable instance of the task's role that no other
    /// borg holds, in its own transaction; a pinned task is left to its pin.
    fn claim_acquires_a_reusable_instance_of_its_role(b) {
        let mut pinned = nt("p", "dev", 0, 2, &[]);
        pinned.instance = Some("dev-pin".into());
        let (_d, s) = fresh_with(b, &[nt("a", "dev", 0, 0, &[]), nt("b", "qa", 0, 1, &[]), pinned]);
        // dev-1 is held by another borg: it must be skipped, and stay that borg's.
        let theirs = InstanceRow {
            id: "dev-1".into(),
            role: "dev".into(),
            state: "busy".into(),
            current_task: Some("elsewhere".into()),
            owner: Some("other".into()),
            updated_ms: 1,
        };
        s.upsert_instance(&theirs).unwrap();
        let reuse = vec![
            ("qa".to_string(), "qa-1".to_string()),
            ("dev".to_string(), "dev-1".to_string()),
            ("dev".to_string(), "dev-2".to_string()),
        ];
        let mut r = req("o", &["dev", "qa"], 2);
        r.reuse = reuse.clone();
        r.idle_instances = vec!["dev-pin".into()];
        let ca = claim(&s, &r);
        assert_eq!(ca.task.id, "a");
        assert_eq!(
            ca.instance.as_deref(),
            Some("dev-2"),
            "dev-1 belongs to another borg"
        );
        let rows = s.instances().unwrap();
        let dev2 = rows.iter().find(|i| i.id == "dev-2").expect("dev-2 row");
        assert_eq!(
            (
                dev2.state.as_str(),
                dev2.current_task.as_deref(),
                dev2.owner.as_deref()
            ),
            ("busy", Some("a"), Some("o"))
        );
        assert_eq!(rows.iter().find(|i| i.id == "dev-1"), Some(&theirs));

        let cb = claim(&s, &r);
        assert_eq!(
            (cb.task.id.as_str(), cb.instance.as_deref()),
            ("b", Some("qa-1"))
        );
        let cp = claim(&s, &r);
        assert_eq!(cp.task.id, "p");
        assert_eq!(
            cp.instance, None,
            "a pinned task takes no reusable instance"
        );
        assert!(s.instances().unwrap().iter().all(|i| i.id != "dev-pin"));

        // Finishing the attempt frees its instance in the same commit; the other borg's
        // instance is untouched.
        s.finish_attempt(&ca.token, &ok(5)).unwrap();
        let rows = s.instances().unwrap();
        let dev2 = rows.iter().find(|i| i.id == "dev-2").expect("dev-2 row");
        assert_eq!(
            (
                dev2.state.as_str(),
                dev2.current_task.as_deref(),
                dev2.owner.as_deref()
            ),
            ("idle", None, None)
        );
        assert_eq!(rows.iter().find(|i| i.id == "dev-1"), Some(&theirs));
        let qa1 = rows.iter().find(|i| i.id == "qa-1").expect("qa-1 row");
        assert_eq!(qa1.state, "busy", "b still runs on qa-1");
    }
}

conformance! {
    /// A scoped claim takes only the tasks registered for its owner (another owner's scope
    /// and unregistered tasks stay untouched); releasing the owner forgets its scope.
    fn scoped_claims_take_only_the_owners_registered_tasks(b) {
        let (d, s) = fresh_with(b, &[
            nt("mine-1", "dev", 0, 0, &[]),
            nt("theirs", "dev", 9, 1, &[]),
            nt("mine-2", "dev", 0, 2, &[]),
            nt("unlisted", "dev", 5, 3, &[]),
        ]);
        s.add_scope("o", &["mine-1".into(), "mine-2".into()])
            .unwrap();
        s.add_scope("o", &["mine-2".into()]).unwrap(); // idempotent
        s.add_scope("p", &["theirs".into()]).unwrap();
        let mut r = req("o", &["dev"], 1);
        r.scoped = true;
        assert_eq!(claim(&s, &r).task.id, "mine-1");
        assert_eq!(claim(&s, &r).task.id, "mine-2");
        assert!(s.claim_next(&r).unwrap().is_none(), "nothing else is o's");
        // Unscoped, the highest priority wins as always.
        assert_eq!(claim(&s, &req("q", &["dev"], 1)).task.id, "theirs");

        s.release_owner("o", 2).unwrap();
        let left: Vec<String> = d.scope_rows();
        assert_eq!(left, vec!["p:theirs".to_string()]);
    }
}

conformance! {
    fn a_lazy_takeover_drops_the_old_attempts_pending_handoffs(b) {
        // As release_expired does: the handoff an attempt requested is only worth
        // something if that attempt succeeds, and an attempt whose lease ran out never will.
        let (_d, s) = fresh_with_a(b);
        let mut r = req("o1", &["dev"], 1);
        r.lease = Duration::from_millis(10);
        let c = claim(&s, &r);
        let h = s
            .request_handoff(&c.token, None, &handoff("tester", "old"), 2)
            .unwrap();
        // o1's lease ran out; o2's claim takes the task over lazily, no sweep in between.
        let c2 = claim(&s, &req("o2", &["dev"], 100));
        assert_eq!(c2.task.id, "a");
        assert_eq!(s.handoffs(None).unwrap()[0].state, HandoffState::Dropped);
        assert!(matches!(
            s.accept_handoff(h, 101),
            Err(StoreError::Conflict(_))
        ));
        // The new attempt's success must not turn the old attempt's request into a task.
        s.start_attempt(&c2.token, &AttemptStart::default())
            .unwrap();
        s.finish_attempt(&c2.token, &fin_final(Status::Succeeded, 102))
            .unwrap();
        let ids: Vec<String> = s.tasks().unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["a"], "the old attempt's handoff became a task");
    }
}

/// A succeeded finish whose record names the session the attempt ran.
fn fin_session(session: &str, now: i64) -> AttemptFinish {
    let mut f = fin_final(Status::Succeeded, now);
    f.record = serde_json::json!({ "status": "succeeded", "session_id": session });
    f
}

conformance! {
    fn an_instances_last_session_and_the_whole_fleet_in_one_view(b) {
        let (_d, s) = fresh_with(b, &[nt("a", "dev", 0, 0, &[]), nt("b", "dev", 0, 1, &[])]);
        let on = |instance: &str| AttemptStart {
            instance: instance.into(),
            ..AttemptStart::default()
        };
        assert_eq!(s.last_session("i1").unwrap(), None);
        let ca = claim(&s, &req("o", &["dev"], 1));
        s.start_attempt(&ca.token, &on("i1")).unwrap();
        s.finish_attempt(&ca.token, &fin_session("S-one", 2)).unwrap();
        let cb = claim(&s, &req("o", &["dev"], 3));
        s.start_attempt(&cb.token, &on("i1")).unwrap();
        // Still running: no record yet, so the finished one is the newest session.
        assert_eq!(s.last_session("i1").unwrap().as_deref(), Some("S-one"));
        s.finish_attempt(&cb.token, &fin_session("S-two", 4)).unwrap();
        assert_eq!(s.last_session("i1").unwrap().as_deref(), Some("S-two"));
        assert_eq!(s.last_session("i2").unwrap(), None);
        s.set_fleet("memory", &serde_json::json!({"waiting": true}), 5).unwrap();
        let v = s.fleet_view(6).unwrap();
        assert_eq!(v.tasks.len(), 2);
        let att: Vec<(String, i64)> = v.attempts.iter().map(|a| (a.task.clone(), a.attempt)).collect();
        assert_eq!(att, [("a".to_string(), 1), ("b".to_string(), 1)]);
        assert_eq!(v.fleet["memory"]["waiting"], true);
    }
}

conformance! {
    /// A PostgreSQL client can lose the answer to a finish with its connection and send
    /// it again: the same finish twice is recorded once and both calls succeed, while
    /// any other finish of the ended claim is still stale. The events of the claim's
    /// life carry their data (the attempt number, the lease, the child).
    fn the_same_finish_sent_twice_is_recorded_once(b) {
        let (_d, s) = fresh_with(b, &[nt("a", "dev", 0, 0, &[]), nt("b", "dev", 0, 1, &[])]);
        let c = claim(&s, &req("o", &["dev"], 1_000));
        s.start_attempt(&c.token, &start("dev-1", 77, 1_001)).unwrap();
        s.finish_attempt(&c.token, &ok(1_002)).unwrap();
        s.finish_attempt(&c.token, &ok(1_002)).unwrap();
        assert!(matches!(
            s.finish_attempt(&c.token, &ok(1_003)),
            Err(StoreError::StaleClaim { current: 1, .. })
        ));
        assert!(matches!(
            s.finish_attempt(&c.token, &fin_final(Status::Failed, 1_002)),
            Err(StoreError::StaleClaim { .. })
        ));
        // A retry's finish too, and the retried task is claimed again with fence 2.
        let d = claim(&s, &req("o", &["dev"], 2_000));
        let parked = fin_retry(Status::RateLimited, 2_500, false, 2_001);
        s.finish_attempt(&d.token, &parked).unwrap();
        s.finish_attempt(&d.token, &parked).unwrap();
        let again = claim(&s, &req("o", &["dev"], 3_000));
        assert_eq!((again.task.id.as_str(), again.token.fence, again.attempt), ("b", 2, 2));
        assert!(matches!(
            s.finish_attempt(&d.token, &parked),
            Err(StoreError::StaleClaim { current: 2, .. })
        ));

        let ev = s.events_since(0, 100).unwrap();
        let of = |task: &str, kind: &str| -> Vec<serde_json::Value> {
            ev.iter()
                .filter(|e| e.task.as_deref() == Some(task) && e.kind == kind)
                .map(|e| e.data.clone())
                .collect()
        };
        assert_eq!(of("a", "succeeded").len(), 1, "{ev:?}");
        assert_eq!(of("b", "retry").len(), 1, "{ev:?}");
        assert_eq!(s.attempts("a").unwrap().len(), 1);
        let claimed = of("b", "claimed");
        assert_eq!(claimed.len(), 2);
        assert_eq!(claimed[1]["attempt"], 2);
        assert_eq!(claimed[1]["lease_expires_ms"], 63_000);
        let started = &of("a", "started")[0];
        assert_eq!(
            (&started["attempt"], &started["pid"], &started["instance"]),
            (&serde_json::json!(1), &serde_json::json!(77), &serde_json::json!("dev-1"))
        );
        let done = &of("a", "succeeded")[0];
        assert_eq!((&done["attempt"], &done["attempt_status"]), (&serde_json::json!(1), &serde_json::json!("succeeded")));
        let retry = &of("b", "retry")[0];
        assert_eq!((&retry["not_before_ms"], &retry["counts"]), (&serde_json::json!(2_500), &serde_json::json!(false)));
    }
}
