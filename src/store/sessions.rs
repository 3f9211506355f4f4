//! Sessions that continue: which claude session an instance ran last, so that its next
//! task can resume it (`session = "continue"`).

use super::StoreError;

/// The store's session capability.
pub trait SessionStore {
    /// The session id of the newest finished attempt on `instance` that has one (from
    /// the attempts' records), if any.
    fn last_session(&self, instance: &str) -> Result<Option<String>, StoreError>;
}
