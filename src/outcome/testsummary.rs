//! Recognises test-runner summaries in tool output: cargo test, cargo nextest, pytest,
//! unittest, go test, jest/vitest, and the plain `N passed, N failed` line.
//!
//! The only place a transcript says anything about tests is the text of a Bash tool
//! result (claude-cli.md §9.10), so this works on plain text, line by line, and keeps
//! the *last* summary: an agent usually runs the tests again after fixing them, and the
//! final run is the one that describes the state it left behind.

use crate::outcome::TestCounts;
use regex::Regex;
use std::borrow::Cow;
use std::sync::OnceLock;

/// The counts of the last test summary found in `text`, if any.
///
/// Runners that print one summary per test binary or package (cargo test, go test)
/// are summed over one invocation; any other runner's summary starts a new run.
pub fn recognise(text: &str) -> Option<TestCounts> {
    if !might_contain_summary(text.as_bytes()) {
        return None;
    }
    let text = strip_ansi(text);
    let p = patterns()?;
    let mut scan = Scan::default();
    for line in text.lines() {
        scan.line(p, line);
    }
    scan.finish()
}

/// A cheap byte-level test that rejects most outputs before any regex runs: every
/// format recognised here contains at least one of these words. It also works on the
/// JSON-escaped form of a text (`ok\\t` is the escaped tab after go's `ok`).
pub fn might_contain_summary(text: &[u8]) -> bool {
    static FINDERS: OnceLock<Vec<memchr::memmem::Finder<'static>>> = OnceLock::new();
    let finders = FINDERS.get_or_init(|| {
        [
            "passed", "failed", "Ran ", "FAIL", "ok ", "ok\t", "ok\\t", "PASS", "Tests",
        ]
        .iter()
        .map(|w| memchr::memmem::Finder::new(w.as_bytes()))
        .collect()
    });
    finders.iter().any(|f| f.find(text).is_some())
}

/// Removes ANSI colour and cursor sequences, which test runners print when they think
/// they talk to a terminal and which would break the anchored patterns below.
pub(crate) fn strip_ansi(text: &str) -> Cow<'_, str> {
    if !text.contains('\x1b') {
        return Cow::Borrowed(text);
    }
    static ANSI: OnceLock<Option<Regex>> = OnceLock::new();
    let re = ANSI.get_or_init(|| {
        Regex::new(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])").ok()
    });
    match re {
        Some(re) => re.replace_all(text, ""),
        None => Cow::Borrowed(text),
    }
}

struct Patterns {
    cargo: Regex,
    cargo_finished: Regex,
    nextest: Regex,
    pytest: Regex,
    pytest_quiet: Regex,
    unittest_ran: Regex,
    unittest_end: Regex,
    go_case: Regex,
    go_pkg: Regex,
    jest: Regex,
    vitest: Regex,
    plain: Regex,
    count: Regex,
    unittest_kv: Regex,
}

/// The compiled patterns; None only if one of the constants were broken, which the
/// unit tests catch, so recognition degrades instead of panicking.
fn patterns() -> Option<&'static Patterns> {
    static P: OnceLock<Option<Patterns>> = OnceLock::new();
    P.get_or_init(|| {
        let re = |p: &str| Regex::new(p).ok();
        Some(Patterns {
            cargo: re(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")?,
            cargo_finished: re(r"^\s*Finished .*target\(s\) in ")?,
            nextest: re(r"^\s*Summary \[[^\]]*\]\s+\d+ tests? run: (.*)$")?,
            pytest: re(r"^=+ (.*\d+ \w+.*) in [\d.]+s(?: \([^)]*\))? =+\s*$")?,
            pytest_quiet: re(r"^(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s(?: \([^)]*\))?\s*$")?,
            unittest_ran: re(r"^Ran (\d+) tests? in [\d.]+s\s*$")?,
            unittest_end: re(r"^(OK|FAILED)(?: \((.*)\))?\s*$")?,
            go_case: re(r"^--- (PASS|FAIL|SKIP): ")?,
            go_pkg: re(r"^(ok|FAIL)\s+\S+\s+(?:[\d.]+s|\(cached\)|\[)")?,
            jest: re(r"^\s*Tests:\s+(.*\d+ total)\s*$")?,
            vitest: re(r"^\s*Tests\s+(\d+ \w+(?: \| \d+ \w+)*) \(\d+\)\s*$")?,
            plain: re(
                r"^\s*(?:\w+:\s*)?(\d+) passed,\s*(\d+) failed(?:,\s*(\d+) (?:skipped|ignored))?\s*\.?\s*$",
            )?,
            count: re(r"(\d+) (passed|failed|failures?|skipped|ignored|errors?|xfailed|xpassed|timed out|todo|pending)")?,
            unittest_kv: re(r"(failures|errors|skipped|expected failures|unexpected successes)=(\d+)")?,
        })
    })
    .as_ref()
}

