//! Which steps this invocation runs: the `FAKE_CLAUDE_SCENARIO` file, else the file
//! named after the task in `FAKE_CLAUDE_SCENARIO_DIR`, else the prompt's `#fake`
//! directives, else the default `text "Done."`; one list per user message with
//! `--input-format stream-json`. Strict session checks may replace them with
//! `no-conversation`, and the claimed attempt number keeps only the steps meant for it.

use crate::cli::Args;
use crate::dsl::{self, Step};
use crate::prompt::Input;
use crate::run::{self, Engine};
use crate::startup::Refusal;
use crate::state;
use std::path::{Path, PathBuf};

/// This invocation's attempt, as the state dir counts it.
pub struct Attempt {
    /// 1 for the first invocation with this key, 2 for the next, ...
    pub number: u32,
    /// The per-task state dir, when state is kept (not for `instant`).
    pub state_dir: Option<PathBuf>,
}

/// The steps to run, before the attempt filters are applied.
pub struct Plan {
    /// The steps for the prompt as a whole.
    steps: Vec<Step>,
    /// With `--input-format stream-json`: each message's raw `content` JSON and steps.
    conversation: Option<Vec<(String, Vec<Step>)>>,
}

/// The scenario file's numbered lines, if `FAKE_CLAUDE_SCENARIO` names one, or if
/// `FAKE_CLAUDE_SCENARIO_DIR` holds a file named after `$BORG_TASK_ID` (sanitised as
/// for the state dir): a way to script tasks whose prompt the test does not write,
/// such as the ones borg creates.
fn scenario_file() -> Result<Option<Vec<(usize, String)>>, Refusal> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let path = match env("FAKE_CLAUDE_SCENARIO") {
        Some(p) => PathBuf::from(p),
        None => match (env("FAKE_CLAUDE_SCENARIO_DIR"), env("BORG_TASK_ID")) {
            (Some(dir), Some(_)) => {
                let p = PathBuf::from(dir).join(state::key(""));
                if !p.is_file() {
                    return Ok(None);
                }
                p
            }
            _ => return Ok(None),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(dsl::file_lines(&t))),
        Err(e) => Err(Refusal::scenario(format!(
            "fake-claude: cannot read FAKE_CLAUDE_SCENARIO {}: {e}",
            path.to_string_lossy()
        ))),
    }
}

/// The steps for one prompt text: the file's, else its directives, else the default.
fn steps_for(file: Option<&[(usize, String)]>, text: &str) -> Result<Vec<Step>, Refusal> {
    let lines = file.map_or_else(|| dsl::directives(text), <[_]>::to_vec);
    if lines.is_empty() {
        return Ok(vec![Step::Text("Done.".into())]);
    }
    dsl::parse(&lines).map_err(|e| Refusal::scenario(format!("fake-claude: scenario {e}")))
}

impl Plan {
    /// Parses the scenario for the prompt, then for each stream-json message; the
    /// first bad line is refused.
    pub fn load(input: &Input) -> Result<Plan, Refusal> {
        let file = scenario_file()?;
        let steps = steps_for(file.as_deref(), &input.prompt)?;
        let conversation = match &input.messages {
            None => None,
            Some(messages) => Some(
                messages
                    .iter()
                    .map(|(raw, text)| Ok((raw.clone(), steps_for(file.as_deref(), text)?)))
                    .collect::<Result<Vec<_>, Refusal>>()?,
            ),
        };
        Ok(Plan {
            steps,
            conversation,
        })
    }

    /// `FAKE_CLAUDE_STRICT_SESSIONS=1`: session ids are checked against the ones earlier
    /// fake runs used, as the real CLI checks its transcripts (fixtures
    /// `resume-unknown`, `session-id-reuse` in the docs). A used `--session-id` is
    /// refused; `--resume` of an unknown id runs `no-conversation` instead.
    pub fn check_sessions(&mut self, args: &Args) -> Result<(), Refusal> {
        let strict = std::env::var("FAKE_CLAUDE_STRICT_SESSIONS")
            .map(|v| v == "1")
            .unwrap_or(false);
        if let (true, None, Some(id)) = (strict, &args.resume, &args.session_id) {
            if state::session_known(id) {
                return Err(Refusal::usage(format!(
                    "Error: Session ID {id} is already in use."
                )));
            }
        }
        if let Some(r) = &args.resume {
            if strict && !r.is_empty() && !state::session_known(r) {
                self.steps = vec![Step::NoConversation];
            }
        }
        Ok(())
    }

    /// Claims the attempt number in the state dir, except for a scenario that starts
    /// with `instant` (no file IO at all). A state dir that cannot be written is not
    /// fatal: the run goes on as attempt 1.
    pub fn claim(&self, prompt: &str, argv: &[String], cwd: &Path, session_id: &str) -> Attempt {
        let first = self.steps.first();
        if matches!(first, Some(Step::Instant)) {
            return Attempt {
                number: 1,
                state_dir: None,
            };
        }
        let remember = !matches!(first, Some(Step::NoConversation));
        match state::claim(
            prompt,
            argv,
            &cwd.display().to_string(),
            session_id,
            remember,
        ) {
            Ok(st) => Attempt {
                number: st.attempt,
                state_dir: Some(st.dir),
            },
            Err(e) => {
                eprintln!("fake-claude: warning: {e}; treating this as attempt 1");
                Attempt {
                    number: 1,
                    state_dir: None,
                }
            }
        }
    }

    /// Runs the steps meant for `attempt` (one turn per message with stream-json
    /// input, unless the session is unknown); returns the exit code.
    pub fn run(self, engine: &mut Engine, attempt: u32, replay: bool) -> i32 {
        let steps = run::for_attempt(self.steps, attempt);
        match self.conversation {
            Some(c) if steps.first() != Some(&Step::NoConversation) => {
                let c: Vec<_> = c
                    .into_iter()
                    .map(|(raw, s)| (raw, run::for_attempt(s, attempt)))
                    .collect();
                engine.run_conversation(&c, replay)
            }
            _ => engine.run(&steps),
        }
    }
}
