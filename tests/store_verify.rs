//! The store's verification capability (`VerifyStore`): the baseline cache of gates,
//! one result per `(commit, gate)`, the first stored kept. Each runs on SQLite and on
//! PostgreSQL (`conformance!`; the PostgreSQL one needs a server, see
//! `tests/store_postgres.rs`).

mod store_util;

use serde_json::json;
use store_util::*;

conformance! {
    fn a_baseline_is_kept_once_per_commit_and_gate(b) {
    let (_d, st) = b.fresh();
    baseline_cache(&st);
    }
}

/// The cache's contract, on one backend.
fn baseline_cache(s: &TestStore) {
    assert_eq!(s.baseline("c1", "make test").unwrap(), None);
    let first = json!({"exit_code": 1, "failing": ["t.a"], "tests": {"passed": 2, "failed": 1, "ignored": 0}});
    assert_eq!(
        s.put_baseline("c1", "make test", &first, 10).unwrap(),
        first
    );
    assert_eq!(s.baseline("c1", "make test").unwrap(), Some(first.clone()));
    // A borg that raced and ran the gate too gets the first result back.
    let second = json!({"exit_code": 0, "failing": []});
    assert_eq!(
        s.put_baseline("c1", "make test", &second, 11).unwrap(),
        first
    );
    assert_eq!(s.baseline("c1", "make test").unwrap(), Some(first.clone()));
    // Another gate, another commit: their own entries.
    assert_eq!(s.baseline("c1", "make lint").unwrap(), None);
    assert_eq!(s.baseline("c2", "make test").unwrap(), None);
    assert_eq!(
        s.put_baseline("c2", "make test", &second, 12).unwrap(),
        second
    );
    assert_eq!(s.baseline("c1", "make test").unwrap(), Some(first));
}
