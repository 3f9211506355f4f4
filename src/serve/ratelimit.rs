//! Per-agent rate limits (seed 000: 100 requests a minute by default): a fixed window
//! of one minute per agent, reported on every agent request in the
//! `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` (epoch seconds
//! of the window's end) headers; over the limit, 429 `RATE_LIMITED` with
//! `retryable: true`. Admin and dashboard requests are not limited.

use super::auth::Caller;
use super::error::ApiError;
use super::App;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The window.
const WINDOW_S: i64 = 60;

/// Counters per agent.
pub struct RateLimiter {
    /// Requests per window (0: no limit).
    limit: u32,
    /// Agent id → (window start, epoch s; requests in it).
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

/// What one request used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// The limit.
    pub limit: u32,
    /// Left in this window.
    pub remaining: u32,
    /// End of the window, epoch s.
    pub reset: i64,
    /// Whether this request is over the limit.
    pub over: bool,
}

impl RateLimiter {
    /// A limiter of `limit` requests a minute per agent.
    pub fn new(limit: u32) -> RateLimiter {
        RateLimiter {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `key` at `now_s`.
    pub fn take(&self, key: &str, now_s: i64) -> Option<Quota> {
        if self.limit == 0 {
            return None;
        }
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let start = now_s - now_s.rem_euclid(WINDOW_S);
        let e = w.entry(key.to_string()).or_insert((start, 0));
        if e.0 != start {
            *e = (start, 0);
        }
        e.1 = e.1.saturating_add(1);
        Some(Quota {
            limit: self.limit,
            remaining: self.limit.saturating_sub(e.1),
            reset: start + WINDOW_S,
            over: e.1 > self.limit,
        })
    }
}

/// The middleware: counts agent requests, refuses those over the limit, and puts the
/// headers on every agent answer.
pub async fn limit(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let key = req
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.limit_key().map(str::to_string));
    let quota = key.and_then(|k| app.limits.take(&k, chrono::Utc::now().timestamp()));
    let mut resp = match quota {
        Some(q) if q.over => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!(
                "more than {} requests in a minute; wait until {} (x-ratelimit-reset)",
                q.limit, q.reset
            ),
        )
        .retryable()
        .details(serde_json::json!({ "limit": q.limit, "reset": q.reset }))
        .into_response(),
        _ => next.run(req).await,
    };
    if let Some(q) = quota {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(q.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(q.remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(q.reset));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_of_one_minute_per_agent() {
        let l = RateLimiter::new(2);
        let a = l.take("a", 120).unwrap();
        assert_eq!((a.remaining, a.reset, a.over), (1, 180, false));
        assert!(!l.take("a", 130).unwrap().over);
        assert!(l.take("a", 179).unwrap().over);
        assert!(!l.take("b", 179).unwrap().over, "per agent");
        assert_eq!(l.take("a", 180).unwrap().remaining, 1, "a new window");
        assert!(RateLimiter::new(0).take("a", 1).is_none());
    }
}
