//! `GET /health`: seed 000's health check, open to anyone (it says nothing private).

use crate::serve::App;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// `{status, timestamp, config}`, the seed's shape (no envelope).
pub async fn health(State(app): State<Arc<App>>) -> Response {
    Json(json!({
        "status": "healthy",
        "timestamp": super::iso(chrono::Utc::now().timestamp_millis()),
        "config": {
            "useMocks": false,
            "mcpEnabled": false,
            "webSocketEnabled": true,
            "sseEnabled": true,
            "tokenRequired": app.auth.token_mode(),
            "rateLimitPerMinute": app.settings.serve.rate_limit,
            "version": env!("CARGO_PKG_VERSION"),
        }
    }))
    .into_response()
}
