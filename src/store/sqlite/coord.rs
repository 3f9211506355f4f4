//! File leases in SQLite (the semantics are `store::coord`'s): lock with a fair queue
//! and deadlock detection, the write hook's one-query check, unlock, the end of an
//! attempt's leases with its claim, and the light open the per-call helpers use.
//! Decisions, messages, context, activity, violations and agent tasks are in
//! `coord_log`; the trait impl forwarding to both is `coord_impl`.

use super::read::{self, event, exec};
use super::R;
use crate::store::coord::leasing::{self, Node};
use crate::store::coord::*;
use crate::store::ClaimToken;
use rusqlite::{named_params, params, OptionalExtension, Row, Transaction};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// Milliseconds of a duration, saturating.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The claim is current for these rows: `running` with their fence, lease not run out.
const LIVE_CLAIM: &str = "t.id = x.task AND t.fence = x.fence AND t.status = 'running'
     AND coalesce(t.lease_expires_ms, 0) >= :now";

/// Lease (or wait) columns, in the order `lease_row` reads them; waits give an empty
/// reason and no auto flag.
const LEASE_COLS: &str =
    "x.id, x.path, x.task, x.fence, x.instance, x.role, x.reason, x.since_ms, x.expires_ms, x.auto";
const WAIT_COLS: &str =
    "x.id, x.path, x.task, x.fence, x.instance, x.role, '', x.since_ms, x.expires_ms, 0";

/// One lease or wait row (columns of `LEASE_COLS`, then `live`).
fn lease_row(r: &Row<'_>) -> rusqlite::Result<LeaseRow> {
    Ok(LeaseRow {
        id: r.get(0)?,
        path: r.get(1)?,
        task: r.get(2)?,
        fence: r.get(3)?,
        instance: r.get(4)?,
        role: r.get(5)?,
        reason: r.get(6)?,
        since_ms: r.get(7)?,
        expires_ms: r.get(8)?,
        auto: r.get::<_, i64>(9)? != 0,
        live: r.get::<_, i64>(10)? != 0,
    })
}

/// The role of `who`'s task when its claim is current, else `StaleClaim`.
pub(crate) fn fenced_role(tx: &Transaction<'_>, who: &Actor) -> R<String> {
    let role: Option<String> = tx
        .prepare_cached(
            "SELECT role FROM tasks WHERE id = ?1 AND fence = ?2 AND status = 'running'",
        )?
        .query_row(params![who.task, who.fence], |r| r.get(0))
        .optional()?;
    role.ok_or_else(|| {
        let token = ClaimToken {
            task: who.task.clone(),
            fence: who.fence,
            owner: String::new(),
        };
        read::stale(tx, &token)
    })
}

