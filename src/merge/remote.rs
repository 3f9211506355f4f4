//! The queue's target when the repository is a host's mirror of a shared remote
//! (`workspaces/.repo`): the remote's target is the truth, the mirror's
//! `refs/heads/<target>` a copy of it.
//!
//! - where the target is read ([`Repo::read_branch`](crate::git::Repo::read_branch)),
//!   the remote's task branches and its target are fetched first, so the queue builds
//!   on what every host sees;
//! - where the target is advanced ([`Queue::publish`]), the claim is checked in the
//!   store (fenced: a queue that lost its target lease pushes nothing), then the
//!   target is pushed with a lease on the value the queue started from
//!   (`--force-with-lease=<target>:<old>`, a compare-and-swap on the remote). A
//!   refused push means someone else moved the target: the queue re-reads it
//!   ([`Queue::reread`]), records what landed there, and goes on from it; it never
//!   forces.
//!
//! The store's target lease stays the authority for which host runs the queue; the
//! push's lease keeps anyone else's update from being overwritten. Outside remote
//! mode every function here is the local branch alone.

use super::queue::{Queue, LEASE};
use super::MergeError;
use crate::git::remote::{Expect, Pushed, Update};
use crate::run::attempt::now_ms;

impl Queue<'_> {
    /// Moves the target on the remote from `old` (None: it must not exist) to `new`,
    /// after checking the claim in the store. True when it landed (or there is no
    /// remote); false when the remote's target is no longer at `old`. A push refused
    /// for another reason (a hook, permissions) is an error naming it.
    pub(super) fn publish(&mut self, old: Option<&str>, new: &str) -> Result<bool, MergeError> {
        if self.repo.remote.is_none() {
            return Ok(true);
        }
        // Fenced: a queue whose target lease another borg took pushes nothing.
        self.store.renew_target(&self.claim, LEASE, now_ms())?;
        let refname = self.spec.refname();
        let expect = old.map_or(Expect::Absent, |o| Expect::Is(o.to_string()));
        match self.repo.push(&[Update::set(&refname, new, expect)])? {
            Pushed::Done => Ok(true),
            refused @ Pushed::Refused(_) => {
                let now = self.repo.ls_remote(std::slice::from_ref(&refname))?;
                if now.get(&refname).map(String::as_str) == old {
                    return Err(MergeError::Push(refused.describe()));
                }
                tracing::warn!(target = %self.spec.target, why = %refused.describe(), "the remote's target moved; reading it again");
                Ok(false)
            }
        }
    }

    /// The remote's target moved under the queue: reads it again, records what
    /// landed there, and goes on from it (the rest of the pass is dropped and the
    /// pass runs again).
    pub(super) fn reread(&mut self) -> Result<(), MergeError> {
        let head = self
            .repo
            .read_branch(&self.spec.refname())?
            .ok_or_else(|| MergeError::Moved(self.spec.target.clone()))?;
        let facts = self
            .repo
            .facts(&[head.as_str()])?
            .remove(&head)
            .ok_or_else(|| MergeError::Moved(self.spec.target.clone()))?;
        self.head = head;
        self.head_facts = facts;
        self.reconcile()?;
        // The rest of this pass was ordered against the old head: it waits for the
        // next pass, which reads the ready tasks again (a dependent never lands
        // before what it depends on).
        self.deferred.extend(self.spec.scope.iter().cloned());
        self.progress = true;
        Ok(())
    }
}