/// Which runner produced the summary currently held, so that per-binary (cargo) and
/// per-package (go) summaries can be summed while anything else replaces them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Cargo,
    Go,
    Other,
}

#[derive(Default)]
struct Scan {
    last: Option<(Kind, TestCounts)>,
    /// `Ran N tests` seen, waiting for its `OK` / `FAILED (...)` line.
    unittest_ran: Option<u64>,
    /// go `--- PASS/FAIL/SKIP` lines since the last package line; all zero means none
    /// were seen, since each such line adds one.
    go_pending: TestCounts,
    /// A cargo `Finished` line: the next `test result:` starts a new invocation.
    cargo_new_run: bool,
}

/// A recogniser of one runner family: true when the line was its own (and so is no
/// other family's to look at).
type Recogniser = fn(&mut Scan, &Patterns, &str) -> bool;

/// The recognisers in the order they are tried; the first to claim a line ends its
/// scan. The specific formats go first and the loosest (pytest's quiet line, the plain
/// `N passed, N failed`) last, so a runner's own summary is never read as a generic one.
const RECOGNISERS: [Recogniser; 7] = [
    Scan::cargo,
    Scan::nextest,
    Scan::unittest,
    Scan::go,
    Scan::jest_or_vitest,
    Scan::pytest,
    Scan::plain,
];

impl Scan {
    fn line(&mut self, p: &Patterns, line: &str) {
        let trimmed = line.trim_end();
        for recognise in RECOGNISERS {
            if recognise(self, p, trimmed) {
                return;
            }
        }
    }

    /// cargo test: `test result:` lines, one per test binary, summed until the next
    /// `Finished` line (a new invocation).
    fn cargo(&mut self, p: &Patterns, line: &str) -> bool {
        if line.contains("test result:") {
            if let Some(c) = p.cargo.captures(line) {
                let counts = TestCounts {
                    passed: num(&c, 1),
                    failed: num(&c, 2),
                    ignored: num(&c, 3),
                };
                self.add(Kind::Cargo, counts);
                return true;
            }
        }
        if line.contains("Finished") && p.cargo_finished.is_match(line) {
            self.cargo_new_run = true;
            return true;
        }
        false
    }

    /// cargo nextest: its `Summary [...] N tests run: ...` line.
    fn nextest(&mut self, p: &Patterns, line: &str) -> bool {
        if line.contains("run:") {
            if let Some(c) = p.nextest.captures(line) {
                self.set(counts_from_words(p, c.get(1).map_or("", |m| m.as_str())));
                return true;
            }
        }
        false
    }

    /// Python's unittest: `Ran N tests in ...`, then `OK` or `FAILED (...)`.
    fn unittest(&mut self, p: &Patterns, line: &str) -> bool {
        if let Some(n) = self.unittest_ran {
            if let Some(c) = p.unittest_end.captures(line) {
                self.unittest_ran = None;
                self.set(unittest_counts(p, n, c.get(2).map_or("", |m| m.as_str())));
                return true;
            }
        }
        if line.starts_with("Ran ") {
            if let Some(c) = p.unittest_ran.captures(line) {
                self.unittest_ran = Some(num(&c, 1));
                return true;
            }
        }
        false
    }

