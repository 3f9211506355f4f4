//! [`VerifyStore`] and [`MergeStore`] for SQLite: the baseline cache, and the merge
//! queue's claimable targets and entries (see `store::merge` for the semantics), each
//! write in the caller's `BEGIN IMMEDIATE` transaction.

use super::read::{event, exec};
use super::{tasks, SqliteStore, E, R};
use crate::store::merge::{Landing, MergeEntry, MergeState, MergeStep, TargetClaim, TargetRow};
use crate::store::*;
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::json;

impl VerifyStore for SqliteStore {
    fn baseline(&self, commit: &str, gate: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let (c, g) = (commit.to_string(), gate.to_string());
        self.read(move |tx| {
            let text: Option<String> = tx
                .prepare_cached(
                    "SELECT result FROM verify_baselines WHERE commit_id = ?1 AND gate = ?2",
                )?
                .query_row(params![c, g], |r| r.get(0))
                .optional()?;
            text.map(|t| super::read::json(&t)).transpose()
        })
    }

    fn put_baseline(
        &self,
        commit: &str,
        gate: &str,
        result: &serde_json::Value,
        now_ms: i64,
    ) -> Result<serde_json::Value, StoreError> {
        let (c, g, v) = (commit.to_string(), gate.to_string(), result.to_string());
        self.write(move |tx| {
            exec(
                tx,
                "INSERT INTO verify_baselines (commit_id, gate, result, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (commit_id, gate) DO NOTHING",
                params![c, g, v, now_ms],
            )?;
            let kept: String = tx
                .prepare_cached(
                    "SELECT result FROM verify_baselines WHERE commit_id = ?1 AND gate = ?2",
                )?
                .query_row(params![c, g], |r| r.get(0))?;
            super::read::json(&kept)
        })
    }
}

impl MergeStore for SqliteStore {
    fn claim_target(
        &self,
        target: &str,
        list: &str,
        start: &str,
        owner: &str,
        lease: std::time::Duration,
        now_ms: i64,
    ) -> Result<TargetClaim, StoreError> {
        let (t, l, s, o): (String, String, String, String) =
            (target.into(), list.into(), start.into(), owner.into());
        let until = now_ms + lease.as_millis() as i64;
        self.write(move |tx| claim_target(tx, (&t, &l, &s, &o), until, now_ms))
    }

    fn renew_target(
        &self,
        claim: &TargetClaim,
        lease: std::time::Duration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let c = claim.clone();
        let until = now_ms + lease.as_millis() as i64;
        self.write(move |tx| {
            fenced(tx, &c)?;
            exec(
                tx,
                "UPDATE merge_targets SET lease_expires_ms = ?1, updated_ms = ?2 WHERE target = ?3",
                params![until, now_ms, c.target],
            )?;
            Ok(())
        })
    }

