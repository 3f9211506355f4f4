//! `borg transcript FILE`: summarise a saved claude stream-json transcript.

use super::{print_json, Ctx};
use crate::cli::TranscriptArgs;
use crate::error::{UsageError, EXIT_OK};
use crate::outcome::fault::{classify, Classified, EndFacts};
use crate::outcome::transcript::TranscriptSummary;
use std::path::Path;

/// Runs `borg transcript`.
pub fn run(_ctx: &Ctx, a: TranscriptArgs) -> anyhow::Result<i32> {
    let sum = crate::outcome::transcript::summarize_file(&a.file)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", a.file.display())))?;
    let c = classify(&sum, &EndFacts::default());
    if a.json {
        print_json(&json_view(&a.file, &sum, &c))?;
    } else {
        print_text(&a.file, &sum, &c);
    }
    Ok(EXIT_OK)
}

/// The summary as JSON, in the same vocabulary as reports; whether a result line was
/// seen is its own field.
fn json_view(file: &Path, sum: &TranscriptSummary, c: &Classified) -> serde_json::Value {
    let files: Vec<_> = sum
        .tool_files
        .iter()
        .map(|f| serde_json::json!({"path": f.path, "change": f.change}))
        .collect();
    serde_json::json!({
        "file": file,
        "status": c.status.as_str(),
        "result_seen": sum.result.is_some(),
        "result": sum.result.as_ref().and_then(|r| r.result.clone()),
        "error": c.error,
        "fault": c.fault,
        "session_id": sum.session_id,
        "claude_version": sum.claude_version,
        "model": sum.model,
        "cost_usd": sum.cost_usd,
        "tokens": sum.tokens,
        "num_turns": sum.num_turns,
        "files_changed": files,
        "tests": sum.tests,
        "tools_used": sum.tools_used,
        "tool_errors": sum.tool_errors,
        "api_retries": sum.api_retries,
        "rate_limit": sum.rate_limit,
        "lines": sum.lines,
        "bad_lines": sum.bad_lines,
        "oversized_lines": sum.oversized_lines,
    })
}

/// The summary for a person: one labelled line per fact, then the files.
fn print_text(file: &Path, sum: &TranscriptSummary, c: &Classified) {
    println!("file:       {}", file.display());
    println!("status:     {}", c.status.as_str());
    if let Some(e) = &c.error {
        println!("error:      {}", e.lines().next().unwrap_or(""));
    }
    println!("session:    {}", sum.session_id.as_deref().unwrap_or("-"));
    println!("cost:       ${:.4}", sum.cost_usd);
    println!(
        "tokens:     {} in, {} out, {} cache read",
        sum.tokens.input, sum.tokens.output, sum.tokens.cache_read
    );
    println!("turns:      {}", sum.num_turns);
    let tools: Vec<String> = sum
        .tools_used
        .iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect();
    println!(
        "tools:      {}",
        if tools.is_empty() {
            "-".into()
        } else {
            tools.join(", ")
        }
    );
    match sum.tests {
        Some(t) => println!(
            "tests:      {} passed, {} failed, {} ignored",
            t.passed, t.failed, t.ignored
        ),
        None => println!("tests:      -"),
    }
    println!(
        "files:      {}",
        if sum.tool_files.is_empty() {
            "-".to_string()
        } else {
            String::new()
        }
    );
    for f in &sum.tool_files {
        println!("  {:?} {}", f.change, f.path);
    }
    println!(
        "lines:      {} ({} not JSON, {} too long)",
        sum.lines, sum.bad_lines, sum.oversized_lines
    );
}
