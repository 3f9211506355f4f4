//! Stage 1, admit: the claimed task's stored definition must decode and name a known
//! role; otherwise the attempt ends at once as a permanent failure, before any child
//! or workspace work.

use super::Attempt;
use crate::input::roles::Role;
use crate::outcome::fault::Classified;
use crate::outcome::FaultClass;
use crate::outcome::Status;
use crate::run::spec::StoredSpec;

/// A task that can run: its definition and its role.
pub(crate) struct Admitted {
    /// The role the task runs as.
    pub role: Role,
    /// The stored definition (plus the handoff context it came with).
    pub spec: StoredSpec,
}

/// A task that cannot run, with the definition when it was readable.
pub(crate) struct Refused {
    /// The permanent failure.
    pub classified: Classified,
    /// The definition, when it decoded (the role was the problem).
    pub spec: Option<Box<StoredSpec>>,
}

/// Decodes the stored definition and finds its role.
pub(crate) fn check(att: &Attempt) -> Result<Admitted, Box<Refused>> {
    let Ok(spec) = serde_json::from_value::<StoredSpec>(att.claim.task.spec.clone()) else {
        return Err(Box::new(Refused {
            classified: permanent(
                "the stored task definition is unreadable".into(),
                "bad_spec",
            ),
            spec: None,
        }));
    };
    match att.shared.roles.get(&spec.task.role) {
        Ok(r) => Ok(Admitted {
            role: r.clone(),
            spec,
        }),
        Err(e) => Err(Box::new(Refused {
            classified: permanent(e.to_string(), "unknown_role"),
            spec: Some(Box::new(spec)),
        })),
    }
}

/// A permanent failure found before the child could start.
fn permanent(error: String, cause: &str) -> Classified {
    Classified {
        status: Status::Failed,
        fault: Some(FaultClass::Permanent),
        error: Some(error),
        cause: Some(cause.into()),
        resets_at: None,
        limit_kind: None,
    }
}
