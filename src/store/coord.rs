//! The coordination capability of the store (`CoordStore`): file leases with a fair
//! wait queue and deadlock detection, the decision log, messages, the shared context,
//! the activity of running attempts, lease violations and tasks created by agents.
//!
//! Semantics every backend keeps (the SQLite one is `sqlite/coord*.rs`):
//!
//! - **Fencing.** Every write made for an attempt names it by [`Actor`] (task + claim
//!   fence) and is refused with `StoreError::StaleClaim` (the same error and message
//!   as the claim table's) unless that task is `running` with that very fence, checked
//!   in the statement (or transaction) that writes. A stale attempt (its claim taken
//!   over, released or finished) cannot lease, decide, message, save context, record
//!   activity or create tasks. Reads and people's writes (`actor = None`) are not fenced.
//! - **Live lease.** A lease row counts only while it is *live*: its own expiry
//!   (`expires_ms`) has not passed, and its claim is current (the task is `running`
//!   with the lease's fence and the claim's lease has not expired). So the leases of an
//!   attempt end with it however it ends, and expire with its claim when its borg dies,
//!   even before anyone deletes the rows. The rows themselves are deleted when the
//!   attempt's claim ends (finish, release of its owner or of its expired lease,
//!   takeover), in the same transaction.
//! - **Conflict.** Two lease patterns conflict when [`leasing::overlap`] says so
//!   (literal paths equal; a glob matching a path; two globs whose literal parts
//!   could meet — decided conservatively). An attempt never conflicts with itself.
//! - **Fair queue.** A request that waits (`LockRequest::queue`) leaves a wait row per
//!   refused path; a path is granted only when no other live attempt holds a
//!   conflicting lease *and* no other live attempt queued earlier (smaller wait id) for
//!   a conflicting path. Asking again keeps the original place in the queue.
//! - **Deadlock.** Before a wait is queued, the wait-for graph (waiter → holders of
//!   conflicting leases, and → earlier waiters of conflicting paths) is searched; if the
//!   new edges close a cycle the wait is not queued and the cycle is returned
//!   ([`LockOutcome::deadlock`]), in order, starting and ending with the requester.
//! - **Events.** Grants, releases, decisions, messages, violations and agent tasks
//!   each append one event in the same transaction, with the actor's instance id as
//!   `actor` (so a run's change feed wakes up for them).

pub mod leasing;

use super::{NewTask, StoreError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The attempt on whose behalf a coordination write is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Task id.
    pub task: String,
    /// The claim's fencing token.
    pub fence: i64,
    /// The instance running it.
    pub instance: String,
    /// The attempt's unique cookie (`BORG_ATTEMPT_UID`).
    pub uid: String,
}

/// A lease on a path or glob, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRow {
    /// Row id.
    pub id: i64,
    /// Path or glob, relative to the repository root, `/`-separated.
    pub path: String,
    /// Holder: task id.
    pub task: String,
    /// Holder: claim fence.
    pub fence: i64,
    /// Holder: instance id.
    pub instance: String,
    /// Holder: role.
    pub role: String,
    /// Why the holder took it.
    pub reason: String,
    /// When it was taken, epoch ms.
    pub since_ms: i64,
    /// When it expires unless renewed, epoch ms.
    pub expires_ms: i64,
    /// Taken by the write hook (auto-lock), not by `lock_files`.
    pub auto: bool,
    /// Live now (see the module docs); a person's `borg locks` shows the others too.
    pub live: bool,
}

/// Whether a blocker holds the path or queued for it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// A live lease of another attempt.
    Lease,
    /// Another attempt is waiting for it and queued earlier.
    Queued,
}

/// Why one requested path was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocker {
    /// The path asked for.
    pub path: String,
    /// Lease or queue place.
    pub kind: BlockKind,
    /// The other attempt's lease (for `Queued`: its wait, with `reason` empty).
    pub held: LeaseRow,
}

/// A request for leases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockRequest {
    /// Normalised paths or globs (see `coord::paths`).
    pub paths: Vec<String>,
    /// Why.
    pub reason: String,
    /// Lease length.
    pub ttl: Duration,
    /// Taken by the write hook.
    pub auto: bool,
    /// Queue for the refused paths (a waiting `lock_files`); the queue entries expire
    /// after `queue_for`.
    pub queue: Option<Duration>,
}

/// One step of a wait-for cycle: `waiter` waits for `path`, which `holder` holds (or
/// queued for first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitEdge {
    /// The waiting attempt: (instance, task, role).
    pub waiter: (String, String, String),
    /// The path it waits for.
    pub path: String,
    /// The attempt in its way: (instance, task, role).
    pub holder: (String, String, String),
}

/// What a lock request got.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockOutcome {
    /// Paths leased now (or already held, renewed).
    pub granted: Vec<String>,
    /// Paths refused, each with what is in the way.
    pub refused: Vec<Blocker>,
    /// Set when queueing would close a cycle: nothing was queued.
    pub deadlock: Option<Vec<WaitEdge>>,
}

