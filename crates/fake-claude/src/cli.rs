//! Command-line parsing that behaves like the real CLI's commander.js front end:
//! the same flag spellings, `--flag=value` and `--flag value`, variadic flags that eat
//! every following non-flag word (including a prompt: a real pitfall worth keeping),
//! and commander's error texts for unknown options and missing values.

/// Everything fake-claude takes from argv.
#[derive(Debug, Default, Clone)]
pub struct Args {
    /// `-p` / `--print`.
    pub print: bool,
    /// `--verbose`.
    pub verbose: bool,
    /// `--version` / `-v`.
    pub version: bool,
    /// `--help` / `-h`.
    pub help: bool,
    /// `--output-format`.
    pub output_format: Option<String>,
    /// `--input-format`.
    pub input_format: Option<String>,
    /// `--permission-mode`.
    pub permission_mode: Option<String>,
    /// `--dangerously-skip-permissions`.
    pub skip_permissions: bool,
    /// `--model`.
    pub model: Option<String>,
    /// `--max-turns` (raw text; validated by the caller).
    pub max_turns: Option<String>,
    /// `--max-budget-usd` (raw text).
    pub max_budget: Option<String>,
    /// `--allowedTools` / `--allowed-tools` entries, split on commas and spaces.
    pub allowed: Vec<String>,
    /// `--disallowedTools` / `--disallowed-tools` entries.
    pub disallowed: Vec<String>,
    /// `--tools` entries (`None` = not given).
    pub tools: Option<Vec<String>>,
    /// `--session-id`.
    pub session_id: Option<String>,
    /// `--resume` / `-r` value (empty string when given without an id).
    pub resume: Option<String>,
    /// `--continue` / `-c`.
    pub continue_: bool,
    /// `--fork-session`.
    pub fork_session: bool,
    /// `--append-system-prompt`.
    pub append_system_prompt: Option<String>,
    /// `--replay-user-messages`.
    pub replay_user_messages: bool,
    /// The positional prompt, if any.
    pub prompt: Option<String>,
    /// `--mcp-config` values (files or JSON), in order.
    pub mcp_config: Vec<String>,
    /// `--strict-mcp-config`.
    pub strict_mcp: bool,
    /// `--settings` (a file or JSON).
    pub settings: Option<String>,
    /// `--setting-sources`.
    pub setting_sources: Option<String>,
    /// `--json-schema` (the schema text).
    pub json_schema: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
/// How an option takes its argument (commander's shapes).
enum Kind {
    /// A flag without value.
    Bool,
    /// `--flag value` or `--flag=value`, required.
    Value,
    /// `--flag [value]`: the value is optional.
    OptValue,
    /// `--flag <values...>`: eats words up to the next flag.
    Variadic,
}

/// (spellings, kind, the `<arg>` name commander prints in errors).
const OPTIONS: &[(&[&str], Kind, &str)] = &[
    (&["-p", "--print"], Kind::Bool, ""),
    (&["--verbose"], Kind::Bool, ""),
    (&["-v", "--version"], Kind::Bool, ""),
    (&["-h", "--help"], Kind::Bool, ""),
    (&["--output-format"], Kind::Value, "format"),
    (&["--input-format"], Kind::Value, "format"),
    (&["--permission-mode"], Kind::Value, "mode"),
    (&["--dangerously-skip-permissions"], Kind::Bool, ""),
    (&["--allow-dangerously-skip-permissions"], Kind::Bool, ""),
    (&["--model"], Kind::Value, "model"),
    (&["--fallback-model"], Kind::Value, "model"),
    (&["--max-turns"], Kind::Value, "turns"),
    (&["--max-budget-usd"], Kind::Value, "amount"),
    (
        &["--allowedTools", "--allowed-tools"],
        Kind::Variadic,
        "tools...",
    ),
    (
        &["--disallowedTools", "--disallowed-tools"],
        Kind::Variadic,
        "tools...",
    ),
    (&["--tools"], Kind::Variadic, "tools..."),
    (&["--add-dir"], Kind::Variadic, "directories..."),
    (&["--mcp-config"], Kind::Variadic, "configs..."),
    (&["--betas"], Kind::Variadic, "betas..."),
    (&["--strict-mcp-config"], Kind::Bool, ""),
    (&["--session-id"], Kind::Value, "uuid"),
    (&["-r", "--resume"], Kind::OptValue, "value"),
    (&["-c", "--continue"], Kind::Bool, ""),
    (&["--fork-session"], Kind::Bool, ""),
    (&["--no-session-persistence"], Kind::Bool, ""),
    (&["--append-system-prompt"], Kind::Value, "prompt"),
    (&["--append-system-prompt-file"], Kind::Value, "file"),
    (&["--system-prompt"], Kind::Value, "prompt"),
    (&["--system-prompt-file"], Kind::Value, "file"),
    (&["--include-partial-messages"], Kind::Bool, ""),
    (&["--include-hook-events"], Kind::Bool, ""),
    (&["--replay-user-messages"], Kind::Bool, ""),
    (&["--settings"], Kind::Value, "file-or-json"),
    (&["--setting-sources"], Kind::Value, "sources"),
    (&["--bare"], Kind::Bool, ""),
    (&["--json-schema"], Kind::Value, "schema"),
    (&["--effort"], Kind::Value, "level"),
    (&["-d", "--debug"], Kind::OptValue, "filter"),
    (&["--debug-file"], Kind::Value, "path"),
    (&["--permission-prompt-tool"], Kind::Value, "tool"),
    (&["--safe-mode"], Kind::Bool, ""),
    (&["--disable-slash-commands"], Kind::Bool, ""),
    (
        &["--exclude-dynamic-system-prompt-sections"],
        Kind::Bool,
        "",
    ),
    (&["--ide"], Kind::Bool, ""),
    (&["--agents"], Kind::Value, "json"),
    (&["--agent"], Kind::Value, "agent"),
    (&["--plugin-dir"], Kind::Variadic, "paths..."),
    (&["--resume-session-at"], Kind::Value, "message id"),
    (&["--rewind-files"], Kind::Value, "user-message-id"),
    (&["--task-budget"], Kind::Value, "tokens"),
    (&["--thinking"], Kind::Value, "mode"),
    (&["--max-thinking-tokens"], Kind::Value, "tokens"),
    (&["--sdk-url"], Kind::Value, "url"),
    (&["--session-mirror"], Kind::Bool, ""),
    (&["--workload"], Kind::Value, "tag"),
    (&["--init-only"], Kind::Bool, ""),
];

/// Splits a tools value on commas and spaces, keeping `Bash(git *)` whole.
fn split_tools(v: &str, into: &mut Vec<String>) {
    // Commas and spaces both separate, but not inside `Bash(git *)` parentheses.
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in v.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' | ' ' if depth <= 0 => {
                if !cur.is_empty() {
                    into.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        into.push(cur);
    }
}

/// Parses argv (without the program name). `Err` is the exact stderr text (exit 1).
pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut i = 0;
    let mut positional: Vec<String> = Vec::new();
    let mut only_positional = false;
    while i < argv.len() {
        let arg = &argv[i];
        i += 1;
        if only_positional || !arg.starts_with('-') || arg == "-" {
            positional.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        let (option, inline) = lookup(arg)?;
        let values = take_values(option, arg, inline, argv, &mut i)?;
        a.set(option.long(), &values);
    }
    if !positional.is_empty() {
        a.prompt = Some(positional.join(" "));
    }
    Ok(a)
}

/// One row of [`OPTIONS`].
#[derive(Clone, Copy)]
struct Opt {
    /// Its spellings (`-p`, `--print`).
    names: &'static [&'static str],
    /// How it takes its argument.
    kind: Kind,
    /// The `<arg>` name commander prints in errors.
    argname: &'static str,
}

