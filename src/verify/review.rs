//! The review verdict. After the gates pass, a reviewer (the task's `review` role)
//! reads the task's prompt, the agent's result and the diff (bounded), and answers
//! with a structured verdict through the CLI's `--json-schema`: [`SCHEMA`]. The
//! verdict is read from the result's `structured_output` (the result text holds the
//! same JSON, a fallback for a CLI that would not repeat it).

use crate::outcome::verified::Comment;
use serde::Deserialize;

/// The verdict's JSON schema, given to the reviewer's claude with `--json-schema`.
pub const SCHEMA: &str = r#"{"type":"object","properties":{"verdict":{"type":"string","enum":["approve","changes_requested"]},"comments":{"type":"array","items":{"type":"object","properties":{"path":{"type":"string"},"line":{"type":"integer"},"body":{"type":"string"}},"required":["body"]}}},"required":["verdict","comments"],"additionalProperties":false}"#;

/// The largest diff put in a review prompt, in bytes.
pub const DIFF_BYTES: usize = 48 * 1024;

/// A reviewer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Verdict {
    /// `approve` or `changes_requested`.
    pub verdict: String,
    /// Its comments.
    #[serde(default)]
    pub comments: Vec<Comment>,
}

/// The reviewer's prompt.
pub fn prompt(task: &str, task_prompt: &str, result: Option<&str>, diff: &str) -> String {
    let (diff, cut) = bounded(diff, DIFF_BYTES);
    let mut p = format!(
        "Review the work another agent did for task `{task}`, on its branch (checked out \
         here). Do not change any file.\n\n## The task it was given\n\n{task_prompt}\n\n\
         ## What it said it did\n\n{}\n\n## Its diff\n\n```diff\n{diff}\n```\n",
        result.unwrap_or("(nothing)")
    );
    if cut {
        p.push_str("(the diff is cut here; read the files for the rest)\n");
    }
    p.push_str(
        "\nAnswer with your verdict in the structured output: `approve` when the work does \
         what the task asks and is correct, else `changes_requested` with one comment per \
         change needed (file path, line when it helps, and what to change).\n",
    );
    p
}

/// The diff's first `max` bytes (cut at a line end) and whether it was cut.
fn bounded(diff: &str, max: usize) -> (&str, bool) {
    if diff.len() <= max {
        return (diff, false);
    }
    let mut cut = max;
    while !diff.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = diff[..cut].rfind('\n').unwrap_or(cut);
    (&diff[..cut], true)
}

/// The verdict from the result's structured output, else from its text; an error
/// says what was wrong.
pub fn read(structured: Option<&serde_json::Value>, text: Option<&str>) -> Result<Verdict, String> {
    let v: Verdict = match (structured, text) {
        (Some(s), _) => serde_json::from_value(s.clone()).map_err(|e| e.to_string())?,
        (None, Some(t)) => serde_json::from_str(t.trim()).map_err(|e| {
            format!("the reviewer gave no structured output, and its result is not a verdict ({e})")
        })?,
        (None, None) => return Err("the reviewer gave no verdict".into()),
    };
    match v.verdict.as_str() {
        "approve" | "changes_requested" => Ok(v),
        other => Err(format!(
            "unknown verdict {other:?} (expected approve or changes_requested)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_json_and_verdicts_read() {
        let s: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(s["required"][0], "verdict");
        let v = serde_json::json!({"verdict":"changes_requested","comments":[{"path":"a.py","line":3,"body":"x"}]});
        let r = read(Some(&v), None).unwrap();
        assert_eq!(r.comments[0].line, Some(3));
        assert_eq!(
            read(None, Some(r#"{"verdict":"approve","comments":[]}"#))
                .unwrap()
                .verdict,
            "approve"
        );
        assert!(read(None, Some("LGTM")).is_err());
        assert!(read(Some(&serde_json::json!({"verdict":"maybe"})), None).is_err());
    }

    #[test]
    fn prompt_bounds_the_diff() {
        let diff = "+line\n".repeat(20_000);
        let p = prompt("t", "do it", Some("done"), &diff);
        assert!(p.len() < DIFF_BYTES + 2048);
        assert!(p.contains("the diff is cut here"));
    }
}