/// The write hook's verdict on one path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WriteCheck {
    /// The write may go ahead; `leased` when this check took (or renewed) a lease.
    Allowed {
        /// A lease was taken or renewed.
        leased: bool,
    },
    /// Another live attempt holds (or queued first for) the path.
    Denied(Blocker),
}

/// A decision to log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDecision {
    /// Category (api-design, database-schema ...).
    pub category: String,
    /// One-line title.
    pub title: String,
    /// What was decided and why.
    pub description: String,
    /// What it applies to (a service, a folder ...).
    pub scope: Option<String>,
}

/// A decision as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRow {
    /// `DEC-YYYYMMDD-NNNN` (UTC day, 1-based number within the day).
    pub id: String,
    /// Category.
    pub category: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Scope.
    pub scope: Option<String>,
    /// The task whose agent logged it (None: a person).
    pub task: Option<String>,
    /// Its instance.
    pub instance: Option<String>,
    /// Its role.
    pub role: Option<String>,
    /// Who: an instance id, or "user".
    pub author: String,
    /// Epoch ms.
    pub created_ms: i64,
}

/// To whom a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Recipient {
    /// Every instance.
    All,
    /// One instance.
    Instance(String),
    /// Every instance of a role.
    Role(String),
    /// The instance running a task.
    Task(String),
}

impl Recipient {
    /// `all`, `instance:X`, `role:X`, `task:X`.
    pub fn label(&self) -> String {
        match self {
            Recipient::All => "all".into(),
            Recipient::Instance(n) => format!("instance:{n}"),
            Recipient::Role(n) => format!("role:{n}"),
            Recipient::Task(n) => format!("task:{n}"),
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    /// Recipient.
    pub to: Recipient,
    /// Subject line.
    pub subject: Option<String>,
    /// Body.
    pub body: String,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRow {
    /// Id.
    pub id: i64,
    /// Recipient.
    pub to: Recipient,
    /// Subject.
    pub subject: Option<String>,
    /// Body.
    pub body: String,
    /// Sender's instance (None: a person).
    pub from_instance: Option<String>,
    /// Sender's task.
    pub from_task: Option<String>,
    /// Sender's role.
    pub from_role: Option<String>,
    /// Who: an instance id, or "user".
    pub author: String,
    /// Epoch ms.
    pub created_ms: i64,
    /// Instances that have read it.
    pub read_by: Vec<String>,
}

/// Who reads messages: an instance, its role and the task it runs. Each instance reads
/// each message addressed to it (by instance, role, task or `all`) once; its own
/// messages are never addressed to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reader {
    /// Instance id.
    pub instance: String,
    /// Its role.
    pub role: String,
    /// The task it runs (None: between tasks).
    pub task: Option<String>,
}

/// One entry of the shared context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextEntry {
    /// Key.
    pub key: String,
    /// Value (text; agents usually store JSON).
    pub value: String,
    /// The task whose agent saved it last.
    pub task: Option<String>,
    /// Its instance.
    pub instance: Option<String>,
    /// Epoch ms.
    pub updated_ms: i64,
}

/// What an attempt reports it is doing (progress from `report_progress`, the current
/// file and tool from the hooks). `None` fields are left as they were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// 0–100.
    pub percent: Option<u8>,
    /// The current step.
    pub step: Option<String>,
    /// A note.
    pub message: Option<String>,
    /// The file it works on.
    pub current_file: Option<String>,
    /// The last tool it used.
    pub last_tool: Option<String>,
}

/// The activity of one attempt, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityRow {
    /// Task.
    pub task: String,
    /// Fence.
    pub fence: i64,
    /// Instance.
    pub instance: String,
    /// What it said last.
    pub activity: Activity,
    /// Epoch ms.
    pub updated_ms: i64,
}

/// A change to a path another attempt held, found after a shell command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// The path changed, relative to the repository root.
    pub path: String,
    /// The lease it broke.
    pub lease: LeaseRow,
    /// The tool that did it (Bash).
    pub tool: String,
}

/// A violation as stored (one per attempt and path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationRow {
    /// Task that broke the lease.
    pub task: String,
    /// Its fence.
    pub fence: i64,
    /// Its instance.
    pub instance: String,
    /// The path changed.
    pub path: String,
    /// The lease's pattern.
    pub lease_path: String,
    /// Holder: instance.
    pub holder_instance: String,
    /// Holder: task.
    pub holder_task: String,
    /// Holder: role.
    pub holder_role: String,
    /// The tool.
    pub tool: String,
    /// Epoch ms.
    pub at_ms: i64,
}

