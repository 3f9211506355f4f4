//! `borg run --merge` (or `[merge] auto = true`): the merge queue lands the run's
//! work on `borg/integration/<list>` while the run goes on. The run loop takes a
//! pass of the queue each time a task succeeds (`run::scheduler`, through the
//! [`Integrator`] made here); the resolve and fix tasks a pass creates are run by the
//! same run, and the run ends when both its tasks and the queue are done.

use super::inputs::Inputs;
use super::Ctx;
use crate::cli::merge::{control, queue_spec, LIST_KEY};
use crate::cli::RunArgs;
use crate::error::UsageError;
use crate::git::Repo;
use crate::merge::{self, QueueSpec};
use crate::run::attempt::Shared;
use crate::run::integrate::{IntegrateError, Integrator, Merging};
use crate::show::report::merge::MergeSummary;
use crate::store::{OwnerInfo, Store};
use crate::supervise::signals::Shutdown;
use std::sync::Arc;

/// Whether the run merges: `--merge` or `[merge] auto`, in git mode only.
pub(super) fn wanted(a: &RunArgs, inputs: &Inputs) -> anyhow::Result<bool> {
    let asked = a.merge || inputs.settings.merge.auto;
    if asked && inputs.git.is_none() && !inputs.settings.merge.auto {
        return Err(UsageError(
            "--merge needs git mode (a repository: --repo DIR, or a task list inside a git work tree)".into(),
        )
        .into());
    }
    Ok(asked && inputs.git.is_some() && !a.no_work)
}

/// The queue of the run's list, as the run loop drives it.
struct Queue {
    /// The queue's settings, checked once before the run (the scope is read again
    /// at each pass: the tasks the queue creates join the list).
    spec: QueueSpec,
    /// The repository.
    repo: Repo,
    /// The store.
    store: Arc<dyn Store>,
}

impl Integrator for Queue {
    fn pass(&self) -> Result<Vec<String>, IntegrateError> {
        let fail = |e: &dyn std::fmt::Display| IntegrateError(e.to_string());
        let mut spec = self.spec.clone();
        spec.scope =
            crate::run::lists::members(self.store.as_ref(), &spec.list).map_err(|e| fail(&e))?;
        let ran = merge::run(&spec, &self.repo, &self.store).map_err(|e| fail(&e))?;
        crate::run::lists::register(self.store.as_ref(), &spec.list, &ran.created)
            .map_err(|e| fail(&e))?;
        Ok(ran.created)
    }
}

/// The run's queue and its target, checked before any task runs (a target checked
/// out in the user's work tree is exit 2 now, not after the run); None without a
/// list to merge.
pub(super) fn queue(
    ctx: &Ctx,
    shared: &Arc<Shared>,
    (owner, shutdown): (&OwnerInfo, &Shutdown),
    list: Option<&str>,
) -> anyhow::Result<Option<(Merging, String)>> {
    let (Some(repo), store) = (shared.git.clone(), shared.store.clone()) else {
        return Ok(None);
    };
    let list = match list {
        Some(l) => l.to_string(),
        None => match store
            .fleet(LIST_KEY)?
            .and_then(|v| v.as_str().map(String::from))
        {
            Some(l) => l,
            None => return Ok(None),
        },
    };
    let spec = queue_spec(
        ctx,
        &shared.settings,
        store.as_ref(),
        &repo,
        (&list, None),
        (&owner.id, control(shutdown)),
    )?;
    let target = spec.target.clone();
    let q = Queue {
        spec,
        repo: (*repo).clone(),
        store,
    };
    Ok(Some((Merging(Arc::new(q)), target)))
}

/// The report's merge section, once the run is over.
pub(super) fn summary(shared: &Shared, target: &str) -> anyhow::Result<Option<MergeSummary>> {
    let Some(repo) = &shared.git else {
        return Ok(None);
    };
    Ok(merge::summary::read(shared.store.as_ref(), repo, target)?)
}
