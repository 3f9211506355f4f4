//! The names of the failing tests in a test runner's output, for the runners that
//! print them: cargo test (`test a::b ... FAILED`, `---- a::b stdout ----`, and the
//! `failures:` list that `--quiet` still prints), pytest (`FAILED path::test` in the
//! short summary, or `path::test FAILED` with `-v`), unittest (`FAIL: test_x
//! (module.Class.test_x)`), go test (`--- FAIL: TestX`), jest (`● Suite › test`) and
//! vitest (`FAIL  file > suite > test`). Comparing names (rather than counts) lets a
//! verification gate tell a new failure from one that was already there.
//!
//! Names are returned sorted and without duplicates; an empty list means the output
//! named none (not that nothing failed).

use super::testsummary::strip_ansi;
use regex::Regex;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The failing tests named in `text`, sorted, deduplicated.
pub fn failing(text: &str) -> Vec<String> {
    let text = strip_ansi(text);
    let Some(p) = patterns() else {
        return Vec::new();
    };
    let mut names = BTreeSet::new();
    let mut in_cargo_list = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line == "failures:" {
            in_cargo_list = true;
            continue;
        }
        if in_cargo_list {
            match line.strip_prefix("    ") {
                Some(n) if !n.starts_with(' ') && !n.is_empty() && !n.contains(' ') => {
                    names.insert(n.to_string());
                    continue;
                }
                _ if line.is_empty() => continue,
                _ => in_cargo_list = false,
            }
        }
        if let Some(n) = one_line(p, line) {
            names.insert(n);
        }
    }
    names.into_iter().collect()
}

struct Patterns {
    cargo: Regex,
    cargo_header: Regex,
    pytest_short: Regex,
    pytest_verbose: Regex,
    unittest: Regex,
    go: Regex,
    jest: Regex,
    vitest: Regex,
}

fn patterns() -> Option<&'static Patterns> {
    static P: OnceLock<Option<Patterns>> = OnceLock::new();
    P.get_or_init(|| {
        let re = |p: &str| Regex::new(p).ok();
        Some(Patterns {
            cargo: re(r"^test (\S+) \.\.\. FAILED$")?,
            cargo_header: re(r"^---- (\S+) stdout ----$")?,
            pytest_short: re(r"^(?:FAILED|ERROR) (\S+::\S+)(?: - .*)?$")?,
            pytest_verbose: re(r"^(\S+::\S+) (?:FAILED|ERROR)(?:\s+\[\s*\d+%\])?$")?,
            unittest: re(r"^(?:FAIL|ERROR): (\S+) \(([^)]+)\)")?,
            go: re(r"^\s*--- FAIL: (\S+)")?,
            jest: re(r"^\s*● (.+\S)\s*$")?,
            vitest: re(r"^\s*FAIL\s+(\S.* > .+\S)\s*$")?,
        })
    })
    .as_ref()
}

/// The failing test one line names, if it names one.
fn one_line(p: &Patterns, line: &str) -> Option<String> {
    let cap1 = |re: &Regex| re.captures(line).and_then(|c| c.get(1)).map(|m| m.as_str());
    if let Some(n) = cap1(&p.cargo).or_else(|| cap1(&p.cargo_header)) {
        return Some(n.to_string());
    }
    if let Some(n) = cap1(&p.pytest_short).or_else(|| cap1(&p.pytest_verbose)) {
        return Some(n.to_string());
    }
    if let Some(c) = p.unittest.captures(line) {
        let (test, place) = (c.get(1)?.as_str(), c.get(2)?.as_str());
        // Python 3.11+ names the test in the parentheses; older ones the class only.
        return Some(if place.ends_with(&format!(".{test}")) {
            place.to_string()
        } else {
            format!("{place}.{test}")
        });
    }
    if let Some(n) = cap1(&p.go) {
        return Some(n.to_string());
    }
    if let Some(n) = cap1(&p.jest) {
        return (n != "Test suite failed to run").then(|| n.to_string());
    }
    cap1(&p.vitest).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_verbose_and_quiet() {
        let out = "running 3 tests\ntest a::ok ... ok\ntest a::bad ... FAILED\n\nfailures:\n\n---- a::bad stdout ----\nthread panicked\n\nfailures:\n    a::bad\n    b::worse\n\ntest result: FAILED. 1 passed; 2 failed;";
        assert_eq!(failing(out), ["a::bad", "b::worse"]);
        let quiet = "running 2 tests\n.F\nfailures:\n\n---- t::x stdout ----\nboom\n\nfailures:\n    t::x\n\ntest result: FAILED.";
        assert_eq!(failing(quiet), ["t::x"]);
    }

    #[test]
    fn pytest_short_summary_and_verbose() {
        let out = "test_calc.py ..F\n=== short test summary info ===\nFAILED test_calc.py::test_add - assert -1 == 5\nERROR test_db.py::test_conn\n=== 1 failed, 2 passed in 0.1s ===";
        assert_eq!(
            failing(out),
            ["test_calc.py::test_add", "test_db.py::test_conn"]
        );
        let v = "test_calc.py::test_add FAILED                [ 50%]\ntest_calc.py::test_mul PASSED   [100%]";
        assert_eq!(failing(v), ["test_calc.py::test_add"]);
    }

    #[test]
    fn unittest_old_and_new_styles() {
        let new = "FAIL: test_add (test_calc.CalcTest.test_add)\n------\nTraceback";
        assert_eq!(failing(new), ["test_calc.CalcTest.test_add"]);
        let old = "ERROR: test_sub (test_calc.CalcTest)\n";
        assert_eq!(failing(old), ["test_calc.CalcTest.test_sub"]);
    }

    #[test]
    fn go_jest_vitest() {
        let go = "=== RUN TestA\n--- FAIL: TestA (0.00s)\n    --- FAIL: TestT/b (0.00s)\nFAIL\texample.com/x\t0.1s";
        assert_eq!(failing(go), ["TestA", "TestT/b"]);
        let jest = "  ● Calc › adds\n\n    expect(received)\n  ● Test suite failed to run\n";
        assert_eq!(failing(jest), ["Calc › adds"]);
        let vitest = " FAIL  tests/calc.test.ts > calc > adds\n";
        assert_eq!(failing(vitest), ["tests/calc.test.ts > calc > adds"]);
    }

    #[test]
    fn nothing_named_is_empty() {
        assert!(failing("error[E0425]: cannot find value\nFAILED").is_empty());
        assert!(failing("").is_empty());
    }
}
