//! The store's side of `borg serve`, on both backends (SQLite: each test's name;
//! PostgreSQL: `NAME::postgres`): agent registrations (token hashes, re-registration,
//! the agent's owner), progress reports (lease renewal, fencing), the ready-task
//! listing, handoffs whose task waits for a person, and breaker/parking events.

#[macro_use]
mod store_util;

use borg::outcome::Status;
use borg::store::agents::*;
use borg::store::*;
use std::time::Duration;
use store_util::*;

fn reg(id: &str, hash: &str, caps: &[&str]) -> AgentRegistration {
    AgentRegistration {
        id: id.into(),
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
        version: Some("1.0.0".into()),
        token_sha256: hash.into(),
    }
}

fn report(pct: f64) -> ProgressReport {
    ProgressReport {
        percent: pct,
        step: format!("at {pct}"),
        files: vec!["a.rs".into()],
        blockers: vec![],
        notes: None,
    }
}

conformance! {
    fn agents_register_by_token_hash_and_reregister_replaces_it(b) {
        let (_d, s) = b.fresh();
        let a = s.register_agent(&reg("claude-code", "h1", &["coding"]), 5).unwrap();
        assert_eq!((a.id.as_str(), a.registered_ms), ("claude-code", 5));
        assert_eq!(s.agent_by_token("h1").unwrap().unwrap().capabilities, vec!["coding".to_string()]);
        assert!(s.agent_by_token("h2").unwrap().is_none());
        s.register_agent(&reg("claude-code", "h2", &["coding", "ide"]), 6).unwrap();
        assert!(s.agent_by_token("h1").unwrap().is_none(), "the old token stops working");
        assert_eq!(s.agent_by_token("h2").unwrap().unwrap().capabilities.len(), 2);
        assert_eq!(s.agents().unwrap().len(), 1);
        let owner = s.owners().unwrap().into_iter().find(|o| o.id == "agent:claude-code").unwrap();
        assert_eq!((owner.host.as_str(), owner.pid), (AGENT_HOST, 0));
        let ev = s.events_since(0, 100).unwrap();
        let regs: Vec<_> = ev.iter().filter(|e| e.kind == "agent-registered").collect();
        assert_eq!(regs.len(), 2);
        assert!(!regs[0].data.to_string().contains("h1"), "no token hash in the log");
        // Another agent cannot take a token hash already in use.
        assert!(s.register_agent(&reg("other", "h2", &["x"]), 7).is_err());
    }
}

conformance! {
    fn progress_renews_the_lease_under_the_fence(b) {
        let (_d, s) = b.fresh();
        s.sync_tasks(&[nt("a", "dev", 0, 0, &[])], 0).unwrap();
        let c = claim(&s, &req("agent:x", &["dev"], 10));
        s.record_progress(&c.token, &report(40.0), Duration::from_secs(600), 20).unwrap();
        let t = s.task("a").unwrap().unwrap();
        assert_eq!(t.lease_expires_ms, Some(20 + 600_000));
        let p = s.progress().unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].task.as_str(), p[0].fence, p[0].report.percent), ("a", c.token.fence, 40.0));
        let last = s.events_since(0, 100).unwrap().pop().unwrap();
        assert_eq!((last.kind.as_str(), last.data["percent"].as_f64()), ("progress", Some(40.0)));
        let stale = ClaimToken { fence: c.token.fence - 1, ..c.token.clone() };
        let before = s.last_event_id().unwrap();
        assert!(matches!(
            s.record_progress(&stale, &report(50.0), Duration::from_secs(600), 30),
            Err(StoreError::StaleClaim { .. })
        ));
        assert_eq!(s.last_event_id().unwrap(), before);
        assert_eq!(s.progress().unwrap()[0].report.percent, 40.0);
        // Finished: no longer in the progress of running tasks.
        s.finish_attempt(&c.token, &ok(40)).unwrap();
        assert!(s.progress().unwrap().is_empty());
    }
}

