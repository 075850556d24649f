//! Admin actions on an enrolled agent: `POST agents/{id}/revoke` and
//! `POST agents/{id}/collect` (a fresh collection at the agent's next policy
//! poll).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;

use super::extract::ApiPath;
use super::{HttpState, blocking, error};

/// Revokes an agent: its calls are refused from now on and its open
/// evidence streams end at their next batch.
pub(super) async fn revoke(State(s): State<HttpState>, ApiPath(agent_id): ApiPath<String>) -> Response {
    if !custos_proto::evidence::statement::is_token(&agent_id, 64) {
        return error(StatusCode::BAD_REQUEST, "agent id must be a short token");
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let id = agent_id.clone();
    match blocking(move || Ok(s.agents.revoke(&id, now)?)).await {
        Ok(true) => {
            tracing::warn!(agent_id, "agent revoked");
            Json(json!({"agent_id": agent_id, "revoked": true})).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "no such active agent"),
        Err(r) => r,
    }
}

pub(super) async fn collect_now(State(s): State<HttpState>, ApiPath(agent_id): ApiPath<String>) -> Response {
    if !custos_proto::evidence::statement::is_token(&agent_id, 64) {
        return error(StatusCode::BAD_REQUEST, "agent id must be a short token");
    }
    let id = agent_id.clone();
    let poll = s.config.policy.poll_seconds;
    match blocking(move || Ok(s.store.request_collection(&id)?)).await {
        Ok(Some(generation)) => {
            tracing::info!(agent_id, generation, "fresh collection requested");
            let body = json!({"agent_id": agent_id, "collect_now_generation": generation,
                              "within_seconds": poll});
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such active agent"),
        Err(r) => r,
    }
}
