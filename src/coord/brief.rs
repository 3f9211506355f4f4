//! The coordination section of a task's prompt, bounded: the run's recent decisions
//! (id, category, title), the unread messages addressed to the task's instance, role
//! or task (delivered now, so marked read), and the leases other instances hold. It is
//! left out when there is nothing to say.

use super::leases::clock;
use super::notes::one_line;
use crate::store::coord::{DecisionRow, LeaseRow, MessageRow, Reader};
use crate::store::Store;
use std::fmt::Write;

/// Decisions shown.
pub const DECISIONS: usize = 10;
/// Messages shown (and marked read).
pub const MESSAGES: usize = 10;
/// Leases shown.
pub const LEASES: usize = 20;
/// Longest message body quoted.
const BODY_CHARS: usize = 600;

/// What the section shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Brief {
    /// Recent decisions, newest first.
    pub decisions: Vec<DecisionRow>,
    /// Unread messages, oldest first.
    pub messages: Vec<MessageRow>,
    /// Live leases of other attempts.
    pub leases: Vec<LeaseRow>,
    /// More leases than shown.
    pub more_leases: usize,
}

/// Reads the brief for `reader` (the messages are marked read: they are delivered in
/// the prompt). A store error leaves that part out.
pub fn gather(store: &dyn Store, reader: &Reader, now_ms: i64) -> Brief {
    let decisions = store.decisions(None, DECISIONS).unwrap_or_default();
    let messages = store
        .unread_messages(reader, true, MESSAGES, now_ms)
        .unwrap_or_default();
    let live: Vec<LeaseRow> = store
        .leases(now_ms)
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.live && l.instance != reader.instance)
        .collect();
    let more_leases = live.len().saturating_sub(LEASES);
    Brief {
        decisions,
        messages,
        leases: live.into_iter().take(LEASES).collect(),
        more_leases,
    }
}

/// The section's text (empty when there is nothing to show). Every line starts with
/// a marker, so no quoted text can pass for a directive of its own.
pub fn render(b: &Brief) -> String {
    if b.decisions.is_empty() && b.messages.is_empty() && b.leases.is_empty() {
        return String::new();
    }
    let mut p = String::from("## Coordination with the other agents\n\n");
    if !b.decisions.is_empty() {
        p.push_str("Decisions of this run (follow them; details: mcp__borg__list_decisions):\n");
        for d in &b.decisions {
            let _ = writeln!(
                p,
                "- [{}] {} ({})",
                d.id,
                one_line(&d.title, 200),
                d.category
            );
        }
        p.push('\n');
    }
    if !b.messages.is_empty() {
        p.push_str("Messages for you:\n");
        for m in &b.messages {
            let from = m.from_instance.clone().unwrap_or_else(|| m.author.clone());
            let subject = m
                .subject
                .as_deref()
                .map(|s| format!(" [{}]", one_line(s, 120)))
                .unwrap_or_default();
            let _ = writeln!(
                p,
                "- from {from} to {}{subject}: {}",
                m.to.label(),
                one_line(&m.body, BODY_CHARS)
            );
        }
        p.push('\n');
    }
    if !b.leases.is_empty() {
        p.push_str(
            "Files other agents hold now (writes to them are refused; see mcp__borg__status):\n",
        );
        for l in &b.leases {
            let why = if l.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", one_line(&l.reason, 120))
            };
            let _ = writeln!(
                p,
                "- {} by {} (task {}){why}, since {}",
                l.path,
                l.instance,
                l.task,
                clock(l.since_ms)
            );
        }
        if b.more_leases > 0 {
            let _ = writeln!(p, "- … and {} more", b.more_leases);
        }
        p.push('\n');
    }
    p
}