conformance! {
    fn ready_tasks_are_what_a_claim_could_take(b) {
        let (_d, s) = b.fresh();
        let mut pinned = nt("pinned", "dev", 9, 0, &[]);
        pinned.instance = Some("dev-1".into());
        s.sync_tasks(&[
            nt("low", "dev", 0, 1, &[]),
            nt("high", "dev", 5, 2, &[]),
            nt("blocked", "dev", 9, 3, &["low"]),
            nt("other-role", "ops", 9, 4, &[]),
            pinned,
        ], 0).unwrap();
        let ids = |roles: &[&str], limit| -> Vec<String> {
            let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
            s.ready_tasks(&roles, 10, limit).unwrap().into_iter().map(|r| r.task.id).collect()
        };
        assert_eq!(ids(&["dev"], 10), ["high", "low"]);
        assert_eq!(ids(&["dev", "ops"], 10), ["other-role", "high", "low"]);
        assert_eq!(ids(&["dev"], 1), ["high"]);
        assert!(ids(&[], 10).is_empty());
        let r = s.ready_tasks(&["dev".to_string()], 10, 10).unwrap();
        assert_eq!(r[0].created_ms, 0);
        claim(&s, &req("o", &["dev"], 10));
        assert_eq!(ids(&["dev"], 10), ["low"]);
    }
}

conformance! {
    fn a_handoff_task_that_awaits_a_person_is_claimable_only_once_accepted(b) {
        let (_d, s) = b.fresh();
        s.sync_tasks(&[nt("src", "dev", 0, 0, &[]), nt("src2", "dev", 0, 1, &[])], 0).unwrap();
        for (src, follow, at) in [("src", "src.tester-1", 10), ("src2", "src2.tester-1", 20)] {
            let c = claim(&s, &req("o", &["dev"], at));
            let h = s.request_handoff(&c.token, Some("dev-1"), &HandoffRequest {
                to_role: "tester".into(), reason: "test it".into(), state: None, next_steps: vec![],
            }, at).unwrap();
            let mut t = nt(follow, "tester", 0, 5, &[src]);
            t.awaits_person = true;
            let mut f = ok(at + 1);
            f.new_tasks = vec![t];
            f.converted_handoffs = vec![(h, follow.to_string())];
            s.finish_attempt(&c.token, &f).unwrap();
            let row = s.handoffs(Some(src)).unwrap().pop().unwrap();
            assert_eq!((row.state, row.new_task.as_deref()), (HandoffState::Pending, Some(follow)));
        }
        assert_eq!(status(&s, "src.tester-1"), Status::Pending);
        assert!(s.claim_next(&req("o", &["tester"], 30)).unwrap().is_none(), "waits for a person");
        assert!(s.ready_tasks(&["tester".to_string()], 30, 10).unwrap().is_empty());
        let kinds: Vec<String> = s.events_since(0, 1000).unwrap().into_iter().map(|e| e.kind).collect();
        assert!(kinds.contains(&"handoff-awaiting".to_string()), "{kinds:?}");
        let first = s.handoffs(Some("src")).unwrap()[0].id;
        let second = s.handoffs(Some("src2")).unwrap()[0].id;
        s.accept_handoff(first, 40).unwrap();
        assert_eq!(claim_id(&s, &req("o", &["tester"], 41)), Some("src.tester-1".into()));
        s.reject_handoff(second, "not needed", 50).unwrap();
        assert_eq!(status(&s, "src2.tester-1"), Status::Skipped);
        assert!(s.claim_next(&req("o", &["tester"], 60)).unwrap().is_none());
    }
}

conformance! {
    fn breaker_and_parking_changes_are_events_other_keys_are_not(b) {
        let (_d, s) = b.fresh();
        let open = serde_json::json!({"open": true, "message": "401"});
        s.set_fleet("breaker", &open, 1).unwrap();
        s.set_fleet("breaker", &open, 2).unwrap();
        s.set_fleet("parked", &serde_json::json!({"until_ms": 99}), 3).unwrap();
        s.set_fleet("totals", &serde_json::json!({"cost": 1}), 4).unwrap();
        let kinds: Vec<String> = s.events_since(0, 100).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["fleet-breaker", "fleet-parked"], "one event per change");
    }
}
