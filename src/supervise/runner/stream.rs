//! The data path of one pipe: a reader task that moves chunks into a small bounded
//! queue as fast as the child writes, and a blocking consumer that appends the raw
//! bytes to the log and feeds complete lines to the transcript parser. A slow disk or
//! parser delays the reader only once the queue is full, and memory stays bounded.
//! [`Streams`] holds the two jobs of an attempt, from its spawn to their results.

use super::{AttemptOutput, AttemptPlan, Ev, LiveView, AFTER_KILL};
use crate::outcome::lines::{Line, LineSplitter};
use crate::outcome::transcript::{TranscriptParser, TranscriptSummary};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes of stderr kept in memory for error messages.
const STDERR_TAIL: usize = 8 * 1024;
/// Chunks queued per pipe before the reader waits for the consumer.
const QUEUE: usize = 8;
/// Read size of the pipe readers.
const CHUNK: usize = 32 * 1024;
/// What a stream consumer produced.
struct StreamResult {
    summary: Option<TranscriptSummary>,
    tail: Vec<u8>,
    bytes: u64,
}

/// The stream jobs of one attempt (None: the child had no such pipe).
pub(super) struct Streams {
    stdout: Option<JoinHandle<StreamResult>>,
    stderr: Option<JoinHandle<StreamResult>>,
}

impl Streams {
    /// Starts the jobs of the child's stdout (logged, parsed, timing the idle
    /// watchdog through `activity`) and stderr (logged, its tail kept). Their events go
    /// to `ev`, which is dropped here so that the channel closes with the last job.
    pub(super) fn start(
        stdout: Option<pipe::Receiver>,
        stderr: Option<pipe::Receiver>,
        plan: &AttemptPlan,
        ev: mpsc::UnboundedSender<Ev>,
        activity: Arc<AtomicU64>,
        live: Option<Arc<Mutex<LiveView>>>,
    ) -> Self {
        let stdout = stdout.map(|s| {
            spawn_stream(
                s,
                plan.stdout_log.clone(),
                ev.clone(),
                Ev::StdoutEof,
                activity,
                Some((plan.max_line, live)),
                plan.log_cap,
            )
        });
        let stderr = stderr.map(|s| {
            spawn_stream(
                s,
                plan.stderr_log.clone(),
                ev.clone(),
                Ev::StderrEof,
                Arc::new(AtomicU64::new(0)),
                None,
                plan.log_cap,
            )
        });
        Streams { stdout, stderr }
    }

    /// Whether stdout and stderr have a job (a pipe to wait for).
    pub(super) fn open(&self) -> (bool, bool) {
        (self.stdout.is_some(), self.stderr.is_some())
    }

    /// Waits for both jobs (at most [`AFTER_KILL`] each) and puts what they produced
    /// into `out`: the transcript summary and stdout's size, stderr's tail and size.
    pub(super) async fn collect(self, out: &mut AttemptOutput) {
        if let Some(job) = self.stdout {
            if let Ok(Ok(r)) = tokio::time::timeout(AFTER_KILL, job).await {
                out.summary = r.summary.unwrap_or_default();
                out.stdout_bytes = r.bytes;
            }
        }
        if let Some(job) = self.stderr {
            if let Ok(Ok(r)) = tokio::time::timeout(AFTER_KILL, job).await {
                out.stderr_tail = String::from_utf8_lossy(&r.tail).into_owned();
                out.stderr_bytes = r.bytes;
            }
        }
    }
}

/// Starts the reader task and the blocking consumer of one pipe.
fn spawn_stream<R: AsyncRead + Unpin + Send + 'static>(
    mut pipe: R,
    log: PathBuf,
    ev: mpsc::UnboundedSender<Ev>,
    eof: Ev,
    activity: Arc<AtomicU64>,
    parse: Option<(usize, Option<Arc<Mutex<LiveView>>>)>,
    cap: Option<u64>,
) -> JoinHandle<StreamResult> {
    let log = LogFile::new(log, cap);
    if parse.is_none() {
        return tokio::spawn(keep_tail(pipe, log, ev, eof));
    }
    let (tx, rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let t0 = Instant::now();
    let result_ev = ev.clone();
    tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.truncate(n);
                    activity.store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
                    if tx.send(buf).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ev.send(eof);
    });
    tokio::task::spawn_blocking(move || consume(rx, log, parse, result_ev))
}

