//! `POST /api/claude/register {agentId, capabilities[], version}`: a new token
//! (`reg_<uuid>`), returned once and stored only as its SHA-256; never logged.

use crate::serve::auth::{new_agent_token, sha256_hex, Caller};
use crate::serve::error::{ok, ApiError, ApiResult};
use crate::serve::extract::ApiJson;
use crate::serve::App;
use crate::store::agents::AgentRegistration;
use crate::store::call;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The registration body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Register {
    agent_id: String,
    #[serde(default)]
    capabilities: Vec<String>,
    version: Option<String>,
}

/// Registers an agent.
pub async fn register(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<Register>,
) -> ApiResult {
    caller.may_register(&app)?;
    if !crate::input::values::valid_id(&body.agent_id) {
        return Err(ApiError::invalid(format!(
            "agentId {:?}: use 1 to 64 of A-Z a-z 0-9 . _ -",
            body.agent_id
        )));
    }
    let caps = &body.capabilities;
    let invalid_caps = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_CAPABILITIES", m);
    if caps.is_empty() {
        return Err(invalid_caps("Agent must declare at least one capability"));
    }
    if caps.len() > 100 || caps.iter().any(|c| c.trim().is_empty() || c.len() > 100) {
        return Err(invalid_caps(
            "capabilities: at most 100, each 1 to 100 characters, not blank",
        ));
    }
    let token = new_agent_token();
    let reg = AgentRegistration {
        id: body.agent_id,
        capabilities: body.capabilities,
        version: body.version.filter(|v| v.len() <= 100),
        token_sha256: sha256_hex(&token),
    };
    let now = chrono::Utc::now().timestamp_millis();
    call(&app.store, move |st| st.register_agent(&reg, now)).await?;
    Ok(ok(json!(token)))
}
