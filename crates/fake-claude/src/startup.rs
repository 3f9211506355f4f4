//! From argv to checked settings, complaining in the real CLI's order: `--version` and
//! `--help` answers, print mode, the output format, `--verbose` for stream-json, the
//! permission mode, the root refusal, the session id, `--max-turns`, `--max-budget-usd`.
//! Each refusal is the CLI's exact stderr text and exit code, given before anything runs
//! (borg tells its own argument mistakes apart by them).

use crate::cli::Args;
use crate::out::Format;
use crate::run::DEFAULT_TOOLS;

/// The version the real CLI we mimic reports.
const VERSION: &str = "2.1.197";

/// What `--help` prints: there is no interactive mode to describe.
const HELP: &str = "Usage: claude [options] [command] [prompt]\n\nfake-claude: a scripted stand-in for Claude Code. See the doc comment of crates/fake-claude/src/main.rs.";

/// The permission modes `--permission-mode` accepts, in the order its error lists them.
const MODES: &[&str] = &[
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
];

/// A refusal to run: the exact stderr line and the exit code.
#[derive(Debug)]
pub struct Refusal {
    /// The stderr line.
    message: String,
    /// The exit code.
    code: i32,
}

impl Refusal {
    /// An argument or input error: exit 1, as the CLI.
    pub fn usage(message: impl Into<String>) -> Self {
        Refusal {
            message: message.into(),
            code: 1,
        }
    }

    /// A scenario the fake cannot run: exit 2, which the real CLI never uses for
    /// argument errors, so a test sees it wrote a bad scenario.
    pub fn scenario(message: impl Into<String>) -> Self {
        Refusal {
            message: message.into(),
            code: 2,
        }
    }

    /// Prints the message on stderr and exits with the code.
    pub fn exit(self) -> ! {
        eprintln!("{}", self.message);
        std::process::exit(self.code)
    }
}

/// The settings argv and the environment decide, once checked.
pub struct Checked {
    /// `--output-format`.
    pub format: Format,
    /// The permission mode in effect (`--dangerously-skip-permissions` is bypass).
    pub perm_mode: String,
    /// `--max-turns` / `CLAUDE_CODE_MAX_TURNS`.
    pub max_turns: Option<u32>,
    /// `--max-budget-usd`: (limit, text as given).
    pub max_budget: Option<(f64, String)>,
}

/// The version to report: `FAKE_CLAUDE_VERSION`, else the one we mimic.
pub fn version() -> String {
    std::env::var("FAKE_CLAUDE_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or(VERSION.into())
}

/// The version init shows: the first word of [`version`].
pub fn short_version(version: &str) -> String {
    version
        .split_whitespace()
        .next()
        .unwrap_or(VERSION)
        .to_string()
}

/// What `--version` or `--help` prints instead of a run, when asked.
pub fn info(args: &Args, version: &str) -> Option<String> {
    if args.version {
        Some(format!("{version} (Claude Code)"))
    } else if args.help {
        Some(HELP.to_string())
    } else {
        None
    }
}

/// Checks the flags in the CLI's order; the first complaint wins.
pub fn check(args: &Args) -> Result<Checked, Refusal> {
    if !args.print {
        return Err(Refusal::usage(
            "fake-claude: only print mode is supported; pass -p",
        ));
    }
    let format = output_format(args)?;
    let perm_mode = permission_mode(args)?;
    if let Some(id) = &args.session_id {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(Refusal::usage(
                "Error: Invalid session ID. Must be a valid UUID.",
            ));
        }
    }
    Ok(Checked {
        format,
        perm_mode,
        max_turns: max_turns(args)?,
        max_budget: max_budget(args)?,
    })
}

/// `--output-format`; stream-json needs `--verbose`, as in the CLI.
fn output_format(args: &Args) -> Result<Format, Refusal> {
    let format = match args.output_format.as_deref() {
        None | Some("text") => Format::Text,
        Some("json") => Format::Json,
        Some("stream-json") => Format::StreamJson,
        Some(o) => return Err(Refusal::usage(format!("error: option '--output-format <format>' argument '{o}' is invalid. Allowed choices are text, json, stream-json."))),
    };
    if format == Format::StreamJson && !args.verbose {
        return Err(Refusal::usage(
            "Error: When using --print, --output-format=stream-json requires --verbose",
        ));
    }
    Ok(format)
}

