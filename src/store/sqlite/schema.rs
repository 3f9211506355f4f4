//! Schema migrations, versioned by `PRAGMA user_version`.
//!
//! Each step takes the database from version N-1 to N and runs, with the version bump,
//! inside one `BEGIN IMMEDIATE` transaction, so two borgs opening a fresh or old file at
//! once cannot both migrate it: the second waits for the lock, then sees the new version.
//! Steps are never edited once released; a change is a new step.
//!
//! - v1: the first shape (tasks, task_deps, attempts, owners, instances, handoffs, events).
//! - v2: retries that do not count (`tasks.counted_attempts`, back-filled from
//!   `attempts` because v1 counted every attempt), handoff-created tasks
//!   (`tasks.from_handoff`), un-skipping on retry (`tasks.skipped_by`), resumed sessions
//!   (`attempts.resume_session`), fleet-wide values (`fleet`), an index for the lease
//!   sweep, and the trigger-kept count of unmet dependencies (`tasks.unmet`) that makes
//!   the claim fast on big lists.
//! - v3: the claim scope of a run (`run_scope`).
//! - v4: the host id of an owner (`owners.host_id`).
//! - v5: coordination (`coord`): file leases and their wait queue, decisions, messages
//!   and read receipts, the shared context, attempt activity, lease violations and
//!   tasks created by agents; and the statuses of checked work (`verify_failed`,
//!   `out_of_scope`, `integration_failed`) allowed in `tasks.status` (the CHECK is
//!   widened in place, see [`widen_statuses`]).
//! - v6: outside agents of `borg serve` (`agents`, token hashes only) and the latest
//!   progress each task reported (`task_progress`).
//! - v7: checked work: the baseline cache of verification gates (`verify_baselines`)
//!   and the merge queue (`merge_targets`, claimable with a lease and a fencing token;
//!   `merge_entries`, what each task's merge came to).

use super::R;
use crate::store::StoreError;
use rusqlite::{Connection, TransactionBehavior};

/// The newest schema version this build understands.
pub const SCHEMA_VERSION: i64 = 7;

/// v1: the initial shape.
pub(crate) const V1: &str = r#"
CREATE TABLE tasks (
    id               TEXT PRIMARY KEY NOT NULL,
    role             TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    ord              INTEGER NOT NULL DEFAULT 0,
    instance         TEXT,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                       ('pending','running','succeeded','failed','timed_out','skipped',
                        'interrupted','spawn_failed','killed','rate_limited')),
    fence            INTEGER NOT NULL DEFAULT 0,
    owner            TEXT,
    lease_expires_ms INTEGER,
    heartbeat_ms     INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 1,
    not_before_ms    INTEGER NOT NULL DEFAULT 0,
    spec             TEXT NOT NULL CHECK (json_valid(spec)),
    hash             TEXT NOT NULL,
    last_record      TEXT CHECK (last_record IS NULL OR json_valid(last_record)),
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    CHECK ((status = 'running') = (owner IS NOT NULL))
) STRICT;
CREATE INDEX tasks_claim ON tasks (status, priority DESC, ord, id);

CREATE TABLE task_deps (
    task TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    dep  TEXT NOT NULL,            -- may name a task not (yet) in the store: never satisfied
    pos  INTEGER NOT NULL,         -- position in the list, to give deps back in order
    PRIMARY KEY (task, dep)
) STRICT, WITHOUT ROWID;
CREATE INDEX task_deps_dep ON task_deps (dep, task);

CREATE TABLE attempts (
    task        TEXT NOT NULL REFERENCES tasks(id),
    attempt     INTEGER NOT NULL,
    fence       INTEGER NOT NULL,
    owner       TEXT NOT NULL,
    status      TEXT NOT NULL,
    instance    TEXT NOT NULL DEFAULT '',
    uid         TEXT NOT NULL DEFAULT '',
    shim_pid    INTEGER NOT NULL DEFAULT 0,
    pid         INTEGER NOT NULL DEFAULT 0,
    pgid        INTEGER NOT NULL DEFAULT 0,
    start_time  INTEGER NOT NULL DEFAULT 0,
    boot_id     TEXT NOT NULL DEFAULT '',
    stdout_log  TEXT NOT NULL DEFAULT '',
    stderr_log  TEXT NOT NULL DEFAULT '',
    record      TEXT CHECK (record IS NULL OR json_valid(record)),
    cost_usd    REAL NOT NULL DEFAULT 0,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    PRIMARY KEY (task, attempt)
) STRICT;
CREATE INDEX attempts_running ON attempts (status, owner);

