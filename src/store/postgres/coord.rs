//! File leases on PostgreSQL (the semantics are `store::coord`'s, the rules
//! `store::coord::leasing`'s, the statements those of the SQLite store's `coord`).
//! Every coordination write first takes one transaction-scoped advisory lock, so
//! leases, waits and the wait-for graph change one transaction at a time across every
//! host, as SQLite's single writer does; reads take no lock.

use super::engine::Tx;
use super::errors::R;
use super::read::{self, event, exec, row, rows};
use crate::store::coord::leasing::{self, Node};
use crate::store::coord::*;
use crate::store::ClaimToken;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_postgres::Row;

/// Key of the advisory lock of coordination writes ("borg" in ASCII, then "crd").
const COORD_LOCK: i64 = 0x626f_7267_0063_7264;

/// Milliseconds of a duration, saturating.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Serialises this transaction with every other coordination write.
pub(crate) async fn serialise(tx: &Tx<'_>) -> R<()> {
    exec(tx, "SELECT pg_advisory_xact_lock($1)", &[&COORD_LOCK]).await?;
    Ok(())
}

/// The claim is current for these rows: `running` with their fence, lease not run out.
const LIVE_CLAIM: &str = "t.id = x.task AND t.fence = x.fence AND t.status = 'running'
     AND coalesce(t.lease_expires_ms, 0) >= $1";

/// Lease (or wait) columns, as `lease_row` reads them.
const LEASE_COLS: &str =
    "x.id, x.path, x.task, x.fence, x.instance, x.role, x.reason, x.since_ms, x.expires_ms, x.auto";
const WAIT_COLS: &str =
    "x.id, x.path, x.task, x.fence, x.instance, x.role, ''::text, x.since_ms, x.expires_ms, 0::bigint";

/// One lease or wait row (columns from `at`, then `live`).
fn lease_row(r: &Row, at: usize) -> R<LeaseRow> {
    Ok(LeaseRow {
        id: r.try_get(at)?,
        path: r.try_get(at + 1)?,
        task: r.try_get(at + 2)?,
        fence: r.try_get(at + 3)?,
        instance: r.try_get(at + 4)?,
        role: r.try_get(at + 5)?,
        reason: r.try_get(at + 6)?,
        since_ms: r.try_get(at + 7)?,
        expires_ms: r.try_get(at + 8)?,
        auto: r.try_get::<_, i64>(at + 9)? != 0,
        live: r.try_get::<_, bool>(at + 10)?,
    })
}

/// The role of `who`'s task when its claim is current, else `StaleClaim`.
pub(crate) async fn fenced_role(tx: &Tx<'_>, who: &Actor) -> R<String> {
    let found = row(
        tx,
        "SELECT role FROM tasks WHERE id = $1 AND fence = $2 AND status = 'running' FOR SHARE",
        &[&who.task, &who.fence],
    )
    .await?;
    match found {
        Some(r) => Ok(r.try_get(0)?),
        None => {
            let token = ClaimToken {
                task: who.task.clone(),
                fence: who.fence,
                owner: String::new(),
            };
            Err(read::stale(tx, &token).await)
        }
    }
}

/// Every live lease (`waits = false`) or wait, oldest first.
async fn live_rows(tx: &Tx<'_>, waits: bool, now: i64) -> R<Vec<LeaseRow>> {
    let (cols, table) = if waits {
        (WAIT_COLS, "lease_waits")
    } else {
        (LEASE_COLS, "file_leases")
    };
    let sql = format!(
        "SELECT {cols}, true FROM {table} x JOIN tasks t ON {LIVE_CLAIM} WHERE x.expires_ms >= $1 ORDER BY x.id"
    );
    rows(tx, &sql, &[&now])
        .await?
        .iter()
        .map(|r| lease_row(r, 0))
        .collect()
}

fn mine(row: &LeaseRow, who: &Actor) -> bool {
    row.task == who.task && row.fence == who.fence
}

