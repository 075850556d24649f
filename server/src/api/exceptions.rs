//! Exception routes: list every exception with its state now, and for
//! admin tokens record one or withdraw one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::extract::{ApiJson, ApiPath};
use super::{HttpState, blocking, error, rfc3339};
use crate::compliance::exception::NewException;

pub(super) async fn list(State(s): State<HttpState>) -> Response {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    match blocking(move || Ok(s.store.exceptions()?)).await {
        Ok(list) => {
            let rows: Vec<serde_json::Value> = list
                .into_iter()
                .map(|e| {
                    let state = e.state(now);
                    let mut v = json!(e);
                    v["state"] = json!(state);
                    v
                })
                .collect();
            Json(rows).into_response()
        }
        Err(r) => r,
    }
}

/// The body of `POST exceptions`: [`NewException`] with the expiry as RFC 3339.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    agent_id: String,
    requirement: String,
    approver: String,
    justification: String,
    expires_at: String,
    actor: String,
}

pub(super) async fn create(State(s): State<HttpState>, ApiJson(b): ApiJson<CreateBody>) -> Response {
    let expires = match rfc3339("expires_at", &b.expires_at) {
        Ok(t) => t,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let request = NewException {
        agent_id: b.agent_id,
        requirement: b.requirement,
        approver: b.approver,
        justification: b.justification,
        expires_at: expires.unix_timestamp(),
        actor: b.actor,
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if let Err(why) = request.validate(&s.catalog.current(), now, s.config.risk.max_acceptance_days) {
        return error(StatusCode::BAD_REQUEST, &why);
    }
    let wake = s.reevaluate.clone();
    match blocking(move || Ok(s.store.add_exception(&request, now)?)).await {
        Ok(Some(e)) => {
            wake.notify_one();
            (StatusCode::CREATED, Json(e)).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such host"),
        Err(r) => r,
    }
}

pub(super) async fn withdraw(State(s): State<HttpState>, ApiPath(id): ApiPath<i64>) -> Response {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let wake = s.reevaluate.clone();
    match blocking(move || Ok(s.store.withdraw_exception(id, now)?)).await {
        Ok(Some(true)) => {
            wake.notify_one();
            Json(json!({"id": id, "withdrawn_at": now})).into_response()
        }
        Ok(Some(false)) => error(StatusCode::CONFLICT, "the exception was withdrawn already"),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such exception"),
        Err(r) => r,
    }
}
