//! Output side of fake-claude: an insertion-ordered JSON object builder (the real CLI's
//! key order matters to people diffing transcripts, and serde_json's `Map` sorts keys
//! unless a crate-wide feature is switched on), id generators, and the stdout writer
//! that emits one line per `write(2)` so a supervisor sees every line as it comes.

use rand::Rng;
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

/// Early end of the run with this process exit code (the run's `?` channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End(pub i32);

/// Result alias for everything that may end the run early.
pub type R<T = ()> = Result<T, End>;

/// A JSON object built field by field, keeping insertion order.
pub struct Obj {
    /// The JSON text so far (without the closing brace).
    buf: String,
    /// No field written yet (no comma needed).
    empty: bool,
}

impl Default for Obj {
    fn default() -> Self {
        Self::new()
    }
}

impl Obj {
    /// An empty object.
    pub fn new() -> Self {
        Obj {
            buf: String::from("{"),
            empty: true,
        }
    }

    /// Writes the separator and the quoted key.
    fn key(&mut self, k: &str) {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        self.buf.push_str(&jstr(k));
        self.buf.push(':');
    }

    /// Adds a string field.
    pub fn s(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        self.buf.push_str(&jstr(v));
        self
    }

    /// Adds any serializable value (numbers, bools, `Option`s, string vectors).
    pub fn v<T: Serialize + ?Sized>(mut self, k: &str, v: &T) -> Self {
        self.key(k);
        self.buf
            .push_str(&serde_json::to_string(v).unwrap_or_else(|_| "null".into()));
        self
    }

    /// Adds a number the way JavaScript prints it: whole values without `.0`
    /// (`"total_cost_usd":0`, as the CLI prints), others as the shortest round-trip form.
    pub fn f(self, k: &str, v: f64) -> Self {
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
            self.raw(k, &format!("{}", v as i64))
        } else {
            self.v(k, &v)
        }
    }

    /// Adds already-serialized JSON text.
    pub fn raw(mut self, k: &str, raw: &str) -> Self {
        self.key(k);
        self.buf.push_str(raw);
        self
    }

    /// Adds a nested object.
    pub fn o(self, k: &str, o: Obj) -> Self {
        let inner = o.end();
        self.raw(k, &inner)
    }

    /// Adds JSON `null`.
    pub fn null(self, k: &str) -> Self {
        self.raw(k, "null")
    }

    /// Finishes the object and returns its JSON text.
    pub fn end(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// A JSON string literal for `s`.
pub fn jstr(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A JSON array from already-serialized elements.
pub fn arr<I: IntoIterator<Item = String>>(items: I) -> String {
    let v: Vec<String> = items.into_iter().collect();
    format!("[{}]", v.join(","))
}

/// A random UUID v4 as text.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `n` random base62 characters, the alphabet of real API ids (`msg_01…`, `toolu_01…`).
pub fn b62(n: usize) -> String {
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| A[rng.gen_range(0..A.len())] as char)
        .collect()
}

/// Now as the CLI prints `timestamp` on user lines: `2026-11-21T19:32:55.995Z`.
pub fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Now in epoch seconds.
pub fn epoch_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Which `--output-format` the run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text`: only the final result string (errors too) on stdout.
    Text,
    /// `json`: one result object, or with `--verbose` an array of every event.
    Json,
    /// `stream-json`: one event per line as it happens.
    StreamJson,
}

/// The stdout writer. It writes straight to fd 1, one syscall per line, because the
/// std `Stdout` lock would be needed from signal-aware code paths and its buffering
/// would hide lines from a supervisor that watches for silence.
pub struct Out {
    /// fd 1, never closed by us.
    fd1: ManuallyDrop<File>,
    /// The output format chosen on the command line.
    pub format: Format,
    /// `--verbose`: `json` output becomes an array of every event.
    verbose: bool,
    /// Events kept for the `json --verbose` array.
    collected: Vec<String>,
}

impl Out {
    /// A writer on fd 1.
    pub fn new(format: Format, verbose: bool) -> Self {
        // SAFETY: fd 1 is open for the life of the process; ManuallyDrop keeps us from
        // closing it when the writer goes away.
        let fd1 = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
        Out {
            fd1,
            format,
            verbose,
            collected: Vec::new(),
        }
    }

    /// Writes raw bytes to stdout. A closed pipe (EPIPE) ends the run quietly with 1.
    pub fn raw(&mut self, bytes: &[u8]) -> R {
        match self.fd1.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(_) => Err(End(1)),
        }
    }

    /// Emits one event. In `json --verbose` mode it is collected for the final array.
    pub fn line(&mut self, json: &str) -> R {
        match self.format {
            Format::StreamJson => {
                let mut b = Vec::with_capacity(json.len() + 1);
                b.extend_from_slice(json.as_bytes());
                b.push(b'\n');
                self.raw(&b)
            }
            Format::Json if self.verbose => {
                self.collected.push(json.to_string());
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Emits the `result` event: `json` is the object, `text` what `--output-format text`
    /// prints in its place.
    pub fn result(&mut self, json: &str, text: &str) -> R {
        match self.format {
            Format::StreamJson => self.line(json),
            Format::Json if self.verbose => {
                self.collected.push(json.to_string());
                let all = format!("[{}]\n", self.collected.join(","));
                self.collected.clear();
                self.raw(all.as_bytes())
            }
            Format::Json => self.raw(format!("{json}\n").as_bytes()),
            Format::Text => self.raw(format!("{text}\n").as_bytes()),
        }
    }
}
