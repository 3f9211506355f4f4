//! A byte line splitter with a length cap: cuts a stream of chunks on `\n` without
//! assuming UTF-8, hands complete lines to a callback, and drops the bytes of a line
//! longer than the cap (reporting it once) so memory stays bounded whatever the child writes.

/// One item produced by the splitter.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line, without its `\n` (and without a trailing `\r`).
    Complete(&'a [u8]),
    /// A line longer than the cap ended here; its bytes were not kept.
    Oversized(u64),
}

/// Splits byte chunks into lines, keeping at most `cap` bytes of a partial line.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    cap: usize,
    /// Bytes of the current line dropped because it passed the cap.
    overflow: u64,
}

impl LineSplitter {
    /// A splitter that refuses to buffer lines longer than `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap: cap.max(1),
            overflow: 0,
        }
    }

    /// Feeds a chunk; calls `f` for every line completed by it.
    pub fn push(&mut self, mut chunk: &[u8], mut f: impl FnMut(Line<'_>)) {
        while let Some(pos) = memchr::memchr(b'\n', chunk) {
            let (head, rest) = (&chunk[..pos], &chunk[pos + 1..]);
            if self.overflow > 0 {
                let n = self.overflow + self.buf.len() as u64 + head.len() as u64;
                self.buf.clear();
                self.overflow = 0;
                f(Line::Oversized(n));
            } else if self.buf.is_empty() {
                if head.len() > self.cap {
                    f(Line::Oversized(head.len() as u64));
                } else {
                    f(Line::Complete(trim_cr(head)));
                }
            } else if self.buf.len() + head.len() > self.cap {
                let n = (self.buf.len() + head.len()) as u64;
                self.buf.clear();
                f(Line::Oversized(n));
            } else {
                self.buf.extend_from_slice(head);
                f(Line::Complete(trim_cr(&self.buf)));
                self.buf.clear();
            }
            chunk = rest;
        }
        if chunk.is_empty() {
            return;
        }
        if self.overflow > 0 || self.buf.len() + chunk.len() > self.cap {
            self.overflow += (self.buf.len() + chunk.len()) as u64;
            self.buf.clear();
            // Release the memory a long partial line may have grown.
            self.buf.shrink_to(64 * 1024);
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Ends the stream: a last line without a newline is still delivered.
    pub fn finish(&mut self, mut f: impl FnMut(Line<'_>)) {
        if self.overflow > 0 {
            let n = self.overflow + self.buf.len() as u64;
            self.overflow = 0;
            self.buf.clear();
            f(Line::Oversized(n));
        } else if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            f(Line::Complete(trim_cr(&line)));
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(cap: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::new(cap);
        let mut out = Vec::new();
        let mut f = |l: Line<'_>| match l {
            Line::Complete(b) => out.push(String::from_utf8_lossy(b).into_owned()),
            Line::Oversized(n) => out.push(format!("<oversized {n}>")),
        };
        for c in chunks {
            s.push(c, &mut f);
        }
        s.finish(&mut f);
        out
    }

    #[test]
    fn splits_across_chunks_and_keeps_last_line() {
        assert_eq!(
            collect(100, &[b"ab", b"c\nde\r\n", b"f"]),
            vec!["abc", "de", "f"]
        );
    }

    #[test]
    fn oversized_lines_are_counted_not_kept() {
        assert_eq!(
            collect(4, &[b"12", b"345", b"67\nok\n", b"123456789\nz"]),
            vec!["<oversized 7>", "ok", "<oversized 9>", "z"]
        );
    }

    #[test]
    fn invalid_utf8_does_not_drop_lines() {
        assert_eq!(collect(100, &[b"ok\n\xff\xfe\nafter\n"]).len(), 3);
    }
}