/// Every live lease (`waits = false`) or wait (`true`), oldest first.
fn live_rows(tx: &Transaction<'_>, waits: bool, now: i64) -> R<Vec<LeaseRow>> {
    let (cols, table) = if waits {
        (WAIT_COLS, "lease_waits")
    } else {
        (LEASE_COLS, "file_leases")
    };
    let sql = format!(
        "SELECT {cols}, 1 FROM {table} x JOIN tasks t ON {LIVE_CLAIM}
         WHERE x.expires_ms >= :now ORDER BY x.id"
    );
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st.query_map(named_params! {":now": now}, lease_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Is this row `who`'s?
fn mine(row: &LeaseRow, who: &Actor) -> bool {
    row.task == who.task && row.fence == who.fence
}

/// What stands in the way of `who` taking `path`: another attempt's conflicting
/// lease, else another attempt's conflicting wait queued before `my_wait` (any, when
/// `who` has not queued for it).
fn blocker(
    path: &str,
    who: &Actor,
    leases: &[LeaseRow],
    waits: &[LeaseRow],
    my_wait: Option<i64>,
) -> Option<Blocker> {
    let held = leases
        .iter()
        .find(|l| !mine(l, who) && leasing::overlap(&l.path, path));
    if let Some(l) = held {
        return Some(Blocker {
            path: path.to_string(),
            kind: BlockKind::Lease,
            held: l.clone(),
        });
    }
    waits
        .iter()
        .filter(|w| !mine(w, who) && my_wait.is_none_or(|m| w.id < m))
        .find(|w| leasing::overlap(&w.path, path))
        .map(|w| Blocker {
            path: path.to_string(),
            kind: BlockKind::Queued,
            held: w.clone(),
        })
}

/// Takes or renews `who`'s lease on `path` (fenced by the INSERT's SELECT); returns
/// whether it is new.
fn grant(tx: &Transaction<'_>, who: &Actor, path: &str, req: &LockRequest, now: i64) -> R<bool> {
    let existed: bool = tx
        .prepare_cached("SELECT 1 FROM file_leases WHERE task = ?1 AND fence = ?2 AND path = ?3")?
        .query_row(params![who.task, who.fence, path], |_| Ok(()))
        .optional()?
        .is_some();
    let until = now.saturating_add(ms(req.ttl));
    let n = exec(
        tx,
        "INSERT INTO file_leases (path, prefix, task, fence, instance, role, uid, reason, since_ms, expires_ms, auto)
         SELECT ?1, ?2, t.id, t.fence, ?5, t.role, ?6, ?7, ?8, ?9, ?10
         FROM tasks t WHERE t.id = ?3 AND t.fence = ?4 AND t.status = 'running'
         ON CONFLICT (task, fence, path) DO UPDATE SET expires_ms = max(expires_ms, excluded.expires_ms),
             reason = CASE WHEN excluded.auto THEN reason ELSE excluded.reason END,
             auto = min(auto, excluded.auto)",
        params![
            path,
            leasing::prefix(path),
            who.task,
            who.fence,
            who.instance,
            who.uid,
            req.reason,
            now,
            until,
            req.auto
        ],
    )?;
    if n == 0 {
        fenced_role(tx, who)?;
    }
    exec(
        tx,
        "DELETE FROM lease_waits WHERE task = ?1 AND fence = ?2 AND path = ?3",
        params![who.task, who.fence, path],
    )?;
    if !existed {
        let data = json!({ "path": path, "reason": req.reason, "auto": req.auto, "instance": who.instance });
        event(
            tx,
            now,
            Some(&who.task),
            Some(who.fence),
            &who.instance,
            "lease-granted",
            &data,
        )?;
    }
    Ok(!existed)
}

/// `CoordStore::lock_paths` in one transaction.
pub(crate) fn lock_paths(
    tx: &Transaction<'_>,
    who: &Actor,
    req: &LockRequest,
    now: i64,
) -> R<LockOutcome> {
    let role = fenced_role(tx, who)?;
    let leases = live_rows(tx, false, now)?;
    let waits = live_rows(tx, true, now)?;
    let my_wait = |p: &str| {
        waits
            .iter()
            .find(|w| mine(w, who) && w.path == p)
            .map(|w| w.id)
    };
    let mut out = LockOutcome::default();
    for p in &req.paths {
        match blocker(p, who, &leases, &waits, my_wait(p)) {
            Some(b) => out.refused.push(b),
            None => {
                grant(tx, who, p, req, now)?;
                out.granted.push(p.clone());
            }
        }
    }
    let Some(queue_for) = req.queue.filter(|_| !out.refused.is_empty()) else {
        return Ok(out);
    };
    let me = (who.instance.clone(), who.task.clone(), role.clone());
    if let Some(cycle) = deadlock(who, &me, &out.refused, &leases, &waits) {
        let refused: Vec<String> = out.refused.iter().map(|b| b.path.clone()).collect();
        drop_waits(tx, who, &refused)?;
        let data = json!({ "paths": refused, "cycle": cycle });
        event(
            tx,
            now,
            Some(&who.task),
            Some(who.fence),
            &who.instance,
            "lease-deadlock",
            &data,
        )?;
        out.deadlock = Some(cycle);
        return Ok(out);
    }
    let until = now.saturating_add(ms(queue_for));
    for b in &out.refused {
        exec(
            tx,
            "INSERT INTO lease_waits (path, prefix, task, fence, instance, role, since_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (task, fence, path) DO UPDATE SET expires_ms = excluded.expires_ms",
            params![b.path, leasing::prefix(&b.path), who.task, who.fence, who.instance, role, now, until],
        )?;
    }
    Ok(out)
}

/// The wait-for cycle that queueing `who` for the refused paths would close, if any.
fn deadlock(
    who: &Actor,
    me: &(String, String, String),
    refused: &[Blocker],
    leases: &[LeaseRow],
    waits: &[LeaseRow],
) -> Option<Vec<WaitEdge>> {
    let node = |r: &LeaseRow| -> Node { (r.task.clone(), r.fence) };
    let mut names: BTreeMap<Node, (String, String, String)> = BTreeMap::new();
    for r in leases.iter().chain(waits) {
        names.insert(
            node(r),
            (r.instance.clone(), r.task.clone(), r.role.clone()),
        );
    }
    let start: Node = (who.task.clone(), who.fence);
    names.insert(start.clone(), me.clone());
    // Every waiter's edges: to the holders of conflicting leases, and to waiters of
    // conflicting paths queued before it. `who`'s new waits queue after everyone.
    let mine: Vec<(String, i64)> = refused.iter().map(|b| (b.path.clone(), i64::MAX)).collect();
    let mut all: Vec<(Node, String, i64)> = waits
        .iter()
        .filter(|w| node(w) != start)
        .map(|w| (node(w), w.path.clone(), w.id))
        .collect();
    all.extend(mine.into_iter().map(|(p, id)| (start.clone(), p, id)));
    let mut edges: BTreeMap<Node, Vec<(String, Node)>> = BTreeMap::new();
    for (waiter, path, id) in &all {
        let e = edges.entry(waiter.clone()).or_default();
        for l in leases
            .iter()
            .filter(|l| node(l) != *waiter && leasing::overlap(&l.path, path))
        {
            e.push((path.clone(), node(l)));
        }
        for (other, opath, oid) in &all {
            if other != waiter && oid < id && leasing::overlap(opath, path) {
                e.push((path.clone(), other.clone()));
            }
        }
    }
    let cycle = leasing::find_cycle(&start, &edges)?;
    let name = |n: &Node| {
        names
            .get(n)
            .cloned()
            .unwrap_or_else(|| (String::new(), n.0.clone(), String::new()))
    };
    Some(
        cycle
            .into_iter()
            .map(|(w, path, h)| WaitEdge {
                waiter: name(&w),
                path,
                holder: name(&h),
            })
            .collect(),
    )
}

/// Removes `who`'s waits for these paths (all of them when empty).
pub(crate) fn drop_waits(tx: &Transaction<'_>, who: &Actor, paths: &[String]) -> R<()> {
    exec(
        tx,
        "DELETE FROM lease_waits WHERE task = ?1 AND fence = ?2
           AND (?3 = '[]' OR path IN (SELECT value FROM json_each(?3)))",
        params![who.task, who.fence, serde_json::to_string(paths)?],
    )?;
    Ok(())
}

/// `CoordStore::unlock_paths`.
pub(crate) fn unlock_paths(
    tx: &Transaction<'_>,
    who: &Actor,
    paths: &[String],
    now: i64,
) -> R<Vec<String>> {
    let list = serde_json::to_string(paths)?;
    let released: Vec<String> = {
        let mut st = tx.prepare_cached(
            "DELETE FROM file_leases WHERE task = ?1 AND fence = ?2
               AND (?3 = '[]' OR path IN (SELECT value FROM json_each(?3))) RETURNING path",
        )?;
        let rows = st.query_map(params![who.task, who.fence, list], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    drop_waits(tx, who, paths)?;
    if !released.is_empty() {
        let data = json!({ "paths": released, "instance": who.instance });
        event(
            tx,
            now,
            Some(&who.task),
            Some(who.fence),
            &who.instance,
            "lease-released",
            &data,
        )?;
    }
    Ok(released)
}

/// The leases and waits whose prefix could cover `path`, live, in one indexed query;
/// waits come back with `auto = false` and an empty reason, marked by the flag.
fn covering(tx: &Transaction<'_>, path: &str, now: i64) -> R<Vec<(bool, LeaseRow)>> {
    let cands = serde_json::to_string(&leasing::candidates(path))?;
    let sql = format!(
        "SELECT 0, {LEASE_COLS}, 1 FROM file_leases x JOIN tasks t ON {LIVE_CLAIM}
           WHERE x.prefix IN (SELECT value FROM json_each(:c)) AND x.expires_ms >= :now
         UNION ALL
         SELECT 1, {WAIT_COLS}, 1 FROM lease_waits x JOIN tasks t ON {LIVE_CLAIM}
           WHERE x.prefix IN (SELECT value FROM json_each(:c)) AND x.expires_ms >= :now"
    );
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st.query_map(named_params! {":c": cands, ":now": now}, |r| {
        let wait: i64 = r.get(0)?;
        // The lease columns start at index 1: read them through an offset view.
        Ok((wait != 0, shifted_row(r)?))
    })?;
    let all: Vec<(bool, LeaseRow)> = rows.collect::<Result<_, _>>()?;
    Ok(all
        .into_iter()
        .filter(|(_, l)| leasing::matches(&l.path, path))
        .collect())
}

/// `lease_row` for a row whose first column is a flag.
fn shifted_row(r: &Row<'_>) -> rusqlite::Result<LeaseRow> {
    Ok(LeaseRow {
        id: r.get(1)?,
        path: r.get(2)?,
        task: r.get(3)?,
        fence: r.get(4)?,
        instance: r.get(5)?,
        role: r.get(6)?,
        reason: r.get(7)?,
        since_ms: r.get(8)?,
        expires_ms: r.get(9)?,
        auto: r.get::<_, i64>(10)? != 0,
        live: r.get::<_, i64>(11)? != 0,
    })
}

/// `CoordStore::check_write` in one transaction (a read one when `auto` is None).
pub(crate) fn check_write(
    tx: &Transaction<'_>,
    who: &Actor,
    path: &str,
    auto: Option<(&str, Duration)>,
    now: i64,
) -> R<WriteCheck> {
    let found = covering(tx, path, now)?;
    let own = found.iter().any(|(wait, l)| !wait && mine(l, who));
    if !own {
        let other = found.iter().find(|(wait, l)| !wait && !mine(l, who));
        let queued = found.iter().find(|(wait, l)| *wait && !mine(l, who));
        if let Some((wait, l)) = other.or(queued) {
            let kind = if *wait {
                BlockKind::Queued
            } else {
                BlockKind::Lease
            };
            return Ok(WriteCheck::Denied(Blocker {
                path: path.to_string(),
                kind,
                held: l.clone(),
            }));
        }
    }
    let Some((reason, ttl)) = auto else {
        return Ok(WriteCheck::Allowed { leased: false });
    };
    let req = LockRequest {
        paths: vec![path.to_string()],
        reason: reason.to_string(),
        ttl,
        auto: true,
        queue: None,
    };
    grant(tx, who, path, &req, now)?;
    Ok(WriteCheck::Allowed { leased: true })
}

/// Every lease row with its liveness, oldest first.
pub(crate) fn all_leases(tx: &Transaction<'_>, now: i64) -> R<Vec<LeaseRow>> {
    let sql = format!(
        "SELECT {LEASE_COLS}, x.expires_ms >= :now AND EXISTS (SELECT 1 FROM tasks t WHERE {LIVE_CLAIM})
         FROM file_leases x ORDER BY x.id"
    );
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st.query_map(named_params! {":now": now}, lease_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A person removes lease rows.
pub(crate) fn drop_leases(tx: &Transaction<'_>, ids: &[i64], now: i64) -> R<usize> {
    let list = serde_json::to_string(ids)?;
    let paths: Vec<String> = {
        let mut st = tx.prepare_cached(
            "DELETE FROM file_leases WHERE id IN (SELECT value FROM json_each(?1)) RETURNING path",
        )?;
        let rows = st.query_map([list], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if !paths.is_empty() {
        event(
            tx,
            now,
            None,
            None,
            "user",
            "lease-force-released",
            &json!({ "paths": paths }),
        )?;
    }
    Ok(paths.len())
}

/// The claim (task, fence) ended: its leases and waits go, in the caller's transaction.
pub(crate) fn end_claim_leases(tx: &Transaction<'_>, task: &str, fence: i64) -> R<()> {
    exec(
        tx,
        "DELETE FROM file_leases WHERE task = ?1 AND fence = ?2",
        params![task, fence],
    )?;
    exec(
        tx,
        "DELETE FROM lease_waits WHERE task = ?1 AND fence = ?2",
        params![task, fence],
    )?;
    Ok(())
}