/// The permission mode, refused when unknown, or when it bypasses permissions as root
/// outside a sandbox (`IS_SANDBOX=1`).
fn permission_mode(args: &Args) -> Result<String, Refusal> {
    let mode = if args.skip_permissions {
        "bypassPermissions".to_string()
    } else {
        args.permission_mode
            .clone()
            .unwrap_or_else(|| "default".into())
    };
    if !MODES.contains(&mode.as_str()) {
        return Err(Refusal::usage(format!("error: option '--permission-mode <mode>' argument '{mode}' is invalid. Allowed choices are {}.", MODES.join(", "))));
    }
    let sandbox = std::env::var("IS_SANDBOX")
        .map(|v| v == "1")
        .unwrap_or(false);
    // SAFETY: geteuid has no preconditions.
    if mode == "bypassPermissions" && unsafe { libc::geteuid() } == 0 && !sandbox {
        return Err(Refusal::usage("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"));
    }
    Ok(mode)
}

/// `--max-turns`, else `CLAUDE_CODE_MAX_TURNS`: a positive whole number.
fn max_turns(args: &Args) -> Result<Option<u32>, Refusal> {
    let Some(t) = args
        .max_turns
        .clone()
        .or_else(|| std::env::var("CLAUDE_CODE_MAX_TURNS").ok())
    else {
        return Ok(None);
    };
    match t.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(Refusal::usage(format!(
            "error: option '--max-turns <turns>' argument '{t}' is invalid."
        ))),
    }
}

/// `--max-budget-usd`: a positive amount, kept with its text (the error shows it as given).
fn max_budget(args: &Args) -> Result<Option<(f64, String)>, Refusal> {
    let Some(b) = &args.max_budget else {
        return Ok(None);
    };
    match b.trim().parse::<f64>() {
        Ok(v) if v > 0.0 => Ok(Some((v, b.trim().to_string()))),
        _ => Err(Refusal::usage(format!(
            "error: option '--max-budget-usd <amount>' argument '{b}' is invalid."
        ))),
    }
}

/// Maps `--model` like the CLI: aliases to ids, full ids passed through.
pub fn model_name(m: Option<&str>) -> String {
    match m {
        None | Some("") | Some("default") | Some("opus") => "claude-opus-4-8[1m]".into(),
        Some("sonnet") => "claude-sonnet-5".into(),
        Some("haiku") => "claude-haiku-4-5".into(),
        Some(other) => other.to_string(),
    }
}

/// The session id: `--resume`'s (unless forked), else `--session-id`, else a new one.
pub fn session_id(args: &Args) -> String {
    match (&args.resume, &args.session_id) {
        (Some(r), _) if !r.is_empty() && !args.fork_session => r.clone(),
        (_, Some(s)) => s.clone(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// The tools offered to the model: `--tools` (or the defaults) less `--disallowedTools`.
pub fn tools(args: &Args) -> Vec<String> {
    let defaults = || DEFAULT_TOOLS.iter().map(|s| s.to_string()).collect();
    let mut tools: Vec<String> = match &args.tools {
        None => defaults(),
        Some(t) if t.iter().any(|x| x == "default") => defaults(),
        Some(t) => t.clone(),
    };
    if args.json_schema.is_some() && !tools.iter().any(|t| t == crate::dsl::STRUCTURED) {
        // Where the real CLI lists it (fixture `json-schema`): after Skill.
        let at = tools
            .iter()
            .position(|t| t == "Skill")
            .map_or(tools.len(), |i| i + 1);
        tools.insert(at, crate::dsl::STRUCTURED.into());
    }
    tools.retain(|t| !args.disallowed.iter().any(|d| d == t));
    tools
}
