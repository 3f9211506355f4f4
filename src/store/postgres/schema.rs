//! Schema migrations of the PostgreSQL store, versioned by a row of `borg_meta`.
//!
//! Migrating takes a session advisory lock first, so two borgs starting at once on a
//! fresh or old database migrate it once: the second waits, then finds the current
//! version. Each step runs with its version bump in one transaction. Steps are never
//! edited once released; a change is a new step.
//!
//! The tables have the SQLite store's shape (its v4) (same names and columns: one set of
//! semantics), with PostgreSQL types: `BIGINT` times in epoch ms (supplied by the
//! caller, as for SQLite), JSON kept as text (it reads back byte for byte), ids in the
//! "C" collation (so ordering by id is the same bytewise order as SQLite's). A trigger
//! on `events` sends a NOTIFY (payload:
//! the actor) in the transaction of every state change; it is delivered at commit.
//!
//! - v1: tasks, task_deps, attempts, owners, instances, handoffs, events, fleet,
//!   run_scope, the NOTIFY trigger.
//! - v2: coordination (the SQLite store's v5): file leases and their wait queue,
//!   decisions, messages and read receipts, the shared context, attempt activity,
//!   lease violations, agent-created tasks; `tasks.status` allows the statuses of
//!   checked work (`verify_failed`, `out_of_scope`, `integration_failed`).
//! - v3: outside agents of `borg serve` (`agents`, token hashes only) and the latest
//!   progress each task reported (`task_progress`): SQLite's v6.
//! - v4: checked work (the SQLite store's v7): the baseline cache of verification
//!   gates, the merge queue's targets (claimable, with a lease and a fencing token) and
//!   entries.
//! - v5: the trigger-kept count of unmet dependencies and the index of ready tasks
//!   the claim walks (the SQLite store's `tasks.unmet` and `tasks_ready`).

use super::errors::{E, R};
use crate::store::StoreError;

/// The newest schema version this build understands.
pub const SCHEMA_VERSION: i64 = 5;

/// The channel every state change is announced on.
pub const CHANNEL: &str = "borg_events";

/// Key of the advisory lock held while migrating ("borg" in ASCII, then "mig").
const MIGRATION_LOCK: i64 = 0x626f_7267_006d_6967;

/// v1: the shape of SQLite's v3, in PostgreSQL.
const V1: &str = r#"
CREATE TABLE tasks (
    id               TEXT COLLATE "C" PRIMARY KEY,
    role             TEXT NOT NULL,
    priority         BIGINT NOT NULL DEFAULT 0,
    ord              BIGINT NOT NULL DEFAULT 0,
    instance         TEXT COLLATE "C",
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                       ('pending','running','succeeded','failed','timed_out','skipped',
                        'interrupted','spawn_failed','killed','rate_limited')),
    fence            BIGINT NOT NULL DEFAULT 0,
    owner            TEXT COLLATE "C",
    lease_expires_ms BIGINT,
    heartbeat_ms     BIGINT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    counted_attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL DEFAULT 1,
    not_before_ms    BIGINT NOT NULL DEFAULT 0,
    spec             TEXT NOT NULL,
    hash             TEXT NOT NULL,
    last_record      TEXT,
    from_handoff     BIGINT,
    skipped_by       TEXT COLLATE "C",
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    CHECK ((status = 'running') = (owner IS NOT NULL))
);
CREATE INDEX tasks_open ON tasks (priority DESC, ord, id) WHERE status IN ('pending', 'running');
CREATE INDEX tasks_lease ON tasks (status, lease_expires_ms);
CREATE INDEX tasks_skipped_by ON tasks (skipped_by) WHERE skipped_by IS NOT NULL;

CREATE TABLE task_deps (
    task TEXT COLLATE "C" NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    dep  TEXT COLLATE "C" NOT NULL,   -- may name a task not (yet) in the store: never satisfied
    pos  BIGINT NOT NULL,
    PRIMARY KEY (task, dep)
);
CREATE INDEX task_deps_dep ON task_deps (dep, task);

