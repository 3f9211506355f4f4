//! Helpers shared by the store integration tests.
#![allow(dead_code)]

use borg::outcome::Status;
use borg::store::sqlite::SqliteStore;
use borg::store::*;
use std::time::Duration;

/// A fresh store in a temp dir (the dir must outlive the store).
pub fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("sub/borg.db")).unwrap();
    (dir, store)
}

/// A task definition.
pub fn nt(id: &str, role: &str, priority: i64, order: i64, deps: &[&str]) -> NewTask {
    NewTask {
        id: id.into(),
        role: role.into(),
        priority,
        order,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        instance: None,
        max_attempts: 3,
        spec: serde_json::json!({ "prompt": format!("do {id}") }),
        hash: format!("h-{id}"),
        awaits_person: false,
    }
}

/// A claim request for `roles` at `now`, lease 60 s.
pub fn req(owner: &str, roles: &[&str], now: i64) -> ClaimRequest {
    ClaimRequest {
        owner: owner.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        idle_instances: vec![],
        reuse: vec![],
        only: vec![],
        scoped: false,
        lease: Duration::from_secs(60),
        now_ms: now,
    }
}

/// A finish with the given disposition.
pub fn fin(status: Status, disposition: Disposition, now: i64) -> AttemptFinish {
    AttemptFinish {
        status,
        record: serde_json::json!({ "status": status.as_str() }),
        disposition,
        new_tasks: vec![],
        converted_handoffs: vec![],
        cost_usd: 0.01,
        now_ms: now,
    }
}

/// A finish whose status is also the task's final status (failed, timed out ...).
pub fn fin_final(status: Status, now: i64) -> AttemptFinish {
    fin(status, Disposition::Final(status), now)
}

/// A finish that puts the task back to be retried from `not_before_ms`, the attempt
/// counted against `max_attempts` or not (a park).
pub fn fin_retry(status: Status, not_before_ms: i64, counts: bool, now: i64) -> AttemptFinish {
    fin(
        status,
        Disposition::Retry {
            not_before_ms,
            counts,
        },
        now,
    )
}

/// Succeeded finish.
pub fn ok(now: i64) -> AttemptFinish {
    fin(Status::Succeeded, Disposition::Succeeded, now)
}

/// An attempt start record.
pub fn start(instance: &str, pid: i64, now: i64) -> AttemptStart {
    AttemptStart {
        instance: instance.into(),
        uid: format!("uid-{pid}"),
        shim_pid: pid - 1,
        pid,
        pgid: pid,
        start_time: 12345,
        boot_id: "boot".into(),
        stdout_log: "out.jsonl".into(),
        stderr_log: "err.log".into(),
        resume_session: None,
        now_ms: now,
    }
}

/// Claims, or panics with a message.
pub fn claim(s: &SqliteStore, r: &ClaimRequest) -> Claim {
    s.claim_next(r).unwrap().expect("a claimable task")
}

/// Claimed id or None.
pub fn claim_id(s: &SqliteStore, r: &ClaimRequest) -> Option<String> {
    s.claim_next(r).unwrap().map(|c| c.task.id)
}

/// Status of a task.
pub fn status(s: &SqliteStore, id: &str) -> Status {
    s.task(id).unwrap().unwrap().status
}
