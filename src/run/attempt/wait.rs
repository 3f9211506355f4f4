//! The end of an attempt that never ran (git mode): the task's dependencies conflict,
//! so it hands its claim back and waits for the resolve task created with it, in one
//! fenced transaction ([`crate::store::GitStore::wait_for_new_task`]).

use super::{now_ms, Attempt, AttemptDone};
use crate::outcome::fault::Classified;
use crate::outcome::Status;
use crate::store::{call, NewTask};

/// Creates `task` and makes the claimed task wait for it.
pub(crate) async fn for_new_task(att: Attempt, task: NewTask, why: String) -> AttemptDone {
    let (token, id, reason) = (att.claim.token.clone(), task.id.clone(), why.clone());
    let lost = call(&att.shared.store, move |st| {
        st.wait_for_new_task(&token, &task, &reason, now_ms())
    })
    .await
    .err()
    .map(|e| e.to_string());
    AttemptDone {
        task: att.claim.task.id.clone(),
        role: att.claim.task.role.clone(),
        instance: att.instance.id.clone(),
        record: att.record,
        classified: Classified {
            status: Status::Pending,
            fault: None,
            error: None,
            cause: None,
            resets_at: None,
            limit_kind: None,
        },
        new_tasks: if lost.is_none() {
            vec![id.clone()]
        } else {
            Vec::new()
        },
        retry_at: None,
        waits_for: lost.is_none().then_some((id, why)),
        agent_tasks: Vec::new(),
        lost_claim: lost,
    }
}