    /// go test: `--- PASS/FAIL/SKIP` lines (with -v), counted into the next package's
    /// `ok` / `FAIL` line, which the packages of one invocation sum.
    fn go(&mut self, p: &Patterns, line: &str) -> bool {
        if line.starts_with("--- ") {
            if let Some(c) = p.go_case.captures(line) {
                match c.get(1).map_or("", |m| m.as_str()) {
                    "PASS" => self.go_pending.passed += 1,
                    "FAIL" => self.go_pending.failed += 1,
                    _ => self.go_pending.ignored += 1,
                }
                return true;
            }
        }
        if line.starts_with("ok") || line.starts_with("FAIL") {
            if let Some(c) = p.go_pkg.captures(line) {
                let mut counts = std::mem::take(&mut self.go_pending);
                if counts == TestCounts::default() {
                    // Without -v go prints no per-test lines: count the package itself.
                    if c.get(1).map(|m| m.as_str()) == Some("ok") {
                        counts.passed = 1;
                    } else {
                        counts.failed = 1;
                    }
                }
                self.add(Kind::Go, counts);
                return true;
            }
        }
        false
    }

    /// jest's `Tests: ... N total` and vitest's `Tests  ... (N)`.
    fn jest_or_vitest(&mut self, p: &Patterns, line: &str) -> bool {
        if !line.contains("Tests") {
            return false;
        }
        match p.jest.captures(line).or_else(|| p.vitest.captures(line)) {
            Some(c) => {
                self.set(counts_from_words(p, c.get(1).map_or("", |m| m.as_str())));
                true
            }
            None => false,
        }
    }

    /// pytest's closing line, with its `====` border or quiet (`-q`) without it.
    fn pytest(&mut self, p: &Patterns, line: &str) -> bool {
        if line.contains(" in ") {
            if let Some(c) = p
                .pytest
                .captures(line)
                .or_else(|| p.pytest_quiet.captures(line))
            {
                self.set(counts_from_words(p, c.get(1).map_or("", |m| m.as_str())));
                return true;
            }
        }
        false
    }

    /// Any runner's plain `N passed, N failed[, N skipped]` line.
    fn plain(&mut self, p: &Patterns, line: &str) -> bool {
        if line.contains(" passed,") {
            if let Some(c) = p.plain.captures(line) {
                let counts = TestCounts {
                    passed: num(&c, 1),
                    failed: num(&c, 2),
                    ignored: num(&c, 3),
                };
                self.set(counts);
                return true;
            }
        }
        false
    }

    /// Adds to a runner that prints one summary per binary/package, or starts a new run.
    fn add(&mut self, kind: Kind, counts: TestCounts) {
        let new_run = kind == Kind::Cargo && std::mem::take(&mut self.cargo_new_run);
        match &mut self.last {
            Some((k, c)) if *k == kind && !new_run => {
                c.passed += counts.passed;
                c.failed += counts.failed;
                c.ignored += counts.ignored;
            }
            _ => self.last = Some((kind, counts)),
        }
    }

    fn set(&mut self, counts: TestCounts) {
        self.last = Some((Kind::Other, counts));
    }

    fn finish(self) -> Option<TestCounts> {
        self.last.map(|(_, c)| c)
    }
}

fn num(c: &regex::Captures<'_>, i: usize) -> u64 {
    c.get(i).and_then(|m| m.as_str().parse().ok()).unwrap_or(0)
}

/// Reads `9 passed, 1 failed, 2 skipped`-style lists (any separator, any order).
fn counts_from_words(p: &Patterns, list: &str) -> TestCounts {
    let mut counts = TestCounts::default();
    for c in p.count.captures_iter(list) {
        let n = num(&c, 1);
        match c.get(2).map_or("", |m| m.as_str()) {
            "passed" | "xpassed" => counts.passed += n,
            "failed" | "failure" | "failures" | "error" | "errors" | "timed out" => {
                counts.failed += n
            }
            _ => counts.ignored += n,
        }
    }
    counts
}