impl Opt {
    /// The long spelling, which names the option in [`Args::set`].
    fn long(&self) -> &'static str {
        self.names
            .iter()
            .find(|n| n.starts_with("--"))
            .copied()
            .unwrap_or(self.names[0])
    }

    /// commander's error for a value that is not there.
    fn missing(&self) -> String {
        let flags = self.names.join(", ");
        format!(
            "error: option '{flags} <{}>' argument missing",
            self.argname
        )
    }
}

/// The option `arg` names, and its `--flag=value` value if written so.
fn lookup(arg: &str) -> Result<(Opt, Option<String>), String> {
    let (name, inline) = match arg.split_once('=') {
        Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
        _ => (arg, None),
    };
    match OPTIONS.iter().find(|(n, _, _)| n.contains(&name)) {
        Some(&(names, kind, argname)) => Ok((
            Opt {
                names,
                kind,
                argname,
            },
            inline,
        )),
        None => Err(format!("error: unknown option '{arg}'")),
    }
}

/// The values an option takes: its inline value, else the words after it (advancing
/// `i` past them) as its kind allows.
fn take_values(
    option: Opt,
    arg: &str,
    inline: Option<String>,
    argv: &[String],
    i: &mut usize,
) -> Result<Vec<String>, String> {
    let next_word = || {
        let word = argv.get(*i).filter(|w| !w.starts_with('-')).cloned();
        if word.is_some() {
            *i += 1;
        }
        word
    };
    match option.kind {
        Kind::Bool if inline.is_some() => Err(format!("error: unknown option '{arg}'")),
        Kind::Bool => Ok(Vec::new()),
        Kind::Value => match inline.or_else(next_word) {
            Some(v) => Ok(vec![v]),
            None => Err(option.missing()),
        },
        Kind::OptValue => Ok(vec![inline.or_else(next_word).unwrap_or_default()]),
        // `--flag=value` takes exactly one value: the documented way to keep a variadic
        // flag from swallowing the prompt.
        Kind::Variadic if inline.is_some() => Ok(inline.into_iter().collect()),
        Kind::Variadic => {
            // Like commander: a variadic option eats words until the next flag.
            let values: Vec<String> = std::iter::from_fn(next_word).collect();
            if values.is_empty() {
                Err(option.missing())
            } else {
                Ok(values)
            }
        }
    }
}

