//! The prompts of fix rounds. A fix round resumes the task's own claude session
//! (`--resume <session_id>`, in the same worktree), so the agent keeps everything it
//! knew; the prompt only says what borg found: the failing gate, its command, the
//! regressions, and the bounded tail of its output; or the reviewer's comments.

use crate::outcome::verified::{Comment, GateRun};

/// The prompt of a round after a gate failed.
pub fn after_gate(run: &GateRun, round: u32, rounds: u32) -> String {
    let mut p = format!(
        "borg ran your work's verification gate and it failed (fix round {round} of {rounds}).\n\n\
         Gate: `{}`\nExit code: {}\n",
        run.command,
        run.exit_code
            .map_or_else(|| "none (killed)".to_string(), |c| c.to_string()),
    );
    if run.timed_out {
        p.push_str("It was killed at its timeout.\n");
    }
    if !run.regressions.is_empty() {
        p.push_str("\nTests that fail now and did not fail before your change (regressions):\n");
        for r in &run.regressions {
            p.push_str(&format!("- {r}\n"));
        }
    }
    if !run.preexisting.is_empty() {
        p.push_str(&format!(
            "\nAlready failing before your change (not yours to fix): {}\n",
            run.preexisting.join(", ")
        ));
    }
    p.push_str(&format!(
        "\nThe end of its output:\n```\n{}\n```\n\n\
         Fix the cause in the code, then check with the same command. borg runs the gate \
         again when you are done.\n",
        run.output_tail
    ));
    p
}

/// The prompt of a round after a reviewer asked for changes.
pub fn after_review(role: &str, comments: &[Comment], round: u32, rounds: u32) -> String {
    let mut p = format!(
        "A {role} reviewed your work and requested changes (fix round {round} of {rounds}).\n\n\
         Comments:\n"
    );
    if comments.is_empty() {
        p.push_str("- (no comment given)\n");
    }
    for c in comments {
        let place = match (c.path.is_empty(), c.line) {
            (true, _) => String::new(),
            (false, Some(l)) => format!("{}:{l}: ", c.path),
            (false, None) => format!("{}: ", c.path),
        };
        p.push_str(&format!("- {place}{}\n", c.body));
    }
    p.push_str("\nMake these changes. borg checks the work again when you are done.\n");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_prompt_names_everything() {
        let run = GateRun {
            command: "python3 -m unittest".into(),
            exit_code: Some(1),
            regressions: vec!["t.CalcTest.test_add".into()],
            preexisting: vec!["t.old".into()],
            output_tail: "FAIL: test_add".into(),
            ..GateRun::default()
        };
        let p = after_gate(&run, 1, 2);
        for want in [
            "`python3 -m unittest`",
            "Exit code: 1",
            "- t.CalcTest.test_add",
            "not yours to fix): t.old",
            "FAIL: test_add",
            "round 1 of 2",
        ] {
            assert!(p.contains(want), "{want} missing in {p}");
        }
        let c = Comment {
            path: "calc.py".into(),
            line: Some(3),
            body: "handle negatives".into(),
        };
        assert!(after_review("reviewer", &[c], 2, 2).contains("- calc.py:3: handle negatives"));
    }
}
