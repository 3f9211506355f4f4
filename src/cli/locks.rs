//! `borg locks [--json]` and `borg locks release PATH --force`: the file leases of the
//! running agents, for people. Release is for a lease whose holder is gone (its claim
//! is no longer current or expired, or its borg process is dead); a live holder's lease
//! is refused: it ends when its task ends.

use super::{print_json, Ctx};
use crate::cli::{LocksArgs, LocksCmd};
use crate::coord::leases::clock;
use crate::error::{UsageError, EXIT_FAILED, EXIT_OK};
use crate::input::config::Overrides;
use crate::run::attempt::now_ms;
use crate::store::coord::LeaseRow;
use crate::store::Store;

/// Runs `borg locks ...`.
pub fn run(ctx: &Ctx, a: LocksArgs) -> anyhow::Result<i32> {
    let s = ctx.settings(Overrides::default())?;
    let store = ctx.store(&s)?;
    match a.cmd {
        None => list(store.as_ref(), a.json),
        Some(LocksCmd::Release { path, force }) => release(store.as_ref(), &path, force),
    }
}

fn list(store: &dyn Store, json: bool) -> anyhow::Result<i32> {
    let rows: Vec<LeaseRow> = store.leases(now_ms())?;
    if json {
        print_json(&rows)?;
        return Ok(EXIT_OK);
    }
    if rows.is_empty() {
        println!("no file leases");
        return Ok(EXIT_OK);
    }
    println!(
        "{:<36} {:<28} {:<24} {:<11} {:<8} {:<8} {:<5} REASON",
        "PATH", "HOLDER", "TASK", "ROLE", "SINCE", "EXPIRES", "LIVE"
    );
    for l in rows {
        println!(
            "{:<36} {:<28} {:<24} {:<11} {:<8} {:<8} {:<5} {}",
            l.path,
            l.instance,
            l.task,
            l.role,
            clock(l.since_ms),
            clock(l.expires_ms),
            if l.live { "yes" } else { "no" },
            crate::coord::notes::one_line(&l.reason, 60)
        );
    }
    Ok(EXIT_OK)
}

/// True while the holder of `l` is running: its claim is current and unexpired, and
/// its borg process (on this host) is alive; a holder on another host counts as alive.
fn holder_alive(store: &dyn Store, l: &LeaseRow) -> anyhow::Result<bool> {
    if !l.live {
        return Ok(false);
    }
    let Some(owner) = store.task(&l.task)?.and_then(|t| t.owner) else {
        return Ok(false);
    };
    let Some(o) = store.owners()?.into_iter().find(|o| o.id == owner) else {
        return Ok(false);
    };
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    if o.host != host {
        return Ok(true);
    }
    Ok(crate::supervise::procs::same_process(
        o.pid,
        o.start_time,
        &o.boot_id,
    ))
}

fn release(store: &dyn Store, path: &str, force: bool) -> anyhow::Result<i32> {
    let want = crate::coord::paths::pattern(std::path::Path::new("/"), path)
        .map_err(|e| UsageError(e.0))?;
    let rows: Vec<LeaseRow> = store
        .leases(now_ms())?
        .into_iter()
        .filter(|l| l.path == want)
        .collect();
    if rows.is_empty() {
        eprintln!("borg: no lease on {want} (see `borg locks`)");
        return Ok(EXIT_FAILED);
    }
    for l in &rows {
        if holder_alive(store, l)? {
            eprintln!(
                "borg: {want} is held by {} (task {}), which is still running; refusing. Its leases end when its task ends",
                l.instance, l.task
            );
            return Ok(EXIT_FAILED);
        }
    }
    if !force {
        return Err(UsageError(format!(
            "releasing {want} needs --force (its holder, {}, is gone)",
            rows[0].instance
        ))
        .into());
    }
    let ids: Vec<i64> = rows.iter().map(|l| l.id).collect();
    let n = store.drop_leases(&ids, now_ms())?;
    println!("released {n} lease(s) on {want}");
    Ok(EXIT_OK)
}
