//! [`VerifyStore`] and [`MergeStore`] on PostgreSQL, as the SQLite store does them
//! (same rules, events and errors; see `store::merge`). A holder's write locks the
//! target's row (`FOR UPDATE`) before checking its fence, so steps of two borgs on one
//! target are serialised and the loser sees the moved fence.

use super::engine::Tx;
use super::errors::{E, R};
use super::read::{event, exec, json, row, rows};
use super::{tasks, PgStore};
use crate::store::merge::{Landing, MergeEntry, MergeState, MergeStep, TargetClaim, TargetRow};
use crate::store::*;
use serde_json::json;

/// A write transaction running `$body` with `$tx`, the listed variables cloned into
/// each run (a run lost to a dropped connection is made again).
macro_rules! write {
    ($self:ident, [$($v:ident),*], |$tx:ident| $body:expr) => {
        $self.engine.write(move |$tx| {
            $(let $v = $v.clone();)*
            Box::pin(async move { $body.await })
        })
    };
}

/// A read transaction, as `write!`.
macro_rules! read {
    ($self:ident, [$($v:ident),*], |$tx:ident| $body:expr) => {
        $self.engine.read(move |$tx| {
            $(let $v = $v.clone();)*
            Box::pin(async move { $body.await })
        })
    };
}

impl VerifyStore for PgStore {
    fn baseline(&self, commit: &str, gate: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let (c, g) = (commit.to_string(), gate.to_string());
        read!(self, [c, g], |tx| baseline(tx, &c, &g))
    }

    fn put_baseline(
        &self,
        commit: &str,
        gate: &str,
        result: &serde_json::Value,
        now_ms: i64,
    ) -> Result<serde_json::Value, StoreError> {
        let (c, g, v) = (commit.to_string(), gate.to_string(), result.to_string());
        write!(self, [c, g, v], |tx| async move {
            exec(
                tx,
                "INSERT INTO verify_baselines (commit_id, gate, result, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (commit_id, gate) DO NOTHING",
                &[&c, &g, &v, &now_ms],
            )
            .await?;
            baseline(tx, &c, &g)
                .await?
                .ok_or_else(|| E::Json("the baseline just stored is gone".into()))
        })
    }
}

async fn baseline(tx: &Tx<'_>, commit: &str, gate: &str) -> R<Option<serde_json::Value>> {
    let r = row(
        tx,
        "SELECT result FROM verify_baselines WHERE commit_id = $1 AND gate = $2",
        &[&commit, &gate],
    )
    .await?;
    r.map(|r| json(r.try_get(0)?)).transpose()
}

impl MergeStore for PgStore {
    fn claim_target(
        &self,
        target: &str,
        list: &str,
        start: &str,
        owner: &str,
        lease: std::time::Duration,
        now_ms: i64,
    ) -> Result<TargetClaim, StoreError> {
        let (t, l, s, o) = (
            target.to_string(),
            list.to_string(),
            start.to_string(),
            owner.to_string(),
        );
        let until = now_ms + lease.as_millis() as i64;
        write!(self, [t, l, s, o], |tx| claim_target(
            tx, &t, &l, &s, &o, until, now_ms
        ))
    }

    fn renew_target(
        &self,
        claim: &TargetClaim,
        lease: std::time::Duration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let c = claim.clone();
        let until = now_ms + lease.as_millis() as i64;
        write!(self, [c], |tx| async move {
            fenced(tx, &c).await?;
            exec(
                tx,
                "UPDATE merge_targets SET lease_expires_ms = $1, updated_ms = $2 WHERE target = $3",
                &[&until, &now_ms, &c.target],
            )
            .await?;
            Ok(())
        })
    }

    fn release_target(&self, claim: &TargetClaim, now_ms: i64) -> Result<(), StoreError> {
        let c = claim.clone();
        write!(self, [c], |tx| async move {
            fenced(tx, &c).await?;
            exec(
                tx,
                "UPDATE merge_targets SET owner = NULL, lease_expires_ms = NULL, updated_ms = $1 WHERE target = $2",
                &[&now_ms, &c.target],
            )
            .await?;
            Ok(())
        })
    }

    fn record_merge(
        &self,
        claim: &TargetClaim,
        step: &MergeStep,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (c, step) = (claim.clone(), step.clone());
        write!(self, [c, step], |tx| async move {
            fenced(tx, &c).await?;
            record(tx, &c, &step, now_ms).await
        })
    }

    fn merge_target(
        &self,
        target: &str,
    ) -> Result<Option<(TargetRow, Vec<MergeEntry>)>, StoreError> {
        let t = target.to_string();
        read!(self, [t], |tx| async move {
            let Some(r) = target_row(tx, &t, false).await? else {
                return Ok(None);
            };
            Ok(Some((r, entries(tx, &t).await?)))
        })
    }
}