CREATE TABLE attempts (
    task           TEXT COLLATE "C" NOT NULL REFERENCES tasks(id),
    attempt        BIGINT NOT NULL,
    fence          BIGINT NOT NULL,
    owner          TEXT COLLATE "C" NOT NULL,
    status         TEXT NOT NULL,
    instance       TEXT NOT NULL DEFAULT '',
    uid            TEXT NOT NULL DEFAULT '',
    shim_pid       BIGINT NOT NULL DEFAULT 0,
    pid            BIGINT NOT NULL DEFAULT 0,
    pgid           BIGINT NOT NULL DEFAULT 0,
    start_time     BIGINT NOT NULL DEFAULT 0,
    boot_id        TEXT NOT NULL DEFAULT '',
    stdout_log     TEXT NOT NULL DEFAULT '',
    stderr_log     TEXT NOT NULL DEFAULT '',
    resume_session TEXT,
    record         TEXT,
    cost_usd       DOUBLE PRECISION NOT NULL DEFAULT 0,
    started_ms     BIGINT NOT NULL,
    finished_ms    BIGINT,
    PRIMARY KEY (task, attempt)
);
CREATE INDEX attempts_running ON attempts (status, owner);

CREATE TABLE owners (
    id            TEXT COLLATE "C" PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           BIGINT NOT NULL,
    start_time    BIGINT NOT NULL,
    boot_id       TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    heartbeat_ms  BIGINT NOT NULL,
    host_id       TEXT NOT NULL DEFAULT ''
);

CREATE TABLE instances (
    id           TEXT COLLATE "C" PRIMARY KEY,
    role         TEXT NOT NULL,
    state        TEXT NOT NULL,
    current_task TEXT COLLATE "C",
    owner        TEXT COLLATE "C",
    updated_ms   BIGINT NOT NULL
);

CREATE TABLE handoffs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task          TEXT COLLATE "C" NOT NULL REFERENCES tasks(id),
    fence         BIGINT NOT NULL,
    from_role     TEXT NOT NULL,
    from_instance TEXT,
    to_role       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    work_state    TEXT,
    next_steps    TEXT NOT NULL DEFAULT '[]',
    state         TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending','accepted','rejected','dropped')),
    new_task      TEXT COLLATE "C",
    reject_reason TEXT,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);
CREATE INDEX handoffs_task ON handoffs (task, state);

CREATE TABLE events (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms  BIGINT NOT NULL,
    task   TEXT COLLATE "C",
    fence  BIGINT,
    actor  TEXT NOT NULL,
    kind   TEXT NOT NULL,
    data   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_task ON events (task, id);

CREATE TABLE fleet (
    key        TEXT COLLATE "C" PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE run_scope (
    owner TEXT COLLATE "C" NOT NULL,
    task  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (owner, task)
);

-- Wake-ups: one NOTIFY per actor and transaction (PostgreSQL folds identical ones),
-- delivered when the change commits, never before.
CREATE FUNCTION borg_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('borg_events', NEW.actor);
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION borg_notify_event();
"#;

/// v1 → v2: coordination, in the shape of the SQLite store's v5.
const V2: &str = r#"
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check CHECK (status IN
    ('pending','running','succeeded','failed','timed_out','skipped','interrupted','spawn_failed',
     'killed','rate_limited','verify_failed','out_of_scope','integration_failed'));
CREATE TABLE file_leases (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, path TEXT COLLATE "C" NOT NULL,
    prefix TEXT COLLATE "C" NOT NULL, task TEXT COLLATE "C" NOT NULL, fence BIGINT NOT NULL,
    instance TEXT NOT NULL, role TEXT NOT NULL, uid TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
    since_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, auto BIGINT NOT NULL DEFAULT 0,
    UNIQUE (task, fence, path));
CREATE INDEX file_leases_prefix ON file_leases (prefix);
CREATE TABLE lease_waits (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, path TEXT COLLATE "C" NOT NULL,
    prefix TEXT COLLATE "C" NOT NULL, task TEXT COLLATE "C" NOT NULL, fence BIGINT NOT NULL,
    instance TEXT NOT NULL, role TEXT NOT NULL, since_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL,
    UNIQUE (task, fence, path));
CREATE INDEX lease_waits_prefix ON lease_waits (prefix);
CREATE TABLE decisions (
    id TEXT COLLATE "C" PRIMARY KEY, day TEXT NOT NULL, num BIGINT NOT NULL, category TEXT NOT NULL,
    title TEXT NOT NULL, description TEXT NOT NULL, scope TEXT, task TEXT COLLATE "C", fence BIGINT,
    instance TEXT, role TEXT, author TEXT NOT NULL, created_ms BIGINT NOT NULL, UNIQUE (day, num));
CREATE INDEX decisions_recent ON decisions (created_ms);
CREATE INDEX decisions_task ON decisions (task);
CREATE TABLE messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    to_kind TEXT NOT NULL CHECK (to_kind IN ('all','instance','role','task')), to_name TEXT NOT NULL DEFAULT '',
    subject TEXT, body TEXT NOT NULL, from_instance TEXT, from_task TEXT COLLATE "C", from_role TEXT,
    author TEXT NOT NULL, created_ms BIGINT NOT NULL);
CREATE INDEX messages_to ON messages (to_kind, to_name, id);
CREATE INDEX messages_from ON messages (from_task);
CREATE TABLE message_reads (
    message BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE, reader TEXT NOT NULL,
    task TEXT COLLATE "C", read_ms BIGINT NOT NULL, PRIMARY KEY (message, reader));
CREATE INDEX message_reads_task ON message_reads (task);
CREATE TABLE coord_context (
    key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL, task TEXT, instance TEXT, updated_ms BIGINT NOT NULL);
CREATE TABLE attempt_activity (
    task TEXT COLLATE "C" NOT NULL, fence BIGINT NOT NULL, instance TEXT NOT NULL,
    activity TEXT NOT NULL DEFAULT '{}', updated_ms BIGINT NOT NULL, PRIMARY KEY (task, fence));
CREATE TABLE lease_violations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, task TEXT COLLATE "C" NOT NULL, fence BIGINT NOT NULL,
    instance TEXT NOT NULL, path TEXT NOT NULL, lease_path TEXT NOT NULL, holder_instance TEXT NOT NULL,
    holder_task TEXT NOT NULL, holder_role TEXT NOT NULL, tool TEXT NOT NULL, at_ms BIGINT NOT NULL,
    UNIQUE (task, fence, path));
