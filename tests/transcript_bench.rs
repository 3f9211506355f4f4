//! Throughput of the transcript parser on a big saved transcript. Ignored by default:
//! `BORG_BENCH_TRANSCRIPT=big.jsonl cargo test --release --test transcript_bench -- --ignored --nocapture`

use std::time::Instant;

#[test]
#[ignore = "needs a big transcript in BORG_BENCH_TRANSCRIPT; run in release mode"]
fn summarize_file_throughput() {
    let Some(path) = std::env::var_os("BORG_BENCH_TRANSCRIPT") else {
        eprintln!("set BORG_BENCH_TRANSCRIPT to a stream-json file");
        return;
    };
    let path = std::path::PathBuf::from(path);
    let bytes = std::fs::metadata(&path).unwrap().len() as f64;
    // Warm the page cache so the figure is the parser's, not the disk's.
    let _ = borg::outcome::transcript::summarize_file(&path).unwrap();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let s = borg::outcome::transcript::summarize_file(&path).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        assert!(s.lines > 0);
        assert_eq!(s.bad_lines, 0);
    }
    println!(
        "{:.0} MB in {:.3} s: {:.0} MB/s",
        bytes / 1e6,
        best,
        bytes / 1e6 / best
    );
}
