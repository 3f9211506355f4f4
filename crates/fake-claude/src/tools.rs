//! The four tools a scenario can call, executed for real in the cwd like the CLI does,
//! with the CLI's result texts and `tool_use_result` shapes (docs §4.3, fixtures
//! `success`, `file-changes`, `tool-errors`, `sigint-during-bash`). The Bash tool's
//! shell lives in `shell`, the diff shown for Write and Edit in `patch`.

use crate::out::Obj;
use std::path::{Path, PathBuf};

mod patch;
mod shell;

use patch::structured_patch;
pub use shell::{bash, spawn_background};

/// Suffix the CLI appends to successful Write/Edit results.
const FRESH: &str = " (file state is current in your context — no need to Read it back)";

/// What a tool call produced.
pub enum Outcome {
    /// Success: message `content`, whether to print `"is_error":false` (Bash does),
    /// and the `tool_use_result` object as JSON.
    Ok {
        /// Text of the tool_result.
        content: String,
        /// Bash prints `"is_error":false`; the file tools leave it out.
        bash: bool,
        /// `tool_use_result` JSON.
        tur: String,
    },
    /// Failure: message `content` (is_error true) and the plain-string `tool_use_result`.
    Err {
        /// Text of the tool_result.
        content: String,
        /// `tool_use_result`: `Error: …`.
        tur: String,
    },
    /// SIGINT arrived while the tool ran; its processes are already gone.
    Interrupted,
    /// An MCP result whose `content` is not a plain string (a list of blocks): the
    /// block's `content` JSON and the `tool_use_result` JSON, both raw.
    Raw {
        /// Raw JSON of the tool_result's `content`.
        content: String,
        /// Raw JSON of `tool_use_result`.
        tur: String,
    },
}

/// Shorthand for [`Outcome::Err`].
fn err(content: String, tur: String) -> Outcome {
    Outcome::Err { content, tur }
}

/// Makes `p` absolute against `cwd`, as the model would pass it.
pub fn abs(cwd: &Path, p: &str) -> PathBuf {
    let pb = PathBuf::from(p);
    if pb.is_absolute() {
        pb
    } else {
        cwd.join(pb)
    }
}

/// Write: create or overwrite (overwriting needs a prior Read in this session).
pub fn write(path: &Path, content: &str, was_read: bool) -> Outcome {
    let p = path.display().to_string();
    let original = std::fs::read_to_string(path).ok();
    if original.is_some() && !was_read {
        let m = "File has not been read yet. Read it first before writing to it.";
        return err(
            format!("<tool_use_error>{m}</tool_use_error>"),
            format!("Error: {m}"),
        );
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(path, content) {
        let m = format!("Cannot write {p}: {e}");
        return err(m.clone(), format!("Error: {m}"));
    }
    match original {
        None => Outcome::Ok {
            content: format!("File created successfully at: {p}{FRESH}"),
            bash: false,
            tur: Obj::new()
                .s("type", "create")
                .s("filePath", &p)
                .s("content", content)
                .raw("structuredPatch", "[]")
                .null("originalFile")
                .v("userModified", &false)
                .end(),
        },
        Some(orig) => Outcome::Ok {
            content: format!("The file {p} has been updated successfully.{FRESH}"),
            bash: false,
            tur: Obj::new()
                .s("type", "update")
                .s("filePath", &p)
                .s("content", content)
                .raw("structuredPatch", &structured_patch(&orig, content))
                .s("originalFile", &orig)
                .v("userModified", &false)
                .end(),
        },
    }
}

/// Read: `cat -n`-style numbered lines.
pub fn read(cwd: &Path, path: &Path) -> Outcome {
    let p = path.display().to_string();
    let Ok(text) = std::fs::read_to_string(path) else {
        let m = format!(
            "File does not exist. Note: your current working directory is {}.",
            cwd.display()
        );
        return err(m.clone(), format!("Error: {m}"));
    };
    // The CLI numbers `split('\n')`, so a trailing newline gives a last empty line.
    let lines: Vec<&str> = text.split('\n').collect();
    let numbered: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{}\t{l}", i + 1))
        .collect();
    let file = Obj::new()
        .s("filePath", &p)
        .s("content", &text)
        .v("numLines", &lines.len())
        .v("startLine", &1)
        .v("totalLines", &lines.len());
    Outcome::Ok {
        content: numbered.join("\n"),
        bash: false,
        tur: Obj::new().s("type", "text").o("file", file).end(),
    }
}

/// Edit: replace `old` with `new` (once, or every match with `all`).
pub fn edit(cwd: &Path, path: &Path, old: &str, new: &str, all: bool, was_read: bool) -> Outcome {
    let p = path.display().to_string();
    let tool_err = |m: String| {
        err(
            format!("<tool_use_error>{m}</tool_use_error>"),
            format!("Error: {m}"),
        )
    };
    let Ok(orig) = std::fs::read_to_string(path) else {
        let m = format!(
            "File does not exist. Note: your current working directory is {}.",
            cwd.display()
        );
        return tool_err(m);
    };
    if !was_read {
        return tool_err("File has not been read yet. Read it first before writing to it.".into());
    }
    let count = if old.is_empty() {
        0
    } else {
        orig.matches(old).count()
    };
    if count == 0 {
        return tool_err(format!(
            "String to replace not found in file.\nString: {old}"
        ));
    }
    if count > 1 && !all {
        return tool_err(format!(
            "Found {count} matches of the string to replace, but replace_all is false. To replace all occurrences, set replace_all to true. To replace only one occurrence, please provide more context to uniquely identify the instance.\nString: {old}"
        ));
    }
    let updated = if all {
        orig.replace(old, new)
    } else {
        orig.replacen(old, new, 1)
    };
    if let Err(e) = std::fs::write(path, &updated) {
        return tool_err(format!("cannot write {p}: {e}"));
    }
    let content = if all {
        format!("The file {p} has been updated. All occurrences were successfully replaced.{FRESH}")
    } else {
        format!("The file {p} has been updated successfully.{FRESH}")
    };
    let tur = Obj::new()
        .s("filePath", &p)
        .s("oldString", old)
        .s("newString", new)
        .s("originalFile", &orig)
        .raw("structuredPatch", &structured_patch(&orig, &updated))
        .v("userModified", &false)
        .v("replaceAll", &all)
        .end();
    Outcome::Ok {
        content,
        bash: false,
        tur,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_like_the_cli() {
        let orig = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";
        let new = orig.replacen("a - b", "a + b", 1);
        assert_eq!(
            structured_patch(orig, &new),
            r#"[{"oldStart":1,"oldLines":5,"newStart":1,"newLines":5,"lines":[" def add(a, b):","-    return a - b","+    return a + b"," "," "," def mul(a, b):"]}]"#
        );
        assert_eq!(
            structured_patch("# scratch\n", "# rewritten\n\nnew body\n"),
            r##"[{"oldStart":1,"oldLines":1,"newStart":1,"newLines":3,"lines":["-# scratch","+# rewritten","+","+new body"]}]"##
        );
    }
}
