//! Every error answer is JSON (`{"error": "..."}`), also the ones the
//! framework writes itself in plain text (a rejection of an extractor other
//! than those of [`super::extract`], which answer JSON already). Clients
//! then read one shape.
//!
//! Invariant: only error answers with a plain-text body are rewritten, and
//! only their body (status and headers stay).

use axum::Json;
use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The longest framework message kept.
const MAX_MESSAGE_BYTES: usize = 4096;

/// Rewrites a plain-text error answer as JSON.
pub(super) async fn as_json(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match to_bytes(body, MAX_MESSAGE_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let json = Json(json!({ "error": text })).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Response::from_parts(parts, json.into_body())
}
