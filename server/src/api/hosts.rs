//! `GET hosts` and `GET hosts/{id}`: the hosts with their checks' states,
//! now or `as_of` a past time (rebuilt from the signed records, see
//! [`views::hosts`]); one host also with its requirements' standings.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::extract::{ApiPath, ApiQuery, Params};
use super::{HttpState, blocking, error, parse_time, views};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AsOfQuery {
    as_of: Option<String>,
}

impl Params for AsOfQuery {
    const ALLOWED: &'static str = "as_of";
}

pub(super) async fn list(State(s): State<HttpState>, ApiQuery(q): ApiQuery<AsOfQuery>) -> Response {
    let now = OffsetDateTime::now_utc();
    let as_of = match parse_time("as_of", q.as_of.as_deref(), now) {
        Ok(t) => t,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    match blocking(move || Ok(views::hosts(&s.store, &s.config, &s.policy.current(), now, as_of, None)?))
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

pub(super) async fn one(
    State(s): State<HttpState>,
    ApiPath(agent_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AsOfQuery>,
) -> Response {
    if !custos_proto::evidence::statement::is_token(&agent_id, 64) {
        return error(StatusCode::BAD_REQUEST, "agent id must be a short token");
    }
    let now = OffsetDateTime::now_utc();
    let as_of = match parse_time("as_of", q.as_of.as_deref(), now) {
        Ok(t) => t,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let only = agent_id.clone();
    let read = move || {
        let mut found = views::hosts(&s.store, &s.config, &s.policy.current(), now, as_of, Some(&only))?
            .into_iter()
            .find(|h| h.host.agent_id == only);
        if let Some(h) = found.as_mut() {
            let at = as_of.unwrap_or(now).unix_timestamp();
            h.requirements = Some(s.store.host_standings_at(&only, at)?);
        }
        Ok(found)
    };
    match blocking(read).await {
        Ok(v) => match v {
            Some(h) => Json(h).into_response(),
            None => error(StatusCode::NOT_FOUND, "no such host (at that time)"),
        },
        Err(r) => r,
    }
}