    fn release_target(&self, claim: &TargetClaim, now_ms: i64) -> Result<(), StoreError> {
        let c = claim.clone();
        self.write(move |tx| {
            fenced(tx, &c)?;
            exec(
                tx,
                "UPDATE merge_targets SET owner = NULL, lease_expires_ms = NULL, updated_ms = ?1 WHERE target = ?2",
                params![now_ms, c.target],
            )?;
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
        self.write(move |tx| {
            fenced(tx, &c)?;
            record(tx, &c, &step, now_ms)
        })
    }

    fn merge_target(
        &self,
        target: &str,
    ) -> Result<Option<(TargetRow, Vec<MergeEntry>)>, StoreError> {
        let t = target.to_string();
        self.read(move |tx| {
            let Some(row) = target_row(tx, &t)? else {
                return Ok(None);
            };
            Ok(Some((row, entries(tx, &t)?)))
        })
    }
}

/// See [`MergeStore::claim_target`].
fn claim_target(
    tx: &Transaction<'_>,
    (target, list, start, owner): (&str, &str, &str, &str),
    until: i64,
    now: i64,
) -> R<TargetClaim> {
    exec(
        tx,
        "INSERT INTO merge_targets (target, list, start, updated_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (target) DO NOTHING",
        params![target, list, start, now],
    )?;
    let n = exec(
        tx,
        "UPDATE merge_targets SET owner = ?1, lease_expires_ms = ?2, fence = fence + 1, updated_ms = ?3
         WHERE target = ?4 AND (owner IS NULL OR owner = ?1 OR lease_expires_ms <= ?3
                                OR NOT EXISTS (SELECT 1 FROM owners o WHERE o.id = merge_targets.owner))",
        params![owner, until, now, target],
    )?;
    let row = target_row(tx, target)?
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

/// Fails with `StaleClaim` unless `c` is the target's current claim.
fn fenced(tx: &Transaction<'_>, c: &TargetClaim) -> R<()> {
    let now: Option<(i64, Option<String>)> = tx
        .prepare_cached("SELECT fence, owner FROM merge_targets WHERE target = ?1")?
        .query_row([&c.target], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match now {
        Some((fence, Some(owner))) if fence == c.fence && owner == c.owner => Ok(()),
        Some((current, _)) => Err(E::Store(StoreError::StaleClaim {
            task: format!("merge target {}", c.target),
            fence: c.fence,
            current,
        })),
        None => Err(E::Store(StoreError::NotFound(format!(
            "merge target {}",
            c.target
        )))),
    }
}

/// One step (see [`MergeStep`]), the claim already checked.
fn record(tx: &Transaction<'_>, c: &TargetClaim, step: &MergeStep, now: i64) -> R<()> {
    match step {
        MergeStep::Landed { head, tasks } => landed(tx, c, head, tasks, now),
        MergeStep::Conflict {
            task,
            commit,
            files,
            resolve,
        } => {
            if !tasks::insert_new(tx, resolve, now, None, &c.owner, Some(task))? {
                return Err(E::Store(StoreError::Conflict(format!(
                    "task {} exists already; it cannot resolve the merge of {task}",
                    resolve.id
                ))));
            }
            let e = entry(task, MergeState::Conflict, commit, now);
            let e = MergeEntry {
                resolve_task: Some(resolve.id.clone()),
                files: files.clone(),
                ..e
            };
            put_entry(tx, &c.target, &e)?;
            let data = json!({"target": c.target, "files": files, "resolve_task": resolve.id});
            event(tx, now, Some(task), None, &c.owner, "merge_conflict", &data)
        }
        MergeStep::Rejected {
            task,
            commit,
            gate,
            output_tail,
            error,
            fix,
        } => rejected(
            tx,
            c,
            (task, commit, gate, output_tail),
            error,
            fix.as_ref(),
            now,
        ),
        MergeStep::GateRuns(n) => {
            exec(
                tx,
                "UPDATE merge_targets SET gate_runs = gate_runs + ?1, updated_ms = ?2 WHERE target = ?3",
                params![n, now, c.target],
            )?;
            Ok(())
        }
    }
}

fn landed(tx: &Transaction<'_>, c: &TargetClaim, head: &str, ts: &[Landing], now: i64) -> R<()> {
    exec(
        tx,
        "UPDATE merge_targets SET head = ?1, updated_ms = ?2 WHERE target = ?3",
        params![head, now, c.target],
    )?;
    for l in ts {
        let e = MergeEntry {
            merged: Some(l.merged.clone()),
            ..entry(&l.task, MergeState::Landed, &l.commit, now)
        };
        put_entry(tx, &c.target, &e)?;
        let data = json!({"target": c.target, "commit": l.commit, "merged": l.merged});
        event(
            tx,
            now,
            Some(&l.task),
            None,
            &c.owner,
            "merge_landed",
            &data,
        )?;
    }
    Ok(())
}

fn rejected(
    tx: &Transaction<'_>,
    c: &TargetClaim,
    (task, commit, gate, tail): (&str, &str, &str, &str),
    error: &str,
    fix: Option<&NewTask>,
    now: i64,
) -> R<()> {
    if let Some(f) = fix {
        tasks::insert_new(tx, f, now, None, &c.owner, Some(task))?;
    }
    let e = MergeEntry {
        gate: Some(gate.to_string()),
        output_tail: Some(tail.to_string()),
        fix_task: fix.map(|f| f.id.clone()),
        ..entry(task, MergeState::Rejected, commit, now)
    };
    put_entry(tx, &c.target, &e)?;
    let n = exec(
        tx,
        "UPDATE tasks SET status = 'integration_failed', updated_ms = ?1 WHERE id = ?2 AND status = 'succeeded'",
        params![now, task],
    )?;
    if n > 0 {
        exec(
            tx,
            "UPDATE attempts SET record = json_set(record, '$.error', ?1, '$.fault', 'integration')
             WHERE task = ?2 AND record IS NOT NULL
               AND attempt = (SELECT max(attempt) FROM attempts WHERE task = ?2)",
            params![error, task],
        )?;
        tasks::skip_dependents(tx, task, "its dependency was not merged", now, &c.owner)?;
    }
    let data = json!({"target": c.target, "gate": gate, "fix_task": fix.map(|f| &f.id)});
    event(tx, now, Some(task), None, &c.owner, "merge_rejected", &data)
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

fn put_entry(tx: &Transaction<'_>, target: &str, e: &MergeEntry) -> R<()> {
    exec(
        tx,
        "INSERT INTO merge_entries (target, task, state, commit_id, merged, resolve_task, files, gate,
                                    output_tail, fix_task, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (target, task) DO UPDATE SET state = excluded.state, commit_id = excluded.commit_id,
             merged = excluded.merged, resolve_task = coalesce(excluded.resolve_task, merge_entries.resolve_task),
             files = CASE WHEN excluded.files = '[]' THEN merge_entries.files ELSE excluded.files END, gate = excluded.gate, output_tail = excluded.output_tail,
             fix_task = excluded.fix_task, updated_ms = excluded.updated_ms",
        params![
            target,
            e.task,
            e.state.as_str(),
            e.commit,
            e.merged,
            e.resolve_task,
            serde_json::to_string(&e.files)?,
            e.gate,
            e.output_tail,
            e.fix_task,
            e.updated_ms
        ],
    )?;
    Ok(())
}

fn target_row(tx: &Transaction<'_>, target: &str) -> R<Option<TargetRow>> {
    Ok(tx
        .prepare_cached(
            "SELECT target, list, start, head, owner, fence, lease_expires_ms, gate_runs
             FROM merge_targets WHERE target = ?1",
        )?
        .query_row([target], |r| {
            Ok(TargetRow {
                target: r.get(0)?,
                list: r.get(1)?,
                start: r.get(2)?,
                head: r.get(3)?,
                owner: r.get(4)?,
                fence: r.get(5)?,
                lease_expires_ms: r.get(6)?,
                gate_runs: r.get(7)?,
            })
        })
        .optional()?)
}

fn entries(tx: &Transaction<'_>, target: &str) -> R<Vec<MergeEntry>> {
    let mut st = tx.prepare_cached(
        "SELECT task, state, commit_id, merged, resolve_task, files, gate, output_tail, fix_task, updated_ms
         FROM merge_entries WHERE target = ?1 ORDER BY task",
    )?;
    let rows = st.query_map([target], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, Option<String>>(8)?,
            r.get::<_, i64>(9)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (task, state, commit, merged, resolve_task, files, gate, output_tail, fix_task, at) =
            row?;
        out.push(MergeEntry {
            task,
            state: MergeState::parse(&state)
                .ok_or_else(|| E::Json(format!("unknown merge state {state:?}")))?,
            commit,
            merged,
            resolve_task,
            files: serde_json::from_str(&files)?,
            gate,
            output_tail,
            fix_task,
            updated_ms: at,
        });
    }
    Ok(out)
}