/// unittest prints only the total and the non-passing kinds: passed is what remains.
fn unittest_counts(p: &Patterns, ran: u64, detail: &str) -> TestCounts {
    let mut failed = 0u64;
    let mut ignored = 0u64;
    for c in p.unittest_kv.captures_iter(detail) {
        let n = num(&c, 2);
        match c.get(1).map_or("", |m| m.as_str()) {
            "failures" | "errors" | "unexpected successes" => failed += n,
            _ => ignored += n,
        }
    }
    TestCounts {
        passed: ran.saturating_sub(failed).saturating_sub(ignored),
        failed,
        ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tc(passed: u64, failed: u64, ignored: u64) -> Option<TestCounts> {
        Some(TestCounts {
            passed,
            failed,
            ignored,
        })
    }

    #[test]
    fn every_pattern_compiles() {
        assert!(patterns().is_some());
        assert_eq!(strip_ansi("\u{1b}[1;32mok\u{1b}[0m"), "ok");
    }

    #[test]
    fn cargo_single_binary() {
        let out = "running 3 tests\ntest a ... ok\ntest b ... ok\ntest c ... ignored\n\n\
                   test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s\n";
        assert_eq!(recognise(out), tc(2, 0, 1));
    }

    #[test]
    fn cargo_sums_every_binary_of_one_invocation() {
        let out = "   Compiling borg v0.1.0\n    Finished `test` profile [unoptimized + debuginfo] target(s) in 3.21s\n\
             Running unittests src/lib.rs (target/debug/deps/borg-1234)\n\nrunning 5 tests\n\
             test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\n\
             Running tests/cli.rs (target/debug/deps/cli-5678)\n\nrunning 3 tests\n\
             test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s\n\n\
             Doc-tests borg\n\nrunning 1 test\n\
             test result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s\n";
        assert_eq!(recognise(out), tc(7, 1, 1));
    }

    #[test]
    fn a_second_cargo_invocation_replaces_the_first() {
        let out = "    Finished `test` profile [unoptimized] target(s) in 1.0s\n\
             test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out\n\
             \u{1b}[1m\u{1b}[32m    Finished\u{1b}[0m `test` profile [unoptimized] target(s) in 0.5s\n\
             test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(recognise(out), tc(3, 0, 0));
    }

    #[test]
    fn fixture_output_keeps_the_last_summary() {
        let out =
            "test_mul (test_calc.CalcTest.test_mul) ... ok\n\n------\nRan 3 tests in 0.001s\n\n\
                   FAILED (failures=2)\ntest result: FAILED. 1 passed; 2 failed; 0 ignored";
        assert_eq!(recognise(out), tc(1, 2, 0));
    }

    #[test]
    fn nextest() {
        let out = "        PASS [   0.004s] borg::tests ok\n------------\n     \
                   Summary [   0.123s] 10 tests run: 9 passed, 1 failed, 2 skipped\n        FAIL [   0.010s] borg::x\n";
        assert_eq!(recognise(out), tc(9, 1, 2));
        let ok = "     Summary [   0.005s] 3 tests run: 3 passed (1 slow), 0 skipped";
        assert_eq!(recognise(ok), tc(3, 0, 0));
        let timeout =
            "     Summary [  60.005s] 4 tests run: 2 passed, 1 failed, 1 timed out, 0 skipped";
        assert_eq!(recognise(timeout), tc(2, 2, 0));
    }

    #[test]
    fn pytest_borders_and_quiet() {
        let out = "test_calc.py ..F.s\n=================================== FAILURES ===================================\n\
                   ___ test_add ___\nE   assert -1 == 5\n=========================== short test summary info ============================\n\
                   FAILED test_calc.py::test_add - assert -1 == 5\n\
                   ========================= 3 passed, 1 failed, 2 skipped in 0.12s =========================\n";
        assert_eq!(recognise(out), tc(3, 1, 2));
        let errs =
            "==== 1 failed, 4 passed, 1 xfailed, 2 errors, 3 warnings in 1.02s (0:00:01) ====";
        assert_eq!(recognise(errs), tc(4, 3, 1));
        assert_eq!(recognise("..\n2 passed in 0.01s\n"), tc(2, 0, 0));
        // Deselected tests were never run: not counted.
        assert_eq!(
            recognise("5 passed, 1 xpassed, 1 deselected in 0.30s"),
            tc(6, 0, 0)
        );
    }

    #[test]
    fn unittest_ok_and_failed() {
        let ok = "...\n----------------------------------------------------------------------\nRan 3 tests in 0.000s\n\nOK\n";
        assert_eq!(recognise(ok), tc(3, 0, 0));
        let skipped = "Ran 4 tests in 0.010s\n\nOK (skipped=1)\n";
        assert_eq!(recognise(skipped), tc(3, 0, 1));
        let failed =
            "FAIL: test_add\nRan 6 tests in 0.002s\n\nFAILED (failures=2, errors=1, skipped=1)\n";
        assert_eq!(recognise(failed), tc(2, 3, 1));
    }

    #[test]
    fn go_verbose_counts_top_level_tests() {
        let out = "=== RUN   TestAdd\n--- PASS: TestAdd (0.00s)\n=== RUN   TestSub\n--- FAIL: TestSub (0.00s)\n\
                   \tcalc_test.go:12: got -1 want 5\n=== RUN   TestTable\n    --- PASS: TestTable/a (0.00s)\n\
                   --- PASS: TestTable (0.00s)\n--- SKIP: TestSlow (0.00s)\nFAIL\nFAIL\texample.com/calc\t0.004s\n\
                   --- PASS: TestUtil (0.00s)\nPASS\nok  \texample.com/util\t0.002s\n";
        assert_eq!(recognise(out), tc(3, 1, 1));
    }

    #[test]
    fn go_quiet_counts_packages() {
        let out = "ok  \texample.com/a\t0.01s\nok  \texample.com/b\t(cached)\nFAIL\texample.com/c [build failed]\nFAIL\n";
        assert_eq!(recognise(out), tc(2, 1, 0));
    }

    #[test]
    fn jest_and_vitest() {
        let jest = "Test Suites: 1 failed, 1 total\nTests:       1 failed, 2 passed, 3 total\nSnapshots:   0 total\nTime:        0.5 s\n";
        assert_eq!(recognise(jest), tc(2, 1, 0));
        let jest_skip = "Tests:       1 skipped, 1 todo, 4 passed, 6 total\n";
        assert_eq!(recognise(jest_skip), tc(4, 0, 2));
        let vitest = " Test Files  1 failed | 1 passed (2)\n      Tests  2 failed | 5 passed (7)\n   Start at  12:00:00\n";
        assert_eq!(recognise(vitest), tc(5, 2, 0));
        let coloured = "\u{1b}[2m      Tests \u{1b}[22m \u{1b}[1m\u{1b}[32m5 passed\u{1b}[39m\u{1b}[22m | \u{1b}[33m1 skipped\u{1b}[39m\u{1b}[90m (6)\u{1b}[39m\n";
        assert_eq!(recognise(coloured), tc(5, 0, 1));
    }

    #[test]
    fn plain_lines() {
        assert_eq!(recognise("3 passed, 1 failed"), tc(3, 1, 0));
        assert_eq!(
            recognise("Results: 10 passed, 0 failed, 2 skipped"),
            tc(10, 0, 2)
        );
        assert_eq!(
            recognise("tests: 4 passed, 2 failed, 1 ignored."),
            tc(4, 2, 1)
        );
    }

    #[test]
    fn last_summary_wins_across_runners() {
        let out = "==== 1 failed, 2 passed in 0.1s ====\nTests:       3 passed, 3 total\n";
        assert_eq!(recognise(out), tc(3, 0, 0));
        let out = "test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n2 passed, 1 failed\n";
        assert_eq!(recognise(out), tc(2, 1, 0));
    }

    #[test]
    fn no_summary() {
        assert_eq!(recognise(""), None);
        assert_eq!(recognise("hello world\nall ok here"), None);
        assert_eq!(recognise("the build failed: see above"), None);
        assert_eq!(recognise("Ran 3 tests in 0.1s\n"), None);
        assert_eq!(recognise("FAILED"), None);
    }

    #[test]
    fn garbage_never_panics() {
        let huge = "test result: ok. 99999999999999999999999 passed; 1 failed; 0 ignored";
        assert_eq!(recognise(huge), tc(0, 1, 0));
        let _ = recognise("\u{1b}[\u{1b}]\u{1b}\u{0}Tests: passed failed Ran FAIL ok \t");
        let _ = recognise(&"Ran 1 tests in 0.1s\nOK (skipped=5)\n".repeat(3));
        assert_eq!(
            recognise("Ran 1 test in 0.1s\nOK (skipped=5)\n"),
            tc(0, 0, 5)
        );
    }
}
