//! The command-line contract (DESIGN.md "Command line"): every command, flag and
//! default that users and tests rely on. Parsing only; the sibling files do the work.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// borg: run a task list through a fleet of headless Claude Code agents.
#[derive(Debug, Parser)]
#[command(name = "borg", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes (they may come before or after the command name).
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Workspaces folder (instances, logs, the store) [env: BORG_WORKSPACES, WORKSPACES_DIR] [default: ./workspaces]
    #[arg(long, global = true, value_name = "DIR")]
    pub workspaces: Option<PathBuf>,
    /// Config file [env: BORG_CONFIG] [default: ./config.toml if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Roles folder [env: BORG_ROLES] [default: ./roles, else the built-in roles]; after
    /// `worker`, a value that is not a folder is the roles to claim: a,b
    #[arg(long, global = true, value_name = "DIR")]
    pub roles: Option<PathBuf>,
    /// Store: a SQLite file, or a PostgreSQL URL (postgres://user@host/db) that
    /// hosts share [env: BORG_STORE] [default: <workspaces>/borg.db]
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub store: Option<PathBuf>,
    /// Format of borg's own diagnostics on stderr (level filter: BORG_LOG)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Format of borg's diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How progress is shown during `borg run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Live lines on a terminal, plain event lines otherwise.
    Auto,
    /// Live lines (terminal).
    Tty,
    /// Plain timestamped event lines.
    Plain,
    /// Nothing but the final summary.
    None,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a task list to the end; run it again to resume.
    Run(RunArgs),
    /// Join the fleet on this host: run ready tasks from the store until stopped.
    Worker(WorkerArgs),
    /// Create, list, show or remove instances.
    #[command(subcommand)]
    Instance(InstanceCmd),
    /// List, show or re-queue tasks in the store.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Show the transcript of a task or instance, for people.
    Logs(LogsArgs),
    /// The fleet: instances, queue, totals.
    Status(StatusArgs),
    /// Ask for, list, accept or reject handoffs.
    #[command(subcommand)]
    Handoff(HandoffCmd),
    /// Summarise a saved claude stream-json transcript.
    Transcript(TranscriptArgs),
    /// List the roles.
    #[command(subcommand)]
    Roles(RolesCmd),
    /// File leases of running agents: list them, or release one whose holder is gone.
    Locks(LocksArgs),
    /// The decision log: list it, or add a decision as a person.
    #[command(subcommand)]
    Decisions(DecisionsCmd),
    /// Messages between agents (and people): list them, or send one.
    #[command(subcommand)]
    Messages(MessagesCmd),
    /// The MCP server borg gives every claude child (stdio; started by claude).
    Mcp,
    /// A hook claude runs around tool calls (reads its payload on stdin).
    Hook {
        /// pre-tool-use or post-tool-use.
        #[arg(value_enum)]
        event: HookEvent,
    },
    /// Git mode: a task's diff against its start commit.
    Diff(DiffArgs),
    /// Serve the coordination API, the event stream, metrics and the dashboard.
    Serve(ServeArgs),
    /// Git mode: land the run's finished work on a target branch through the merge
    /// queue (batches, integration gates, bisection; exit 2 on bad input, 1 when a
    /// task was rejected or waits for its resolve task)
    Merge(MergeArgs),
}

/// `borg serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: BORG_SERVE_LISTEN] [default: 127.0.0.1:3456]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin token; required to listen off loopback [env: BORG_SERVE_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// `borg merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Advance this existing branch instead of `borg/integration/<list>`; refused when
    /// it is checked out in a work tree borg does not own
    #[arg(long, value_name = "BRANCH")]
    pub into: Option<String>,
    /// Print what would land, what conflicts and in what order; change no ref
    #[arg(long)]
    pub dry_run: bool,
    /// The task list whose work is merged [default: the list of the store's last run]
    #[arg(long, value_name = "NAME")]
    pub list: Option<String>,
    /// Print the merge section of the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `borg diff`.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// Task id.
    pub task: String,
    /// Only the summary of changed files and lines (`git diff --stat`).
    #[arg(long)]
    pub stat: bool,
    /// That attempt (1-based) instead of the last one.
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
}

