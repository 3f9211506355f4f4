//! The tools of `borg mcp`: names (a contract: the agent sees `mcp__borg__<name>`, the
//! hooks and tests match them), the descriptions the model reads, and each input's
//! JSON schema. The server's instructions (added to the model's system prompt by the
//! CLI) say how the tools fit together.

use serde_json::{json, Value};

/// What the CLI puts in the system prompt under "MCP Server Instructions".
pub const INSTRUCTIONS: &str = "borg coordinates you with the other agents working on this repository at the same time. \
Before editing files another agent may touch, call lock_files (writes to files another agent holds are refused; your own writes lease the file automatically). \
Call status to see who works on what and which files are held. Log design decisions with log_decision and read them with list_decisions; \
talk to other agents with send_message and read_messages. Report progress with report_progress. \
Leases are released when your task ends.";

/// Every tool: (name, description, input schema).
pub fn tools() -> Vec<(&'static str, &'static str, Value)> {
    let s = |t: &str, d: &str| json!({ "type": t, "description": d });
    let paths = json!({ "type": "array", "items": { "type": "string" }, "minItems": 1,
        "description": "Paths relative to the repository root (your working directory); globs allowed (\"src/auth/**\"); a folder ending in / means everything under it" });
    vec![
        ("status", "The fleet right now: every instance with its role, task, progress and current file; the file leases held and by whom; pending handoffs; your unread messages; recent decisions. Call it before starting work and whenever a file is refused.",
            json!({ "type": "object", "properties": {} })),
        ("lock_files", "Lease files before editing them so that no other agent edits them at the same time. Answers the paths granted and, for each refused path, who holds it (instance, task, role, reason, since). With wait_s, waits up to that many seconds for refused paths in a fair queue; a wait that would deadlock is refused at once, naming the cycle.",
            json!({ "type": "object", "properties": {
                "paths": paths,
                "reason": s("string", "What you are doing with them (shown to other agents)"),
                "ttl_s": { "type": "integer", "minimum": 1, "maximum": 86400, "description": "Lease length in seconds (default: borg's lease_ttl; your writes renew it)" },
                "wait_s": { "type": "integer", "minimum": 0, "maximum": 600, "description": "Wait up to this many seconds for refused paths (default 0: answer at once)" } },
              "required": ["paths", "reason"] })),
        ("unlock_files", "Release leases you hold, as soon as you are done with the files. Every lease is released when your task ends anyway.",
            json!({ "type": "object", "properties": { "paths": paths }, "required": ["paths"] })),
        ("log_decision", "Record a decision other agents must follow (an API shape, a schema, a convention). Returns its id, like DEC-20261130-0001.",
            json!({ "type": "object", "properties": {
                "category": s("string", "A short category, e.g. api-design, database-schema, testing"),
                "title": s("string", "One line: what was decided"),
                "description": s("string", "The decision and why"),
                "scope": s("string", "What it applies to (a service, a folder); optional") },
              "required": ["category", "title", "description"] })),
        ("list_decisions", "The decisions logged so far, newest first.",
            json!({ "type": "object", "properties": {
                "category": s("string", "Only this category"),
                "limit": { "type": "integer", "minimum": 1, "maximum": 200, "description": "At most this many (default 20)" } } })),
        ("send_message", "Send a message to another agent: to an instance id, a role (every instance of it), a task id (the agent running it), or \"all\".",
            json!({ "type": "object", "properties": {
                "to": s("string", "An instance id, a role, a task id, or \"all\""),
                "subject": s("string", "A subject line; optional"),
                "body": s("string", "The message") },
              "required": ["to", "body"] })),
        ("read_messages", "Your unread messages (addressed to you, your role, your task or all), oldest first; they are marked read.",
            json!({ "type": "object", "properties": {} })),
        ("report_progress", "Tell borg (and the people watching) how far you are.",
            json!({ "type": "object", "properties": {
                "percent": { "type": "integer", "minimum": 0, "maximum": 100, "description": "0 to 100" },
                "step": s("string", "What you are doing now"),
                "message": s("string", "A note; optional") },
              "required": ["percent", "step"] })),
        ("save_context", "Save a value under a key in the context every agent of this run shares (notes, findings, generated names).",
            json!({ "type": "object", "properties": {
                "key": s("string", "1-128 of A-Z a-z 0-9 . _ - : /"),
                "value": s("string", "The value (text; JSON is fine), at most 64 KiB") },
              "required": ["key", "value"] })),
        ("get_context", "Read a key of the shared context.",
            json!({ "type": "object", "properties": { "key": s("string", "The key") }, "required": ["key"] })),
        ("request_handoff", "Hand your work on to another role when this task succeeds (it becomes a task for that role, with this context).",
            json!({ "type": "object", "properties": {
                "to_role": s("string", "The role to hand on to, e.g. tester"),
                "reason": s("string", "Why"),
                "state": s("string", "The state of the work; optional"),
                "next_steps": { "type": "array", "items": { "type": "string" }, "description": "What the next agent should do" } },
              "required": ["to_role", "reason", "next_steps"] })),
        ("create_task", "Add a task to this run (it runs in this run, after its dependencies). Bounded per run; answers the new task's id.",
            json!({ "type": "object", "properties": {
                "prompt": s("string", "What the task must do"),
                "role": s("string", "The role that runs it"),
                "id": s("string", "Its id (1-64 of A-Z a-z 0-9 . _ -); optional"),
                "depends_on": { "type": "array", "items": { "type": "string" }, "description": "Task ids that must succeed first; optional" },
                "priority": { "type": "integer", "description": "Higher runs first; optional" } },
              "required": ["prompt", "role"] })),
    ]
}