CREATE TABLE agent_tasks (
    id TEXT COLLATE "C" PRIMARY KEY, parent TEXT COLLATE "C" NOT NULL, fence BIGINT NOT NULL,
    owner TEXT COLLATE "C" NOT NULL, instance TEXT NOT NULL, created_ms BIGINT NOT NULL);
CREATE INDEX agent_tasks_owner ON agent_tasks (owner);
CREATE INDEX agent_tasks_parent ON agent_tasks (parent);
"#;

/// v2 → v3: outside agents and task progress (SQLite's v6).
const V3: &str = r#"
CREATE TABLE agents (
    id            TEXT COLLATE "C" PRIMARY KEY,
    capabilities  TEXT NOT NULL,
    version       TEXT,
    token_sha256  TEXT NOT NULL UNIQUE,
    registered_ms BIGINT NOT NULL
);
CREATE TABLE task_progress (
    task       TEXT COLLATE "C" PRIMARY KEY,
    fence      BIGINT NOT NULL,
    owner      TEXT COLLATE "C" NOT NULL,
    report     TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
"#;

/// v3 → v4: checked work, in the shape of the SQLite store's v7.
const V4: &str = r#"
CREATE TABLE verify_baselines (
    commit_id TEXT COLLATE "C" NOT NULL, gate TEXT COLLATE "C" NOT NULL, result TEXT NOT NULL,
    created_ms BIGINT NOT NULL, PRIMARY KEY (commit_id, gate));
CREATE TABLE merge_targets (
    target TEXT COLLATE "C" PRIMARY KEY, list TEXT NOT NULL, start TEXT NOT NULL, head TEXT,
    owner TEXT COLLATE "C", fence BIGINT NOT NULL DEFAULT 0, lease_expires_ms BIGINT,
    gate_runs BIGINT NOT NULL DEFAULT 0, updated_ms BIGINT NOT NULL);
CREATE TABLE merge_entries (
    target TEXT COLLATE "C" NOT NULL REFERENCES merge_targets(target), task TEXT COLLATE "C" NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('landed','conflict','rejected')), commit_id TEXT NOT NULL,
    merged TEXT, resolve_task TEXT COLLATE "C", files TEXT NOT NULL DEFAULT '[]', gate TEXT,
    output_tail TEXT, fix_task TEXT COLLATE "C", updated_ms BIGINT NOT NULL,
    PRIMARY KEY (target, task));
"#;

/// v4 → v5: the trigger-kept count of unmet dependencies (`tasks.unmet`) and the claim
/// index of ready tasks, as in the SQLite store. Without them a claim walked every
/// pending task whose dependencies still ran, testing each: 39 ms per claim at the
/// start of a 10 000-task graph.
const V5: &str = r#"
ALTER TABLE tasks ADD COLUMN unmet BIGINT NOT NULL DEFAULT 0;
UPDATE tasks SET unmet = (SELECT count(*) FROM task_deps d LEFT JOIN tasks p ON p.id = d.dep
                          WHERE d.task = tasks.id AND (p.status IS NULL OR p.status <> 'succeeded'));