impl Args {
    /// Records option `long` with its values.
    fn set(&mut self, long: &str, values: &[String]) {
        let first = values.first().cloned().unwrap_or_default();
        match long {
            "--print" => self.print = true,
            "--verbose" => self.verbose = true,
            "--version" => self.version = true,
            "--help" => self.help = true,
            "--output-format" => self.output_format = Some(first),
            "--input-format" => self.input_format = Some(first),
            "--permission-mode" => self.permission_mode = Some(first),
            "--dangerously-skip-permissions" => self.skip_permissions = true,
            "--model" => self.model = Some(first),
            "--max-turns" => self.max_turns = Some(first),
            "--max-budget-usd" => self.max_budget = Some(first),
            "--allowedTools" => values
                .iter()
                .for_each(|v| split_tools(v, &mut self.allowed)),
            "--disallowedTools" => values
                .iter()
                .for_each(|v| split_tools(v, &mut self.disallowed)),
            "--tools" => {
                let mut t = Vec::new();
                values.iter().for_each(|v| split_tools(v, &mut t));
                self.tools = Some(t);
            }
            "--session-id" => self.session_id = Some(first),
            "--resume" => self.resume = Some(first),
            "--continue" => self.continue_ = true,
            "--fork-session" => self.fork_session = true,
            "--append-system-prompt" => self.append_system_prompt = Some(first),
            "--replay-user-messages" => self.replay_user_messages = true,
            "--mcp-config" => self.mcp_config.extend(values.iter().cloned()),
            "--strict-mcp-config" => self.strict_mcp = true,
            "--settings" => self.settings = Some(first),
            "--setting-sources" => self.setting_sources = Some(first),
            "--json-schema" => self.json_schema = Some(first),
            _ => {} // accepted and ignored: it changes nothing a scenario can show
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Args, String> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_values() {
        let a = p(&[
            "-p",
            "--permission-mode=acceptEdits",
            "--model",
            "sonnet",
            "--allowedTools=Read,Bash(git *)",
        ])
        .unwrap();
        assert!(a.print);
        assert_eq!(a.permission_mode.as_deref(), Some("acceptEdits"));
        assert_eq!(a.model.as_deref(), Some("sonnet"));
        assert_eq!(a.allowed, vec!["Read", "Bash(git *)"]);
    }

    #[test]
    fn unknown_and_missing() {
        assert_eq!(p(&["--x"]).unwrap_err(), "error: unknown option '--x'");
        assert!(p(&["--model"]).unwrap_err().contains("argument missing"));
    }

    #[test]
    fn variadic_swallows_prompt() {
        let a = p(&["-p", "--tools", "Read", "hello"]).unwrap();
        assert_eq!(a.prompt, None);
        let a = p(&["-p", "--tools=Read", "hello"]).unwrap();
        assert_eq!(a.prompt.as_deref(), Some("hello"));
    }
}
