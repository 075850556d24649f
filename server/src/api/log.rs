//! The transparency log's routes: `log/checkpoint` (the latest signed
//! checkpoint, C2SP tlog-checkpoint text), `log/key` (its verifier key in
//! Go's note format), `log/inclusion?index=N&size=S` or
//! `?agent=ID&seq=N&size=S` (RFC 9162 inclusion proof), and
//! `log/consistency?from=M&to=N`. Hashes are standard base64.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::extract::{ApiQuery, Params};
use super::{HttpState, blocking, error};

fn b64(h: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

pub(super) async fn checkpoint(State(s): State<HttpState>) -> Response {
    match blocking(move || Ok(s.store.latest_checkpoint()?)).await {
        Ok(Some(c)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], c.note).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no checkpoint signed yet"),
        Err(r) => r,
    }
}

pub(super) async fn key(State(s): State<HttpState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", s.log_key)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InclusionQuery {
    index: Option<u64>,
    agent: Option<String>,
    seq: Option<u64>,
    size: u64,
}

impl Params for InclusionQuery {
    const ALLOWED: &'static str = "size (required), and index, or agent and seq";
}

pub(super) async fn inclusion(State(s): State<HttpState>, ApiQuery(q): ApiQuery<InclusionQuery>) -> Response {
    let found = blocking(move || {
        let index = match (q.index, q.agent, q.seq) {
            (Some(i), None, None) => Some(i),
            (None, Some(agent), Some(seq)) => s.store.record_leaf(&agent, seq)?,
            _ => return Ok(Err("give index, or agent and seq".to_string())),
        };
        let Some(index) = index else { return Ok(Err("no such record in the log".to_string())) };
        Ok(Ok(s.store.tlog_inclusion(index, q.size)?))
    })
    .await;
    match found {
        Ok(Ok(Ok((leaf, p)))) => Json(json!({
            "leaf_index": p.leaf_index,
            "tree_size": p.tree_size,
            "leaf_hash": b64(&leaf),
            "hashes": p.path.iter().map(|h| b64(h)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(Ok(Err(e))) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Ok(Err(why)) => error(StatusCode::BAD_REQUEST, &why),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsistencyQuery {
    from: u64,
    to: u64,
}

impl Params for ConsistencyQuery {
    const ALLOWED: &'static str = "from (required), to (required): tree sizes";
}

pub(super) async fn consistency(
    State(s): State<HttpState>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Response {
    match blocking(move || Ok(s.store.tlog_consistency(q.from, q.to)?)).await {
        Ok(Ok(p)) => Json(json!({
            "old_size": p.old_size,
            "new_size": p.new_size,
            "hashes": p.path.iter().map(|h| b64(h)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(r) => r,
    }
}