/// What stands in the way of `who` taking `path` (see the SQLite store's `blocker`).
fn blocker(
    path: &str,
    who: &Actor,
    leases: &[LeaseRow],
    waits: &[LeaseRow],
    my_wait: Option<i64>,
) -> Option<Blocker> {
    if let Some(l) = leases
        .iter()
        .find(|l| !mine(l, who) && leasing::overlap(&l.path, path))
    {
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

/// Takes or renews `who`'s lease on `path`, fenced; whether it is new.
async fn grant(tx: &Tx<'_>, who: &Actor, path: &str, req: &LockRequest, now: i64) -> R<bool> {
    let existed = row(
        tx,
        "SELECT 1 FROM file_leases WHERE task = $1 AND fence = $2 AND path = $3",
        &[&who.task, &who.fence, &path],
    )
    .await?
    .is_some();
    let until = now.saturating_add(ms(req.ttl));
    let auto = i64::from(req.auto);
    let n = exec(
        tx,
        "INSERT INTO file_leases (path, prefix, task, fence, instance, role, uid, reason, since_ms, expires_ms, auto)
         SELECT $1, $2, t.id, t.fence, $5, t.role, $6, $7, $8, $9, $10
         FROM tasks t WHERE t.id = $3 AND t.fence = $4 AND t.status = 'running'
         ON CONFLICT (task, fence, path) DO UPDATE SET expires_ms = greatest(file_leases.expires_ms, excluded.expires_ms),
             reason = CASE WHEN excluded.auto = 1 THEN file_leases.reason ELSE excluded.reason END,
             auto = least(file_leases.auto, excluded.auto)",
        &[&path, &leasing::prefix(path), &who.task, &who.fence, &who.instance, &who.uid, &req.reason, &now, &until, &auto],
    )
    .await?;
    if n == 0 {
        fenced_role(tx, who).await?;
    }
    exec(
        tx,
        "DELETE FROM lease_waits WHERE task = $1 AND fence = $2 AND path = $3",
        &[&who.task, &who.fence, &path],
    )
    .await?;
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
        )
        .await?;
    }
    Ok(!existed)
}