/// See [`MergeStore::claim_target`].
async fn claim_target(
    tx: &Tx<'_>,
    target: &str,
    list: &str,
    start: &str,
    owner: &str,
    until: i64,
    now: i64,
) -> R<TargetClaim> {
    exec(
        tx,
        "INSERT INTO merge_targets (target, list, start, updated_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (target) DO NOTHING",
        &[&target, &list, &start, &now],
    )
    .await?;
    let n = exec(
        tx,
        "UPDATE merge_targets SET owner = $1, lease_expires_ms = $2, fence = fence + 1, updated_ms = $3
         WHERE target = $4 AND (owner IS NULL OR owner = $1 OR lease_expires_ms <= $3
                                OR NOT EXISTS (SELECT 1 FROM owners o WHERE o.id = merge_targets.owner))",
        &[&owner, &until, &now, &target],
    )
    .await?;
    let row = target_row(tx, target, false)
        .await?
        .ok_or_else(|| E::Store(StoreError::NotFound(format!("merge target {target}"))))?;
    if n == 0 {
        return Err(E::Store(row.held(now)));
    }
    Ok(TargetClaim {
        target: target.to_string(),
        owner: owner.to_string(),
        fence: row.fence,
    })
}

/// Locks the target's row and fails with `StaleClaim` unless `c` is its current claim.
async fn fenced(tx: &Tx<'_>, c: &TargetClaim) -> R<()> {
    match target_row(tx, &c.target, true).await? {
        Some(r) if r.fence == c.fence && r.owner.as_deref() == Some(c.owner.as_str()) => Ok(()),
        Some(r) => Err(E::Store(StoreError::StaleClaim {
            task: format!("merge target {}", c.target),
            fence: c.fence,
            current: r.fence,
        })),
        None => Err(E::Store(StoreError::NotFound(format!(
            "merge target {}",
            c.target
        )))),
    }
}

/// One step (see [`MergeStep`]), the claim already checked.
async fn record(tx: &Tx<'_>, c: &TargetClaim, step: &MergeStep, now: i64) -> R<()> {
    match step {
        MergeStep::Landed { head, tasks } => landed(tx, c, head, tasks, now).await,
        MergeStep::Conflict {
            task,
            commit,
            files,
            resolve,
        } => {
            if !tasks::insert_new(tx, resolve, now, None, &c.owner, Some(task)).await? {
                return Err(E::Store(StoreError::Conflict(format!(
                    "task {} exists already; it cannot resolve the merge of {task}",
                    resolve.id
                ))));
            }
            let e = MergeEntry {
                resolve_task: Some(resolve.id.clone()),
                files: files.clone(),
                ..entry(task, MergeState::Conflict, commit, now)
            };
            put_entry(tx, &c.target, &e).await?;
            let data = json!({"target": c.target, "files": files, "resolve_task": resolve.id});
            event(tx, now, Some(task), None, &c.owner, "merge_conflict", &data).await
        }
        MergeStep::Rejected {
            task,
            commit,
            gate,
            output_tail,
            error,
            fix,
        } => {
            rejected(
                tx,
                c,
                [task, commit, gate, output_tail, error],
                fix.as_ref(),
                now,
            )
            .await
        }
        MergeStep::GateRuns(n) => {
            exec(
                tx,
                "UPDATE merge_targets SET gate_runs = gate_runs + $1, updated_ms = $2 WHERE target = $3",
                &[n, &now, &c.target],
            )
            .await?;
            Ok(())
        }
    }
}

async fn landed(tx: &Tx<'_>, c: &TargetClaim, head: &str, ts: &[Landing], now: i64) -> R<()> {
    exec(
        tx,
        "UPDATE merge_targets SET head = $1, updated_ms = $2 WHERE target = $3",
        &[&head, &now, &c.target],
    )
    .await?;
    for l in ts {
        let e = MergeEntry {
            merged: Some(l.merged.clone()),
            ..entry(&l.task, MergeState::Landed, &l.commit, now)
        };
        put_entry(tx, &c.target, &e).await?;
        let data = json!({"target": c.target, "commit": l.commit, "merged": l.merged});
        event(
            tx,
            now,
            Some(&l.task),
            None,
            &c.owner,
            "merge_landed",
            &data,
        )
        .await?;
    }
    Ok(())
}

