//! JUnit XML reports (`[verify] junit = "GLOB"`): the test counts and failing test
//! names of the files a gate wrote, read with an XML parser. A test case with a
//! `<failure>` or `<error>` child failed, one with `<skipped>` was ignored; its name
//! is `classname.name` (or `name` alone when there is no class name).

use crate::outcome::TestCounts;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What the reports said, summed over the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The counts.
    pub counts: TestCounts,
    /// The failing tests, sorted.
    pub failing: Vec<String>,
    /// The files read.
    pub files: usize,
}

/// The reports under `root` matching `glob` (relative to `root`) written since
/// `since` (older ones are not this run's), summed; None when there is none.
pub fn read(root: &Path, glob: &str, since: SystemTime) -> Option<Report> {
    let matcher = globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .ok()?
        .compile_matcher();
    let mut files = Vec::new();
    walk(root, root, &matcher, &mut files, 0);
    let mut rep = Report::default();
    let mut failing = BTreeSet::new();
    for f in files {
        let fresh = std::fs::metadata(&f)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        let Some(text) = fresh.then(|| std::fs::read_to_string(&f).ok()).flatten() else {
            continue;
        };
        if let Some((c, names)) = parse(&text) {
            rep.counts.passed += c.passed;
            rep.counts.failed += c.failed;
            rep.counts.ignored += c.ignored;
            failing.extend(names);
            rep.files += 1;
        }
    }
    rep.failing = failing.into_iter().collect();
    (rep.files > 0).then_some(rep)
}

/// Collects the files under `dir` whose path relative to `root` matches (`.git`
/// skipped, symbolic links not followed, depth bounded).
fn walk(root: &Path, dir: &Path, m: &globset::GlobMatcher, out: &mut Vec<PathBuf>, depth: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() && depth < 12 && e.file_name() != ".git" {
            walk(root, &p, m, out, depth + 1);
        } else if ft.is_file() && p.strip_prefix(root).is_ok_and(|r| m.is_match(r)) {
            out.push(p);
        }
    }
}

/// The counts and failing names of one report; None when it is not JUnit XML.
pub fn parse(text: &str) -> Option<(TestCounts, Vec<String>)> {
    let doc = roxmltree::Document::parse(text).ok()?;
    let root = doc.root_element().tag_name().name();
    if root != "testsuites" && root != "testsuite" {
        return None;
    }
    let mut c = TestCounts::default();
    let mut failing = Vec::new();
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let has = |t: &str| case.children().any(|k| k.has_tag_name(t));
        if has("failure") || has("error") {
            c.failed += 1;
            let name = case.attribute("name").unwrap_or("?");
            failing.push(
                match case.attribute("classname").filter(|s| !s.is_empty()) {
                    Some(class) => format!("{class}.{name}"),
                    None => name.to_string(),
                },
            );
        } else if has("skipped") {
            c.ignored += 1;
        } else {
            c.passed += 1;
        }
    }
    failing.sort();
    failing.dedup();
    Some((c, failing))
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0"?>
<testsuites><testsuite name="calc" tests="4">
  <testcase classname="test_calc.CalcTest" name="test_add"><failure message="x">boom</failure></testcase>
  <testcase classname="test_calc.CalcTest" name="test_mul"/>
  <testcase name="test_io"><error/></testcase>
  <testcase classname="t" name="slow"><skipped/></testcase>
</testsuite></testsuites>"#;

    #[test]
    fn counts_and_names() {
        let (c, names) = parse(XML).unwrap();
        assert_eq!((c.passed, c.failed, c.ignored), (1, 2, 1));
        assert_eq!(names, ["test_calc.CalcTest.test_add", "test_io"]);
        assert!(parse("<html/>").is_none());
        assert!(parse("not xml").is_none());
    }

    #[test]
    fn glob_and_freshness() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("out/junit")).unwrap();
        std::fs::write(d.path().join("out/junit/a.xml"), XML).unwrap();
        std::fs::write(d.path().join("out/other.xml"), XML).unwrap();
        let since = SystemTime::now() - std::time::Duration::from_secs(60);
        let r = read(d.path(), "out/junit/*.xml", since).unwrap();
        assert_eq!((r.files, r.counts.failed), (1, 2));
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(read(d.path(), "out/junit/*.xml", later).is_none());
    }
}