CREATE TABLE owners (
    id            TEXT PRIMARY KEY NOT NULL,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    start_time    INTEGER NOT NULL,
    boot_id       TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    heartbeat_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE instances (
    id           TEXT PRIMARY KEY NOT NULL,
    role         TEXT NOT NULL,
    state        TEXT NOT NULL,
    current_task TEXT,
    owner        TEXT,
    updated_ms   INTEGER NOT NULL
) STRICT;

CREATE TABLE handoffs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    task          TEXT NOT NULL REFERENCES tasks(id),
    fence         INTEGER NOT NULL,
    from_role     TEXT NOT NULL,
    from_instance TEXT,
    to_role       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    work_state    TEXT,
    next_steps    TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(next_steps)),
    state         TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending','accepted','rejected','dropped')),
    new_task      TEXT,
    reject_reason TEXT,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
) STRICT;
CREATE INDEX handoffs_task ON handoffs (task, state);

CREATE TABLE events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms  INTEGER NOT NULL,
    task   TEXT,
    fence  INTEGER,
    actor  TEXT NOT NULL,
    kind   TEXT NOT NULL,
    data   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data))
) STRICT;
CREATE INDEX events_task ON events (task, id);
"#;

/// v1 → v2.
pub(crate) const V2: &str = r#"
ALTER TABLE tasks ADD COLUMN counted_attempts INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET counted_attempts = attempts;
ALTER TABLE tasks ADD COLUMN from_handoff INTEGER;
ALTER TABLE tasks ADD COLUMN skipped_by TEXT;
CREATE INDEX tasks_lease ON tasks (status, lease_expires_ms);
CREATE INDEX tasks_skipped_by ON tasks (skipped_by) WHERE skipped_by IS NOT NULL;
ALTER TABLE attempts ADD COLUMN resume_session TEXT;
CREATE TABLE fleet (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL CHECK (json_valid(value)),
    updated_ms INTEGER NOT NULL
) STRICT;

-- unmet = how many dependencies are not (yet) succeeded, unknown ids included. Kept by
-- triggers, so no code path can forget it; lets the claim walk only ready tasks
-- (tasks_ready) instead of every pending one whose dependencies are still running.
ALTER TABLE tasks ADD COLUMN unmet INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET unmet = (SELECT count(*) FROM task_deps d LEFT JOIN tasks p ON p.id = d.dep
                          WHERE d.task = tasks.id AND (p.status IS NULL OR p.status <> 'succeeded'));
CREATE INDEX tasks_ready ON tasks (priority DESC, ord, id) WHERE status = 'pending' AND unmet = 0;
CREATE TRIGGER tasks_succeeded_on AFTER UPDATE OF status ON tasks
    WHEN new.status = 'succeeded' AND old.status <> 'succeeded'
BEGIN
    UPDATE tasks SET unmet = unmet - 1 WHERE id IN (SELECT task FROM task_deps WHERE dep = new.id);
END;
CREATE TRIGGER tasks_succeeded_off AFTER UPDATE OF status ON tasks
    WHEN old.status = 'succeeded' AND new.status <> 'succeeded'
BEGIN
    UPDATE tasks SET unmet = unmet + 1 WHERE id IN (SELECT task FROM task_deps WHERE dep = new.id);
END;
CREATE TRIGGER tasks_inserted_succeeded AFTER INSERT ON tasks WHEN new.status = 'succeeded'
BEGIN
    UPDATE tasks SET unmet = unmet - 1 WHERE id IN (SELECT task FROM task_deps WHERE dep = new.id);
END;
CREATE TRIGGER task_deps_added AFTER INSERT ON task_deps
BEGIN
    UPDATE tasks SET unmet = unmet + NOT EXISTS (SELECT 1 FROM tasks p WHERE p.id = new.dep AND p.status = 'succeeded')
    WHERE id = new.task;
END;
CREATE TRIGGER task_deps_removed AFTER DELETE ON task_deps
BEGIN
    UPDATE tasks SET unmet = unmet - NOT EXISTS (SELECT 1 FROM tasks p WHERE p.id = old.dep AND p.status = 'succeeded')
    WHERE id = old.task;
END;
"#;

/// v2 → v3: the tasks a run may claim, registered once per run (and per handoff)
/// instead of passed as a list to every claim, which made a scoped run O(n²).
pub(crate) const V3: &str = r#"
CREATE TABLE run_scope (
    owner TEXT NOT NULL,
    task  TEXT NOT NULL,
    PRIMARY KEY (owner, task)
) STRICT, WITHOUT ROWID;
"#;

