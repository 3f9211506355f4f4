//! `borg run --merge` (or `[merge] auto = true`): once the run's tasks are done, the
//! merge queue lands their work on `borg/integration/<list>`; the resolve and fix
//! tasks it creates are run by the same scheduler, and the queue runs again to land
//! them, until it creates nothing more (or the run is stopped).

use super::inputs::Inputs;
use super::{schedule, Ctx};
use crate::cli::merge::{queue_spec, run_queue, LIST_KEY};
use crate::cli::{ProgressMode, RunArgs};
use crate::error::UsageError;
use crate::run::attempt::Shared;
use crate::run::summary::{RunOptions, RunSummary};
use crate::show::report::merge::MergeSummary;
use crate::store::OwnerInfo;
use crate::supervise::signals::Shutdown;
use std::sync::Arc;

/// Most rounds of queue and created tasks (each round lands what the last one's
/// resolve tasks resolved; a conflict that keeps coming back stops here).
const MAX_ROUNDS: usize = 6;

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

/// Runs the queue, then the tasks it created, until it creates none; returns the
/// report's merge section.
pub(super) async fn after_run(
    ctx: &Ctx,
    (shared, owner, shutdown, progress): (&Arc<Shared>, &OwnerInfo, &Shutdown, ProgressMode),
    list: Option<&str>,
    opts: RunOptions,
    summary: &mut RunSummary,
) -> anyhow::Result<Option<MergeSummary>> {
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
    let mut target = None;
    for _ in 0..MAX_ROUNDS {
        if summary.interrupted || summary.stop.is_some() {
            break;
        }
        let spec = queue_spec(
            ctx,
            &shared.settings,
            store.as_ref(),
            &repo,
            (&list, None),
            &owner.id,
        )?;
        target = Some(spec.target.clone());
        let ran = run_queue(spec, (*repo).clone(), store.clone()).await?;
        if ran.created.is_empty() {
            break;
        }
        let mut o = opts.clone();
        o.scope = ran.created;
        let more = schedule(ctx, progress, shared, owner, o, shutdown).await?;
        summary.scope.extend(more.scope);
        summary.interrupted |= more.interrupted;
        summary.stop = summary.stop.take().or(more.stop);
        summary.cost_usd += more.cost_usd;
        summary.stopped_tasks.extend(more.stopped_tasks);
    }
    let Some(t) = target else {
        return Ok(None);
    };
    Ok(crate::merge::summary::read(store.as_ref(), &repo, &t)?)
}