/// The coordination capability (see the module docs for the semantics every backend
/// keeps). All methods are synchronous and short, like `Store`'s.
pub trait CoordStore {
    /// Takes (or renews) leases on `req.paths` for `who`; the refused ones are named
    /// with what is in the way. With `req.queue`, refused paths are queued (or keep
    /// their place), unless queueing would close a wait-for cycle: then nothing is
    /// queued and `deadlock` holds the cycle. Fenced.
    fn lock_paths(
        &self,
        who: &Actor,
        req: &LockRequest,
        now_ms: i64,
    ) -> Result<LockOutcome, StoreError>;
    /// Leaves the queue for these paths (all of `who`'s waits when empty). Not fenced.
    fn cancel_waits(&self, who: &Actor, paths: &[String]) -> Result<(), StoreError>;
    /// Releases `who`'s leases on these paths (all of them when empty); returns the
    /// paths released. Not fenced: a stale attempt may always give back.
    fn unlock_paths(
        &self,
        who: &Actor,
        paths: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// The write hook's check of one normalised path: denied when another live
    /// attempt holds a conflicting lease or queued first; otherwise allowed, and with
    /// `auto = Some((reason, ttl))` a lease on the path is taken or renewed for `who`.
    /// One indexed query for the check (leases and waits whose stored prefix is the
    /// path or one of its folders). Fenced when it writes.
    fn check_write(
        &self,
        who: &Actor,
        path: &str,
        auto: Option<(&str, Duration)>,
        now_ms: i64,
    ) -> Result<WriteCheck, StoreError>;
    /// Every lease row (live or not), oldest first.
    fn leases(&self, now_ms: i64) -> Result<Vec<LeaseRow>, StoreError>;
    /// A person removes lease rows (after checking that their holder is gone).
    fn drop_leases(&self, ids: &[i64], now_ms: i64) -> Result<usize, StoreError>;

    /// Records lease violations of `who` (one per path and attempt: a path already
    /// recorded is skipped); returns the ones new now. Fenced.
    fn record_violations(
        &self,
        who: &Actor,
        found: &[Violation],
        now_ms: i64,
    ) -> Result<Vec<ViolationRow>, StoreError>;
    /// The violations of a task (of one claim when `fence` is given), oldest first.
    fn violations(&self, task: &str, fence: Option<i64>) -> Result<Vec<ViolationRow>, StoreError>;
}

/// The coordination log beside the leases: decisions, messages, the shared
/// context, what running attempts are doing and the tasks their agents create (same
/// rules as [`CoordStore`]: short synchronous calls, fenced where an attempt writes).
pub trait CoordLog {
    /// Logs a decision (by an attempt, fenced; or by a person with `who = None`).
    fn log_decision(
        &self,
        who: Option<&Actor>,
        d: &NewDecision,
        now_ms: i64,
    ) -> Result<DecisionRow, StoreError>;
    /// Decisions, newest first, optionally of one category, at most `limit`.
    fn decisions(
        &self,
        category: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DecisionRow>, StoreError>;
    /// Decisions logged by one task's attempts, oldest first.
    fn decisions_of(&self, task: &str) -> Result<Vec<DecisionRow>, StoreError>;

    /// Sends a message (by an attempt, fenced; or by a person with `who = None`).
    fn send_message(
        &self,
        who: Option<&Actor>,
        m: &NewMessage,
        now_ms: i64,
    ) -> Result<MessageRow, StoreError>;
    /// The messages `reader` has not read, oldest first, at most `limit`; with `mark`
    /// they are marked read by it in the same transaction.
    fn unread_messages(
        &self,
        reader: &Reader,
        mark: bool,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<MessageRow>, StoreError>;
    /// Messages, newest first, at most `limit`.
    fn messages(&self, limit: usize) -> Result<Vec<MessageRow>, StoreError>;
    /// (sent by the task's attempts, addressed to the task or read by its instance
    /// while it ran it).
    fn message_counts(&self, task: &str) -> Result<(u64, u64), StoreError>;

    /// Saves a key of the shared context. Fenced.
    fn save_context(
        &self,
        who: &Actor,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Reads a key of the shared context.
    fn context(&self, key: &str) -> Result<Option<ContextEntry>, StoreError>;

    /// Records what the attempt is doing and renews its claim's lease (the hooks are a
    /// sign of life). Fenced.
    fn record_activity(
        &self,
        who: &Actor,
        a: &Activity,
        lease: Duration,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The activity of every running attempt.
    fn activities(&self) -> Result<Vec<ActivityRow>, StoreError>;

    /// Inserts a task created by `who`'s agent, in the creating claim's run (its owner's
    /// scope), unless that run already has `max_per_run` agent-created tasks
    /// (`StoreError::Conflict` saying so) or the id exists (`Conflict`). Fenced.
    fn create_agent_task(
        &self,
        who: &Actor,
        task: &NewTask,
        max_per_run: u32,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Ids of the tasks a task's agents created, oldest first.
    fn agent_tasks(&self, parent: &str) -> Result<Vec<String>, StoreError>;
}