/// v3 → v4: a host's name in the fleet (`borg worker --host-id`), shown by `borg
/// status`; empty for owners registered before.
pub(crate) const V4: &str = r#"
ALTER TABLE owners ADD COLUMN host_id TEXT NOT NULL DEFAULT '';
"#;

/// v4 → v5: coordination. Leases and waits carry the claim (task, fence) they belong
/// to and the prefix the write hook looks them up by (see `store::coord::leasing`).
pub(crate) const V5: &str = r#"
CREATE TABLE file_leases (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    path       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    task       TEXT NOT NULL,
    fence      INTEGER NOT NULL,
    instance   TEXT NOT NULL,
    role       TEXT NOT NULL,
    uid        TEXT NOT NULL DEFAULT '',
    reason     TEXT NOT NULL DEFAULT '',
    since_ms   INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    auto       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (task, fence, path)
) STRICT;
CREATE INDEX file_leases_prefix ON file_leases (prefix);
CREATE TABLE lease_waits (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    path       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    task       TEXT NOT NULL,
    fence      INTEGER NOT NULL,
    instance   TEXT NOT NULL,
    role       TEXT NOT NULL,
    since_ms   INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    UNIQUE (task, fence, path)
) STRICT;
CREATE INDEX lease_waits_prefix ON lease_waits (prefix);
CREATE TABLE decisions (
    id          TEXT PRIMARY KEY NOT NULL,
    day         TEXT NOT NULL,
    num         INTEGER NOT NULL,
    category    TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    scope       TEXT,
    task        TEXT,
    fence       INTEGER,
    instance    TEXT,
    role        TEXT,
    author      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    UNIQUE (day, num)
) STRICT;
CREATE INDEX decisions_recent ON decisions (created_ms);
CREATE INDEX decisions_task ON decisions (task);
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    to_kind       TEXT NOT NULL CHECK (to_kind IN ('all','instance','role','task')),
    to_name       TEXT NOT NULL DEFAULT '',
    subject       TEXT,
    body          TEXT NOT NULL,
    from_instance TEXT,
    from_task     TEXT,
    from_role     TEXT,
    author        TEXT NOT NULL,
    created_ms    INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_to ON messages (to_kind, to_name, id);
CREATE INDEX messages_from ON messages (from_task);
CREATE TABLE message_reads (
    message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    reader  TEXT NOT NULL,
    task    TEXT,
    read_ms INTEGER NOT NULL,
    PRIMARY KEY (message, reader)
) STRICT, WITHOUT ROWID;
CREATE INDEX message_reads_task ON message_reads (task);
CREATE TABLE coord_context (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    task       TEXT,
    instance   TEXT,
    updated_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE attempt_activity (
    task       TEXT NOT NULL,
    fence      INTEGER NOT NULL,
    instance   TEXT NOT NULL,
    activity   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(activity)),
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (task, fence)
) STRICT;
CREATE TABLE lease_violations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    task            TEXT NOT NULL,
    fence           INTEGER NOT NULL,
    instance        TEXT NOT NULL,
    path            TEXT NOT NULL,
    lease_path      TEXT NOT NULL,
    holder_instance TEXT NOT NULL,
    holder_task     TEXT NOT NULL,
    holder_role     TEXT NOT NULL,
    tool            TEXT NOT NULL,
    at_ms           INTEGER NOT NULL,
    UNIQUE (task, fence, path)
) STRICT;
CREATE TABLE agent_tasks (
    id         TEXT PRIMARY KEY NOT NULL,
    parent     TEXT NOT NULL,
    fence      INTEGER NOT NULL,
    owner      TEXT NOT NULL,
    instance   TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX agent_tasks_owner ON agent_tasks (owner);
CREATE INDEX agent_tasks_parent ON agent_tasks (parent);
"#;

/// v5 → v6: outside agents (`borg serve`) and task progress reports.
pub(crate) const V6: &str = r#"
CREATE TABLE agents (
    id            TEXT PRIMARY KEY NOT NULL,
    capabilities  TEXT NOT NULL CHECK (json_valid(capabilities)),
    version       TEXT,
    token_sha256  TEXT NOT NULL UNIQUE,
    registered_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE task_progress (
    task       TEXT PRIMARY KEY NOT NULL,
    fence      INTEGER NOT NULL,
    owner      TEXT NOT NULL,
    report     TEXT NOT NULL CHECK (json_valid(report)),
    updated_ms INTEGER NOT NULL
) STRICT;
"#;

/// v6 → v7: checked work (see `store::verify` and `store::merge`).
pub(crate) const V7: &str = r#"
CREATE TABLE verify_baselines (
    commit_id  TEXT NOT NULL,
    gate       TEXT NOT NULL,
    result     TEXT NOT NULL CHECK (json_valid(result)),
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (commit_id, gate)
) STRICT, WITHOUT ROWID;
CREATE TABLE merge_targets (
    target           TEXT PRIMARY KEY NOT NULL,
    list             TEXT NOT NULL,
    start            TEXT NOT NULL,
    head             TEXT,
    owner            TEXT,
    fence            INTEGER NOT NULL DEFAULT 0,
    lease_expires_ms INTEGER,
    gate_runs        INTEGER NOT NULL DEFAULT 0,
    updated_ms       INTEGER NOT NULL
) STRICT;
CREATE TABLE merge_entries (
    target       TEXT NOT NULL REFERENCES merge_targets(target),
    task         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('landed','conflict','rejected')),
    commit_id    TEXT NOT NULL,
    merged       TEXT,
    resolve_task TEXT,
    files        TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(files)),
    gate         TEXT,
    output_tail  TEXT,
    fix_task     TEXT,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (target, task)
) STRICT, WITHOUT ROWID;
"#;

