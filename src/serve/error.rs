//! The API's answers: seed 000's envelope (`{"success": true, "data": ...}` /
//! `{"success": false, "error": {"code", "message", "retryable", "details"?}}`), its
//! error codes, and the mapping of store errors and request rejections to them, so that
//! every failure a client can cause is a 4xx with this shape, never a bare 500.

use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Seed 000's code (`INVALID_TOKEN`, `TASK_ALREADY_CLAIMED` ...).
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// Extra facts (`claimedBy`, `lockedBy` ...).
    pub details: Option<Value>,
}

impl ApiError {
    /// An error that retrying will not fix.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retryable: false,
            details: None,
        }
    }

    /// With details.
    pub fn details(mut self, d: Value) -> ApiError {
        self.details = Some(d);
        self
    }

    /// With another code.
    pub fn code(mut self, code: &'static str) -> ApiError {
        self.code = code;
        self
    }

    /// Marks it retryable.
    pub fn retryable(mut self) -> ApiError {
        self.retryable = true;
        self
    }

    /// 400 `INVALID_REQUEST`: a body or parameter that does not fit.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// 404 for a task, handoff, route ... that does not exist.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 401 `AGENT_NOT_REGISTERED`: no token at all.
    pub fn unregistered() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AGENT_NOT_REGISTERED",
            "register first (POST /api/claude/register) and send its token as `Authorization: Bearer reg_...`",
        )
    }

    /// 403 `FORBIDDEN`: a caller that may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 503/500 `SERVER_ERROR` for a store failure (retryable: the store may be busy).
    pub fn server(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "SERVER_ERROR", message).retryable()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::StaleClaim { task, current, .. } => ApiError::new(
                StatusCode::CONFLICT,
                "STALE_CLAIM",
                format!("{e}; this claim of task {task} is over"),
            )
            .details(json!({ "currentFence": current })),
            StoreError::NotFound(what) => {
                ApiError::not_found("NOT_FOUND", format!("{what} not found"))
            }
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "CONFLICT", m.clone()),
            StoreError::Locked { .. } => ApiError::server(e.to_string()),
            _ => ApiError::server(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        });
        if let Some(d) = self.details {
            err["details"] = d;
        }
        (self.status, Json(json!({ "success": false, "error": err }))).into_response()
    }
}

/// A success: `{"success": true, "data": data}`.
pub fn ok(data: Value) -> Response {
    Json(json!({ "success": true, "data": data })).into_response()
}

/// Epoch ms as RFC 3339 UTC (`2025-11-17T10:30:00Z`), the seed's time stamps.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A handler's result.
pub type ApiResult = Result<Response, ApiError>;