CREATE INDEX tasks_ready ON tasks (priority DESC, ord, id) WHERE status = 'pending' AND unmet = 0;
CREATE FUNCTION borg_dependents_met() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks SET unmet = unmet - 1 WHERE id IN (SELECT task FROM task_deps WHERE dep = NEW.id);
    RETURN NULL;
END $$;
CREATE FUNCTION borg_dependents_unmet() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks SET unmet = unmet + 1 WHERE id IN (SELECT task FROM task_deps WHERE dep = NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_succeeded_on AFTER UPDATE OF status ON tasks FOR EACH ROW
    WHEN (NEW.status = 'succeeded' AND OLD.status <> 'succeeded') EXECUTE FUNCTION borg_dependents_met();
CREATE TRIGGER tasks_succeeded_off AFTER UPDATE OF status ON tasks FOR EACH ROW
    WHEN (OLD.status = 'succeeded' AND NEW.status <> 'succeeded') EXECUTE FUNCTION borg_dependents_unmet();
CREATE TRIGGER tasks_inserted_succeeded AFTER INSERT ON tasks FOR EACH ROW
    WHEN (NEW.status = 'succeeded') EXECUTE FUNCTION borg_dependents_met();
CREATE FUNCTION borg_dep_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE tasks SET unmet = unmet + 1 WHERE id = NEW.task
            AND NOT EXISTS (SELECT 1 FROM tasks p WHERE p.id = NEW.dep AND p.status = 'succeeded');
    ELSE
        UPDATE tasks SET unmet = unmet - 1 WHERE id = OLD.task
            AND NOT EXISTS (SELECT 1 FROM tasks p WHERE p.id = OLD.dep AND p.status = 'succeeded');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER task_deps_changed AFTER INSERT OR DELETE ON task_deps FOR EACH ROW
    EXECUTE FUNCTION borg_dep_changed();
"#;

/// The steps, index i taking version i to i + 1.
const STEPS: [&str; SCHEMA_VERSION as usize] = [V1, V2, V3, V4, V5];

/// Brings the database to [`SCHEMA_VERSION`] under the migration lock; refuses a newer
/// schema and a database that holds another program's tables.
pub(crate) async fn migrate(client: &mut tokio_postgres::Client, shown: &str) -> R<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let res = migrate_locked(client, shown).await;
    // Released on every path; a lost connection releases it anyway.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    res
}

async fn migrate_locked(client: &mut tokio_postgres::Client, shown: &str) -> R<()> {
    let found = version(client, shown).await?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: shown.to_string(),
            found,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    for (i, step) in STEPS.iter().enumerate().skip(found as usize) {
        let tx = client.transaction().await?;
        if i == 0 {
            tx.batch_execute(
                "CREATE TABLE borg_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO borg_meta (key, value) VALUES ('schema_version', '0');",
            )
            .await?;
        }
        tx.batch_execute(step).await?;
        tx.execute(
            "UPDATE borg_meta SET value = $1 WHERE key = 'schema_version'",
            &[&(i as i64 + 1).to_string()],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The schema version of the database: 0 for an empty one; an error for one that
/// holds tables but no `borg_meta` (another program's database).
async fn version(client: &tokio_postgres::Client, shown: &str) -> R<i64> {
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<_, _>>()?;
    if !tables.iter().any(|t| t == "borg_meta") {
        if tables.is_empty() {
            return Ok(0);
        }
        let some: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
        return Err(E::Store(StoreError::Corrupt {
            path: shown.to_string(),
            message: format!(
                "the database holds tables of another program ({}{}) and no borg_meta; give borg a database of its own (createdb borg) or an empty one",
                some.join(", "),
                if tables.len() > some.len() { ", ..." } else { "" }
            ),
        }));
    }
    let v: Option<String> = client
        .query_opt(
            "SELECT value FROM borg_meta WHERE key = 'schema_version'",
            &[],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    match v.as_deref().map(str::parse::<i64>) {
        Some(Ok(n)) if n >= 0 => Ok(n),
        _ => Err(E::Store(StoreError::Corrupt {
            path: shown.to_string(),
            message: format!("borg_meta holds no valid schema_version ({v:?})"),
        })),
    }
}
