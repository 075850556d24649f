//! `GET changes`: the change log of hosts' standings on requirements, with
//! the record that decided each change and the policy and mapping versions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::extract::{ApiQuery, Params};
use super::{HttpState, blocking, error, parse_time};
use crate::store::requirements::ChangeFilter;

/// Most rows one request returns.
pub const MAX_LIMIT: u32 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangesQuery {
    agent: Option<String>,
    requirement: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

impl Params for ChangesQuery {
    const ALLOWED: &'static str = "agent, requirement (id or prefix), from, to (RFC 3339), limit";
}

pub(super) async fn list(State(s): State<HttpState>, ApiQuery(q): ApiQuery<ChangesQuery>) -> Response {
    let now = OffsetDateTime::now_utc();
    let (from, to) =
        match (parse_time("from", q.from.as_deref(), now), parse_time("to", q.to.as_deref(), now)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(why), _) | (_, Err(why)) => return error(StatusCode::BAD_REQUEST, &why),
        };
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_LIMIT {
        return error(StatusCode::BAD_REQUEST, &format!("limit must be 1 to {MAX_LIMIT}"));
    }
    let filter = ChangeFilter {
        agent_id: q.agent,
        requirement: q.requirement,
        from: from.map(|t| t.unix_timestamp()),
        to: to.map(|t| t.unix_timestamp()),
        limit,
    };
    match blocking(move || Ok(s.store.requirement_changes(&filter)?)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}
