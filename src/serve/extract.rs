//! Reading requests without ever answering outside the error shape: a JSON body
//! (content type, size limit, syntax, types, each refused with a 4xx naming what is
//! wrong), a path id, and the query string.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// A JSON body of type `T`; an empty body reads as `{}` for bodies whose fields are
/// all optional.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    "the request body is larger than the server accepts ([serve] body_limit)",
                )
            } else {
                ApiError::invalid(format!("cannot read the request body: {e}"))
            }
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            if json_type != Some(true) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "INVALID_REQUEST",
                    "send the body as JSON, with `Content-Type: application/json`",
                ));
            }
            &bytes
        };
        serde_json::from_slice(text).map(ApiJson).map_err(|e| {
            let what = if e.is_syntax() || e.is_eof() {
                "malformed JSON"
            } else {
                "a field is missing or has the wrong type"
            };
            ApiError::invalid(format!("{what}: {e}"))
        })
    }
}

/// The query string as name → value (the last one wins); malformed pairs are refused.
pub struct ApiQuery(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for ApiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(q)?;
        Ok(ApiQuery(pairs.into_iter().collect()))
    }
}

/// Decodes `a=1&b=2` (percent-decoding, `+` as space).
fn serde_urlencoded_pairs(q: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, ApiError> {
    let bad = || ApiError::invalid(format!("malformed query string near {s:?}"));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// A task id from the path, checked like a task list's ids.
pub fn task_id(id: &str) -> Result<String, ApiError> {
    if crate::input::values::valid_id(id) {
        Ok(id.to_string())
    } else {
        Err(ApiError::not_found(
            "TASK_NOT_FOUND",
            format!("no task {id:?} (ids are 1 to 64 of A-Z a-z 0-9 . _ -)"),
        ))
    }
}

/// One path parameter, as text; a malformed one is a 400 in the error shape.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| PathId(p.0))
            .map_err(|e| ApiError::invalid(format!("bad path parameter: {e}")))
    }
}

/// Largest body read (and thrown away) past the limit before answering 413: a client
/// still sending when the answer comes would see its connection reset, not the 413.
const DRAIN_MAX: usize = 8 * 1024 * 1024;

/// The outermost middleware: reads the whole body first (up to `[serve] body_limit`),
/// so that every answer, refusals included, comes after the request was read, and an
/// oversized body is a 413 in the error shape.
pub async fn buffer(
    axum::extract::State(app): axum::extract::State<std::sync::Arc<super::App>>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures_util::StreamExt;
    let limit = app.settings.serve.body_limit;
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let (mut buf, mut total) = (Vec::new(), 0usize);
    while let Some(chunk) = stream.next().await {
        let Ok(c) = chunk else {
            return ApiError::invalid("the request body could not be read").into_response();
        };
        total = total.saturating_add(c.len());
        if total <= limit {
            buf.extend_from_slice(&c);
        } else if total > DRAIN_MAX {
            break;
        }
    }
    if total > limit {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the request body is larger than {limit} bytes ([serve] body_limit)"),
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(buf)))
        .await
}