/// The steps, index i taking version i to i + 1.
const STEPS: [&str; SCHEMA_VERSION as usize] = [V1, V2, V3, V4, V5, V6, V7];

/// The statuses `tasks.status` accepts from v5 on: v1's, plus those of checked work.
const OLD_STATUSES: &str = "'interrupted','spawn_failed','killed','rate_limited')";
const NEW_STATUSES: &str = "'interrupted','spawn_failed','killed','rate_limited',\n                        'verify_failed','out_of_scope','integration_failed')";

/// Widens the CHECK of `tasks.status` in place (part of step v5). SQLite cannot alter a
/// CHECK; rebuilding `tasks` would need foreign keys off, which cannot change inside
/// the migration's transaction, and would cascade into `task_deps`. Allowing more
/// values changes nothing stored, so SQLite's documented in-place edit applies: rewrite
/// the table's SQL in `sqlite_schema` and bump `schema_version` so every connection
/// reloads it.
fn widen_statuses(tx: &rusqlite::Transaction<'_>) -> R<()> {
    let version: i64 = tx.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    tx.execute_batch("PRAGMA writable_schema = ON")?;
    let changed = tx.execute(
        "UPDATE sqlite_schema SET sql = replace(sql, ?1, ?2) WHERE type = 'table' AND name = 'tasks'",
        [OLD_STATUSES, NEW_STATUSES],
    );
    // Always switch it off again, even when the update failed.
    tx.execute_batch(&format!(
        "PRAGMA schema_version = {}; PRAGMA writable_schema = OFF",
        version + 1
    ))?;
    changed?;
    let widened: bool = tx.query_row(
        "SELECT sql LIKE '%out_of_scope%' FROM sqlite_schema WHERE type = 'table' AND name = 'tasks'",
        [],
        |r| r.get(0),
    )?;
    if !widened {
        return Err(StoreError::Corrupt {
            path: String::new(),
            message: "the tasks table does not have the shape borg made (its status check)".into(),
        }
        .into());
    }
    Ok(())
}

/// Brings the database to [`SCHEMA_VERSION`]; refuses a newer one.
pub(crate) fn migrate(conn: &mut Connection, path: &str) -> R<()> {
    // The common case, a current store, needs no write lock: `borg status` can open the
    // file while a busy `borg run` holds it. The version is read again under the lock.
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_string(),
            found,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    if found < 0 {
        return Err(StoreError::Corrupt {
            path: path.to_string(),
            message: format!("negative schema version {found}"),
        }
        .into());
    }
    if found == 0 {
        // A version-0 file with tables in it was not made by borg: do not scribble on it.
        let n: i64 = tx.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        if n > 0 {
            return Err(StoreError::Corrupt {
                path: path.to_string(),
                message: "the file is an SQLite database but not a borg store (schema version 0 with tables)".into(),
            }
            .into());
        }
    }
    for (i, step) in STEPS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(step)?;
        if i + 1 == 5 {
            widen_statuses(&tx)?;
        }
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()?;
    Ok(())
}