/// `CoordStore::lock_paths`.
pub(crate) async fn lock_paths(
    tx: &Tx<'_>,
    who: &Actor,
    req: &LockRequest,
    now: i64,
) -> R<LockOutcome> {
    serialise(tx).await?;
    let role = fenced_role(tx, who).await?;
    let leases = live_rows(tx, false, now).await?;
    let waits = live_rows(tx, true, now).await?;
    let mut out = LockOutcome::default();
    for p in &req.paths {
        let my_wait = waits
            .iter()
            .find(|w| mine(w, who) && w.path == *p)
            .map(|w| w.id);
        match blocker(p, who, &leases, &waits, my_wait) {
            Some(b) => out.refused.push(b),
            None => {
                grant(tx, who, p, req, now).await?;
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
        drop_waits(tx, who, &refused).await?;
        let data = json!({ "paths": refused, "cycle": cycle });
        event(
            tx,
            now,
            Some(&who.task),
            Some(who.fence),
            &who.instance,
            "lease-deadlock",
            &data,
        )
        .await?;
        out.deadlock = Some(cycle);
        return Ok(out);
    }
    let until = now.saturating_add(ms(queue_for));
    for b in &out.refused {
        exec(
            tx,
            "INSERT INTO lease_waits (path, prefix, task, fence, instance, role, since_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (task, fence, path) DO UPDATE SET expires_ms = excluded.expires_ms",
            &[&b.path, &leasing::prefix(&b.path), &who.task, &who.fence, &who.instance, &role, &now, &until],
        )
        .await?;
    }
    Ok(out)
}

/// The wait-for cycle queueing `who` would close (the SQLite store's `deadlock`).
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
    let mut all: Vec<(Node, String, i64)> = waits
        .iter()
        .filter(|w| node(w) != start)
        .map(|w| (node(w), w.path.clone(), w.id))
        .collect();
    all.extend(
        refused
            .iter()
            .map(|b| (start.clone(), b.path.clone(), i64::MAX)),
    );
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
pub(crate) async fn drop_waits(tx: &Tx<'_>, who: &Actor, paths: &[String]) -> R<()> {
    let all = paths.is_empty();
    exec(
        tx,
        "DELETE FROM lease_waits WHERE task = $1 AND fence = $2 AND ($3 OR path = ANY($4))",
        &[&who.task, &who.fence, &all, &paths],
    )
    .await?;
    Ok(())
}

/// `CoordStore::unlock_paths`.
pub(crate) async fn unlock_paths(
    tx: &Tx<'_>,
    who: &Actor,
    paths: &[String],
    now: i64,
) -> R<Vec<String>> {
    serialise(tx).await?;
    let all = paths.is_empty();
    let released: Vec<String> = rows(
        tx,
        "DELETE FROM file_leases WHERE task = $1 AND fence = $2 AND ($3 OR path = ANY($4)) RETURNING path",
        &[&who.task, &who.fence, &all, &paths],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    drop_waits(tx, who, paths).await?;
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
        )
        .await?;
    }
    Ok(released)
}

/// The leases and waits whose prefix could cover `path`, live, in one indexed query.
async fn covering(tx: &Tx<'_>, path: &str, now: i64) -> R<Vec<(bool, LeaseRow)>> {
    let cands = leasing::candidates(path);
    let sql = format!(
        "SELECT false, {LEASE_COLS}, true FROM file_leases x JOIN tasks t ON {LIVE_CLAIM}
           WHERE x.prefix = ANY($2) AND x.expires_ms >= $1
         UNION ALL
         SELECT true, {WAIT_COLS}, true FROM lease_waits x JOIN tasks t ON {LIVE_CLAIM}
           WHERE x.prefix = ANY($2) AND x.expires_ms >= $1"
    );
    let mut out = Vec::new();
    for r in rows(tx, &sql, &[&now, &cands]).await? {
        let l = lease_row(&r, 1)?;
        if leasing::matches(&l.path, path) {
            out.push((r.try_get::<_, bool>(0)?, l));
        }
    }
    Ok(out)
}

/// `CoordStore::check_write` (it writes only with `auto`).
pub(crate) async fn check_write(
    tx: &Tx<'_>,
    who: &Actor,
    path: &str,
    auto: Option<(&str, Duration)>,
    now: i64,
) -> R<WriteCheck> {
    if auto.is_some() {
        serialise(tx).await?;
    }
    let found = covering(tx, path, now).await?;
    if !found.iter().any(|(wait, l)| !wait && mine(l, who)) {
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
    grant(tx, who, path, &req, now).await?;
    Ok(WriteCheck::Allowed { leased: true })
}

/// Every lease row with its liveness, oldest first.
pub(crate) async fn all_leases(tx: &Tx<'_>, now: i64) -> R<Vec<LeaseRow>> {
    let sql = format!(
        "SELECT {LEASE_COLS}, (x.expires_ms >= $1 AND EXISTS (SELECT 1 FROM tasks t WHERE {LIVE_CLAIM}))
         FROM file_leases x ORDER BY x.id"
    );
    rows(tx, &sql, &[&now])
        .await?
        .iter()
        .map(|r| lease_row(r, 0))
        .collect()
}

/// A person removes lease rows.
pub(crate) async fn drop_leases(tx: &Tx<'_>, ids: &[i64], now: i64) -> R<usize> {
    let paths: Vec<String> = rows(
        tx,
        "DELETE FROM file_leases WHERE id = ANY($1) RETURNING path",
        &[&ids],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    if !paths.is_empty() {
        event(
            tx,
            now,
            None,
            None,
            "user",
            "lease-force-released",
            &json!({ "paths": paths }),
        )
        .await?;
    }
    Ok(paths.len())
}

/// The claim (task, fence) ended: its leases and waits go, in the caller's transaction.
pub(crate) async fn end_claim_leases(tx: &Tx<'_>, task: &str, fence: i64) -> R<()> {
    exec(
        tx,
        "DELETE FROM file_leases WHERE task = $1 AND fence = $2",
        &[&task, &fence],
    )
    .await?;
    exec(
        tx,
        "DELETE FROM lease_waits WHERE task = $1 AND fence = $2",
        &[&task, &fence],
    )
    .await?;
    Ok(())
}