/// The stderr stream, in the reader task itself: what it does per chunk (append to the
/// log, keep the tail) is too little to be worth a blocking thread per attempt, and
/// most children write nothing there.
async fn keep_tail<R: AsyncRead + Unpin>(
    mut pipe: R,
    mut file: LogFile,
    ev: mpsc::UnboundedSender<Ev>,
    eof: Ev,
) -> StreamResult {
    let (mut bytes, mut tail) = (0u64, Vec::new());
    let mut buf = vec![0u8; CHUNK];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                bytes += n as u64;
                file.write(&buf[..n]);
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL * 2 {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    let _ = ev.send(eof);
    StreamResult {
        summary: None,
        tail,
        bytes,
    }
}

fn consume(
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut file: LogFile,
    parse: Option<(usize, Option<Arc<Mutex<LiveView>>>)>,
    ev: mpsc::UnboundedSender<Ev>,
) -> StreamResult {
    let mut result_sent = false;
    let mut bytes = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    let (mut splitter, mut parser, live) = match parse {
        Some((cap, live)) => (
            Some(LineSplitter::new(cap)),
            Some(TranscriptParser::new()),
            live,
        ),
        None => (None, None, None),
    };
    while let Some(chunk) = rx.blocking_recv() {
        bytes += chunk.len() as u64;
        file.write(&chunk);
        match (splitter.as_mut(), parser.as_mut()) {
            (Some(sp), Some(p)) => {
                sp.push(&chunk, |l| feed(p, l));
                if !result_sent && p.summary().result.is_some() {
                    // Starts the result_grace watchdog.
                    result_sent = true;
                    let _ = ev.send(Ev::ResultSeen);
                }
                if let Some(live) = &live {
                    update_live(live, p.summary());
                }
            }
            _ => {
                tail.extend_from_slice(&chunk);
                if tail.len() > STDERR_TAIL * 2 {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    let summary = match (splitter.as_mut(), parser) {
        (Some(sp), Some(mut p)) => {
            sp.finish(|l| feed(&mut p, l));
            if let Some(live) = &live {
                update_live(live, p.summary());
            }
            Some(p.finish())
        }
        _ => None,
    };
    StreamResult {
        summary,
        tail,
        bytes,
    }
}

/// A raw log, opened (created) at the first chunk: a stream that carries nothing
/// (stderr, most of the time) costs no file. Once a write fails, output is still
/// parsed but no longer kept. With a cap (a verification gate's), what comes after
/// it is dropped and a note says so.
struct LogFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    failed: bool,
    /// Bytes that may still be written (None: no cap).
    room: Option<u64>,
}

impl LogFile {
    fn new(path: PathBuf, cap: Option<u64>) -> Self {
        LogFile {
            path,
            file: None,
            failed: false,
            room: cap,
        }
    }

    fn write(&mut self, chunk: &[u8]) {
        let chunk = match self.room {
            None => chunk,
            Some(0) => return,
            Some(n) => {
                let part = &chunk[..chunk.len().min(n as usize)];
                self.room = Some(n - part.len() as u64);
                part
            }
        };
        self.append(chunk);
        if self.room == Some(0) {
            self.append(b"\n[borg: output capped here]\n");
        }
    }

    fn append(&mut self, chunk: &[u8]) {
        if self.failed {
            return;
        }
        if self.file.is_none() {
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path);
            match opened {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    tracing::error!(
                        "cannot open log {}: {e}; output is parsed but not kept",
                        self.path.display()
                    );
                    self.failed = true;
                    return;
                }
            }
        }
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.write_all(chunk) {
                tracing::error!("writing log {}: {e}", self.path.display());
                self.failed = true;
            }
        }
    }
}

fn feed(p: &mut TranscriptParser, l: Line<'_>) {
    match l {
        Line::Complete(b) => p.feed_line(b),
        Line::Oversized(_) => p.note_oversized(),
    }
}

fn update_live(live: &Mutex<LiveView>, s: &TranscriptSummary) {
    if let Ok(mut v) = live.lock() {
        if v.session_id.is_none() {
            v.session_id.clone_from(&s.session_id);
        }
        if v.current_tool != s.current_tool {
            v.current_tool.clone_from(&s.current_tool);
        }
        v.turns = s.num_turns;
        v.cost_usd = s.cost_usd;
        v.lines = s.lines;
    }
}
