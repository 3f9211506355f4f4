//! What borg and its reaper say to each other over their socket pair (a unix
//! `SOCK_SEQPACKET` socket, so every message keeps its boundaries).
//!
//! borg asks ([`Request`]): start a child (the three stdio ends travel with the request
//! as `SCM_RIGHTS` ancillary data, so claude's data never passes through the reaper),
//! forward a signal to a child, kill a child's whole tree. The reaper reports
//! ([`Report`]), per attempt, the same facts the per-attempt shim used to: started,
//! spawn error, exited, signaled, killed N, plus the memory facts and `done`, sent once
//! the attempt's child and every process of its tree are gone.
//!
//! A message is JSON behind a one-byte header: `.` for the last (or only) chunk of a
//! message, `+` when more chunks follow. Requests longer than one chunk (a large
//! environment) are split, because a datagram of a unix socket cannot be larger than
//! its send buffer; fds travel with the last chunk.

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Name of the hidden subcommand that runs the reaper.
pub const SUBCOMMAND: &str = "__reaper";

/// Payload bytes per chunk: well under the default unix socket buffer (208 KiB).
pub const CHUNK: usize = 48 * 1024;
/// Receive buffer: one chunk and its header.
pub const RECV_BUF: usize = CHUNK + 1;
/// File descriptors a message may carry (a spawn's stdin, stdout and stderr).
pub const MAX_FDS: usize = 3;

/// Something borg asks of the reaper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start a child; its stdin, stdout and stderr come with the message.
    Spawn(SpawnRequest),
    /// Forward a signal (SIGINT or SIGTERM: the ladder's first rungs) to the child.
    Signal {
        /// The attempt.
        id: u64,
        /// The signal number.
        signal: i32,
    },
    /// Kill every process of the attempt's tree now.
    Kill {
        /// The attempt.
        id: u64,
    },
}

/// How to start one child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// borg's number for the attempt; every report about it carries it.
    pub id: u64,
    /// The program (an absolute path, or a name looked up on the env's PATH).
    pub program: String,
    /// Its arguments (argv[1..]).
    pub args: Vec<String>,
    /// Its complete environment.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub cwd: String,
    /// The attempt cookie (`BORG_ATTEMPT_UID` in the child's environment), which tells
    /// the reaper whose orphan a process is.
    pub uid: String,
    /// Report `memory` once the tree's resident memory passes this many KiB.
    pub max_rss_kb: Option<u64>,
}

/// What the reaper tells borg about one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Report {
    /// The child runs: its pid (which leads its own process group) and start time.
    Started {
        /// The attempt.
        id: u64,
        /// The child's pid.
        pid: i32,
        /// Its start time, clock ticks since boot.
        start_time: u64,
    },
    /// The child could not be started.
    SpawnError {
        /// The attempt.
        id: u64,
        /// The OS error number (0 if none).
        errno: i32,
        /// What went wrong.
        message: String,
    },
    /// The child exited with this code.
    Exited {
        /// The attempt.
        id: u64,
        /// Its exit code.
        code: i32,
    },
    /// A signal ended the child.
    Signaled {
        /// The attempt.
        id: u64,
        /// The signal number.
        signal: i32,
    },
    /// A kill hit this many distinct processes of the tree.
    Killed {
        /// The attempt.
        id: u64,
        /// How many.
        count: usize,
    },
    /// The tree's resident memory passed the attempt's limit (sent once).
    Memory {
        /// The attempt.
        id: u64,
        /// The tree's resident memory, KiB.
        rss_kb: u64,
    },
    /// The child and every process of its tree are gone; nothing more will come.
    Done {
        /// The attempt.
        id: u64,
        /// The largest resident memory of the whole tree seen, KiB.
        peak_rss_kb: u64,
    },
}

