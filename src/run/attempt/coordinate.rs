//! Stage 2b, coordinate: what the child needs to work with the fleet (`coord`): the
//! per-attempt MCP config and settings in the instance's `coord/` folder, the flags
//! pointing claude at them and the `BORG_COORD` variable. A refusal (the files cannot
//! be written, the user's claude settings switch hooks off) ends the attempt before any
//! child starts, as `coordination_unavailable`.

use super::admit::Admitted;
use super::Attempt;
use crate::coord::files::{self, ChildCoord};
use crate::outcome::fault::Classified;
use crate::outcome::{FaultClass, Status};
use std::collections::BTreeMap;

/// The child's coordination (None when `[coord] enabled = false`), or why it cannot
/// have any.
pub(crate) fn prepare(att: &Attempt, a: &Admitted) -> Result<Option<ChildCoord>, Classified> {
    let s = &att.shared.settings;
    if !s.coord.enabled {
        return Ok(None);
    }
    let dir = att.instance.path.join("coord");
    let cfg = files::config(
        &s.coord,
        &att.instance.project_dir(),
        &a.role.name,
        &a.role.meta.writable,
        att.shared.roles.names(),
        u64::try_from(s.run.lease.as_millis()).unwrap_or(u64::MAX),
        a.spec.task.retries.unwrap_or(s.run.retries),
        vec![dir.clone(), att.shared.store_path.clone()],
    );
    // What the child's claude will see of HOME and CLAUDE_CONFIG_DIR.
    let mut env: BTreeMap<String, String> = att.shared.parent_env.clone();
    env.extend(s.claude.env.clone());
    env.extend(a.spec.task.env.clone());
    files::prepare(&dir, &files::borg_bin(), &s.coord, &cfg, &env)
        .map(Some)
        .map_err(|e| unavailable(format!("borg cannot give this child its coordination: {e}")))
}

/// The failure of an attempt whose coordination did not work.
pub(crate) fn unavailable(error: String) -> Classified {
    Classified {
        status: Status::Failed,
        fault: Some(FaultClass::CoordinationUnavailable),
        error: Some(error),
        cause: Some("coordination_unavailable".into()),
        resets_at: None,
        limit_kind: None,
    }
}