async fn rejected(
    tx: &Tx<'_>,
    c: &TargetClaim,
    [task, commit, gate, tail, error]: [&String; 5],
    fix: Option<&NewTask>,
    now: i64,
) -> R<()> {
    if let Some(f) = fix {
        tasks::insert_new(tx, f, now, None, &c.owner, Some(task)).await?;
    }
    let e = MergeEntry {
        gate: Some(gate.clone()),
        output_tail: Some(tail.clone()),
        fix_task: fix.map(|f| f.id.clone()),
        ..entry(task, MergeState::Rejected, commit, now)
    };
    put_entry(tx, &c.target, &e).await?;
    let n = exec(
        tx,
        "UPDATE tasks SET status = 'integration_failed', updated_ms = $1 WHERE id = $2 AND status = 'succeeded'",
        &[&now, task],
    )
    .await?;
    if n > 0 {
        exec(
            tx,
            "UPDATE attempts SET record = (record::jsonb || jsonb_build_object('error', $1::text, 'fault', 'integration'))::text
             WHERE task = $2 AND record IS NOT NULL
               AND attempt = (SELECT max(attempt) FROM attempts WHERE task = $2)",
            &[error, task],
        )
        .await?;
        tasks::skip_dependents(tx, task, "its dependency was not merged", now, &c.owner).await?;
    }
    let data = json!({"target": c.target, "gate": gate, "fix_task": fix.map(|f| &f.id)});
    event(tx, now, Some(task), None, &c.owner, "merge_rejected", &data).await
}

/// A fresh entry.
fn entry(task: &str, state: MergeState, commit: &str, now: i64) -> MergeEntry {
    MergeEntry {
        task: task.to_string(),
        state,
        commit: commit.to_string(),
        merged: None,
        resolve_task: None,
        files: Vec::new(),
        gate: None,
        output_tail: None,
        fix_task: None,
        updated_ms: now,
    }
}

async fn put_entry(tx: &Tx<'_>, target: &str, e: &MergeEntry) -> R<()> {
    let files = serde_json::to_string(&e.files)?;
    exec(
        tx,
        "INSERT INTO merge_entries (target, task, state, commit_id, merged, resolve_task, files, gate,
                                    output_tail, fix_task, updated_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (target, task) DO UPDATE SET state = excluded.state, commit_id = excluded.commit_id,
             merged = excluded.merged, resolve_task = coalesce(excluded.resolve_task, merge_entries.resolve_task),
             files = CASE WHEN excluded.files = '[]' THEN merge_entries.files ELSE excluded.files END, gate = excluded.gate, output_tail = excluded.output_tail,
             fix_task = excluded.fix_task, updated_ms = excluded.updated_ms",
        &[
            &target,
            &e.task,
            &e.state.as_str(),
            &e.commit,
            &e.merged,
            &e.resolve_task,
            &files,
            &e.gate,
            &e.output_tail,
            &e.fix_task,
            &e.updated_ms,
        ],
    )
    .await?;
    Ok(())
}

async fn target_row(tx: &Tx<'_>, target: &str, lock: bool) -> R<Option<TargetRow>> {
    let sql = format!(
        "SELECT target, list, start, head, owner, fence, lease_expires_ms, gate_runs
         FROM merge_targets WHERE target = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let Some(r) = row(tx, &sql, &[&target]).await? else {
        return Ok(None);
    };
    Ok(Some(TargetRow {
        target: r.try_get(0)?,
        list: r.try_get(1)?,
        start: r.try_get(2)?,
        head: r.try_get(3)?,
        owner: r.try_get(4)?,
        fence: r.try_get(5)?,
        lease_expires_ms: r.try_get(6)?,
        gate_runs: r.try_get(7)?,
    }))
}

async fn entries(tx: &Tx<'_>, target: &str) -> R<Vec<MergeEntry>> {
    let found = rows(
        tx,
        "SELECT task, state, commit_id, merged, resolve_task, files, gate, output_tail, fix_task, updated_ms
         FROM merge_entries WHERE target = $1 ORDER BY task",
        &[&target],
    )
    .await?;
    let mut out = Vec::new();
    for r in found {
        let state: String = r.try_get(1)?;
        let files: String = r.try_get(5)?;
        out.push(MergeEntry {
            task: r.try_get(0)?,
            state: MergeState::parse(&state)
                .ok_or_else(|| E::Json(format!("unknown merge state {state:?}")))?,
            commit: r.try_get(2)?,
            merged: r.try_get(3)?,
            resolve_task: r.try_get(4)?,
            files: serde_json::from_str(&files)?,
            gate: r.try_get(6)?,
            output_tail: r.try_get(7)?,
            fix_task: r.try_get(8)?,
            updated_ms: r.try_get(9)?,
        });
    }
    Ok(out)
}