impl Report {
    /// The attempt the report is about.
    pub fn id(&self) -> u64 {
        match self {
            Report::Started { id, .. }
            | Report::SpawnError { id, .. }
            | Report::Exited { id, .. }
            | Report::Signaled { id, .. }
            | Report::Killed { id, .. }
            | Report::Memory { id, .. }
            | Report::Done { id, .. } => *id,
        }
    }
}

/// One message as chunks ready to send: JSON split at [`CHUNK`] bytes, each behind its
/// header.
pub fn chunks<T: Serialize>(msg: &T) -> Vec<Vec<u8>> {
    let body = serde_json::to_vec(msg).unwrap_or_default();
    let pieces: Vec<&[u8]> = if body.is_empty() {
        vec![&[][..]]
    } else {
        body.chunks(CHUNK).collect()
    };
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut c = Vec::with_capacity(p.len() + 1);
            c.push(if i == last { b'.' } else { b'+' });
            c.extend_from_slice(p);
            c
        })
        .collect()
}

/// Sends one chunk on `fd`, with `fds` attached (only on a message's last chunk).
/// A non-blocking socket answers `WouldBlock` when its buffer is full.
pub fn send_chunk(fd: RawFd, chunk: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let iov = [IoSlice::new(chunk)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(fd, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// One received chunk: its payload, whether it ends a message, and the fds it carried
/// (close-on-exec).
pub struct Chunk {
    /// The JSON bytes it holds.
    pub payload: Vec<u8>,
    /// The last chunk of its message.
    pub last: bool,
    /// Descriptors that came with it.
    pub fds: Vec<OwnedFd>,
}

/// Receives one chunk; `Ok(None)` when the other end closed the socket.
pub fn recv_chunk(fd: RawFd, buf: &mut [u8]) -> std::io::Result<Option<Chunk>> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors in this process
                // for us; nothing else owns them.
                fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
        (msg.bytes, fds)
    };
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Chunk {
        payload: buf[1..n].to_vec(),
        last: buf[0] == b'.',
        fds,
    }))
}

/// Collects chunks into whole messages.
#[derive(Default)]
pub struct Assembler {
    body: Vec<u8>,
}

impl Assembler {
    /// Adds a chunk; returns the whole message's JSON with its fds once it is complete.
    pub fn push(&mut self, c: Chunk) -> Option<(Vec<u8>, Vec<OwnedFd>)> {
        self.body.extend_from_slice(&c.payload);
        c.last.then(|| (std::mem::take(&mut self.body), c.fds))
    }
}

/// A pair of connected, close-on-exec `SOCK_SEQPACKET` sockets: (borg's end, the
/// reaper's end).
pub fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((a, b))
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns, with integer arguments.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_request_travels_in_chunks_with_its_fds_on_the_last() {
        let (a, b) = socket_pair().unwrap();
        let req = Request::Spawn(SpawnRequest {
            id: 7,
            program: "/bin/true".into(),
            args: vec!["x".repeat(3 * CHUNK)],
            env: vec![("K".into(), "v".into())],
            cwd: "/".into(),
            uid: "u".into(),
            max_rss_kb: Some(1),
        });
        let (r, w) = nix::unistd::pipe().unwrap();
        let parts = chunks(&req);
        assert!(parts.len() >= 3);
        let sender = std::thread::spawn(move || {
            let last = parts.len() - 1;
            for (i, c) in parts.iter().enumerate() {
                let fds = if i == last {
                    vec![r.as_raw_fd(), w.as_raw_fd()]
                } else {
                    vec![]
                };
                send_chunk(a.as_raw_fd(), c, &fds).unwrap();
            }
        });
        let mut buf = vec![0u8; RECV_BUF];
        let mut asm = Assembler::default();
        let (body, fds) = loop {
            let c = recv_chunk(b.as_raw_fd(), &mut buf).unwrap().unwrap();
            if let Some(done) = asm.push(c) {
                break done;
            }
        };
        sender.join().unwrap();
        assert_eq!(serde_json::from_slice::<Request>(&body).unwrap(), req);
        assert_eq!(fds.len(), 2);
    }
}