/// The hook events borg answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookEvent {
    /// Before a tool runs: the lease and scope check (may deny).
    PreToolUse,
    /// After a tool ran: activity, and lease violations after Bash.
    PostToolUse,
}

/// `borg locks`.
#[derive(Debug, Clone, Args)]
pub struct LocksArgs {
    /// As JSON.
    #[arg(long)]
    pub json: bool,
    /// What to do (default: list).
    #[command(subcommand)]
    pub cmd: Option<LocksCmd>,
}

/// `borg locks release`.
#[derive(Debug, Clone, Subcommand)]
pub enum LocksCmd {
    /// Remove the lease on PATH when its holder is gone (refused while it runs).
    Release {
        /// The leased path or glob, as `borg locks` shows it.
        path: String,
        /// Required: says you know the holder is gone.
        #[arg(long)]
        force: bool,
    },
}

/// `borg decisions ...`.
#[derive(Debug, Subcommand)]
pub enum DecisionsCmd {
    /// The decisions, newest first.
    List {
        /// Only this category.
        #[arg(long)]
        category: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Log a decision (as a person); prints its id.
    Add {
        /// Category, e.g. api-design.
        #[arg(long)]
        category: String,
        /// One line: what was decided.
        #[arg(long)]
        title: String,
        /// The decision and why.
        #[arg(long)]
        description: String,
        /// What it applies to.
        #[arg(long)]
        scope: Option<String>,
    },
}

/// `borg messages ...`.
#[derive(Debug, Subcommand)]
pub enum MessagesCmd {
    /// The messages, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a message (as a person) to an instance, a role, a task or all.
    Send {
        /// Recipient: an instance id, a role, a task id, or all (or instance:X, role:X, task:X).
        #[arg(long)]
        to: String,
        /// Subject line.
        #[arg(long)]
        subject: Option<String>,
        /// The message.
        body: String,
    },
}

/// `borg run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The task list (TOML). Without it, the unfinished tasks of the store are run.
    pub tasks: Option<PathBuf>,
    /// At most N children at once [env: BORG_CONCURRENCY] [default: 4]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Wall-clock limit per attempt, e.g. 30m [env: BORG_TIMEOUT, TASK_TIMEOUT (ms)] [default: 30m]
    #[arg(long, value_name = "DUR", value_parser = crate::input::config::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// The claude binary [env: CLAUDE_CODE_PATH] [default: claude on PATH]
    #[arg(long, value_name = "PATH")]
    pub claude: Option<PathBuf>,
    /// Template copied into new instances' project-files/
    #[arg(long, value_name = "DIR", conflicts_with = "repo")]
    pub template: Option<PathBuf>,
    /// Git mode: work on this repository, every task a branch in a worktree of it
    /// [env: BORG_REPO] [default: the repository the task list is in, unless a template is given]
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Template mode even when the task list lives in a git work tree
    #[arg(long, conflicts_with_all = ["repo", "base"])]
    pub no_repo: bool,
    /// Git mode: the commit tasks start from [default: HEAD when the run first starts;
    /// a resumed run keeps its base]
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Print the final report as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a JUnit XML report to FILE
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Validate everything and print the plan; start nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Stop starting tasks once the run has spent this many USD
    #[arg(long, value_name = "USD")]
    pub budget_usd: Option<f64>,
    /// Progress display
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Also serve the API and dashboard while the run lasts (`--serve=ADDR` to choose
    /// the address; default [serve] listen)
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub serve: Option<String>,
    /// Only enqueue the list and wait while other hosts (`borg worker`) run it,
    /// printing progress and the final report
    #[arg(long)]
    pub no_work: bool,
    /// The list's name in the store, for `borg worker --list` [default: the file's stem]
    #[arg(long, value_name = "NAME")]
    pub list: Option<String>,
    /// Git mode: run the merge queue once the run's tasks are done (as `[merge] auto`)
    #[arg(long)]
    pub merge: bool,
}

/// `borg worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// This host's name in the fleet, shown by `borg status` [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub host_id: Option<String>,
    /// At most N children at once on this host [env: BORG_CONCURRENCY] [default: 4]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Only the tasks of this list (as `borg run` registered it) [default: every task]
    #[arg(long, value_name = "NAME")]
    pub list: Option<String>,
    /// Wall-clock limit per attempt, e.g. 30m [env: BORG_TIMEOUT, TASK_TIMEOUT (ms)] [default: 30m]
    #[arg(long, value_name = "DUR", value_parser = crate::input::config::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// The claude binary [env: CLAUDE_CODE_PATH] [default: claude on PATH]
    #[arg(long, value_name = "PATH")]
    pub claude: Option<PathBuf>,
    /// Template copied into new instances' project-files/
    #[arg(long, value_name = "DIR")]
    pub template: Option<PathBuf>,
    /// The git remote the fleet shares (a URL, or a bare repository on shared
    /// storage) [env: BORG_REPO] [default: the one `borg run` recorded in the store]
    #[arg(long, value_name = "URL", conflicts_with = "template")]
    pub repo: Option<PathBuf>,
    /// Progress display
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// `borg instance ...`.
#[derive(Debug, Subcommand)]
pub enum InstanceCmd {
    /// Create an instance; prints its id as the last line.
    Create {
        /// Its role.
        #[arg(long)]
        role: String,
        /// Its id [default: <role>-<8 hex>]
        #[arg(long)]
        name: Option<String>,
        /// Template copied into project-files/
        #[arg(long, value_name = "DIR")]
        template: Option<PathBuf>,
        /// Print {"id","role","path"} as JSON
        #[arg(long)]
        json: bool,
    },
    /// List instances.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one instance.
    Show {
        /// Instance id.
        id: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an instance and its files (a worktree with `git worktree remove`).
    Rm {
        /// Instance id.
        id: String,
        /// Remove a worktree even when it has uncommitted changes.
        #[arg(long)]
        force: bool,
    },
}

/// `borg task ...`.
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// List tasks in the store.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one task with its attempts.
    Show {
        /// Task id.
        id: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-queue a finished task on purpose.
    Retry {
        /// Task id.
        id: String,
    },
}

/// `borg logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// A task id or an instance id.
    pub id: String,
    /// Keep streaming as lines arrive (across attempts).
    #[arg(long, short)]
    pub follow: bool,
    /// Print the bytes exactly as the child wrote them.
    #[arg(long)]
    pub raw: bool,
    /// Only this attempt (1-based).
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
}

/// `borg status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// As JSON.
    #[arg(long)]
    pub json: bool,
    /// Refresh every second until interrupted.
    #[arg(long)]
    pub watch: bool,
}

/// `borg handoff ...`.
#[derive(Debug, Subcommand)]
pub enum HandoffCmd {
    /// From inside a running task: ask borg to hand the work on to another role.
    Request {
        /// Target role.
        #[arg(long)]
        to: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// A next step (repeatable).
        #[arg(long = "next-step", value_name = "TEXT")]
        next_steps: Vec<String>,
        /// The current state of the work.
        #[arg(long, value_name = "TEXT")]
        state: Option<String>,
    },
    /// List handoffs.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Accept a handoff.
    Accept {
        /// Handoff id.
        id: i64,
    },
    /// Reject a handoff; it will not run.
    Reject {
        /// Handoff id.
        id: i64,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// `borg transcript`.
#[derive(Debug, Clone, Args)]
pub struct TranscriptArgs {
    /// A saved stream-json file.
    pub file: PathBuf,
    /// As JSON.
    #[arg(long)]
    pub json: bool,
}

/// `borg roles ...`.
#[derive(Debug, Subcommand)]
pub enum RolesCmd {
    /// List the roles.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}
