//! Damaged input must never panic the parser, the classifier or the renderer: every
//! fixture line is cut short at many points and has bytes overwritten, and the results
//! are fed to all three.

use borg::outcome::fault::{classify, EndFacts};
use borg::outcome::transcript::TranscriptParser;
use borg::show::render::Renderer;

fn fixture_lines() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".stream.jsonl") {
            let bytes = std::fs::read(&path).unwrap();
            lines.extend(
                bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
    }
    lines
}

fn feed_all(variants: &[Vec<u8>]) {
    let mut parser = TranscriptParser::new();
    let mut renderer = Renderer::new(true);
    for v in variants {
        parser.feed_line(v);
        for l in renderer.line(v) {
            assert!(!l.starts_with("{\""), "raw JSON rendered: {l}");
        }
    }
    let _ = renderer.finish();
    let summary = parser.finish();
    let _ = classify(&summary, &EndFacts::default());
    let _ = classify(
        &summary,
        &EndFacts {
            stderr_tail: "é\u{0}\n\n",
            ..Default::default()
        },
    );
}

#[test]
fn truncated_lines() {
    for line in fixture_lines() {
        let cuts: Vec<Vec<u8>> = (0..line.len())
            .step_by(17)
            .map(|n| line[..n].to_vec())
            .collect();
        feed_all(&cuts);
    }
}

#[test]
fn overwritten_bytes() {
    for line in fixture_lines() {
        let mut variants = Vec::new();
        for i in (0..line.len()).step_by(23) {
            for b in [b'"', b'}', b'\\', b'0', b'[', 0xff, b'\n', b'-', b'e'] {
                let mut v = line.clone();
                v[i] = b;
                variants.push(v);
            }
        }
        feed_all(&variants);
    }
}
