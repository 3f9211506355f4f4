//! The prompt: a positional argument, else stdin to EOF. With `--input-format
//! stream-json` stdin holds one user message per line, each its own turn with its own
//! result, so the messages are kept apart as well as joined into the prompt.

use crate::cli::Args;
use crate::out;
use crate::startup::Refusal;
use std::io::Read;

/// What the model is asked.
pub struct Input {
    /// The whole prompt (with stream-json input: the messages' texts, one per line).
    pub prompt: String,
    /// With `--input-format stream-json`: each message's raw `content` JSON and its text.
    pub messages: Option<Vec<(String, String)>>,
}

/// Reads the prompt; an empty one is refused like the CLI does.
pub fn read(args: &Args) -> Result<Input, Refusal> {
    let input = match &args.prompt {
        Some(p) => Input {
            prompt: p.clone(),
            messages: None,
        },
        None => from_stdin(args.input_format.as_deref() == Some("stream-json")),
    };
    if input.prompt.trim().is_empty() {
        return Err(Refusal::usage("Error: Input must be provided either through stdin or as a prompt argument when using --print"));
    }
    Ok(input)
}

/// Stdin to EOF, as plain text or as stream-json user messages.
fn from_stdin(stream_json: bool) -> Input {
    let mut buf = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    if !stream_json {
        return Input {
            prompt: text,
            messages: None,
        };
    }
    let messages = stream_json_messages(&text);
    let prompt = messages
        .iter()
        .map(|x| x.1.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    Input {
        prompt,
        messages: Some(messages),
    }
}

/// The user messages of `--input-format stream-json` input: (raw `content` JSON, its
/// text). Lines that are not JSON user messages are skipped.
fn stream_json_messages(input: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in input.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let content = &v["message"]["content"];
        let text = match content {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|i| i["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => continue,
        };
        out.push((type_first(content), text));
    }
    out
}

/// JSON text of `v` with `"type"` first in every object. serde_json's map sorts keys,
/// and content blocks as clients write them (and as the CLI echoes them) start with
/// `type`, so this restores the usual order.
fn type_first(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let mut o = out::Obj::new();
            if let Some(t) = m.get("type") {
                o = o.raw("type", &type_first(t));
            }
            for (k, x) in m.iter().filter(|(k, _)| k.as_str() != "type") {
                o = o.raw(k, &type_first(x));
            }
            o.end()
        }
        serde_json::Value::Array(a) => out::arr(a.iter().map(type_first)),
        other => other.to_string(),
    }
}
