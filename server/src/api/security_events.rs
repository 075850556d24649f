//! `GET security-events`: the aggregated security events (a burst of one
//! kind of refusal from one source is one event with a count and a time
//! span, see `store::security_events`), newest first, one page at a time.
//!
//! Query: `kind`, `source` (agent id, peer address or `server`), `since`
//! and `until` (RFC 3339: events whose span reaches `since` and begins by
//! `until`), `limit` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and
//! `cursor` (the previous page's `next`). Answer:
//! `{"events": [...], "next": "<cursor>" | null}`. Pages are keyed by the
//! events' ids, so they never overlap and together hold every event there
//! was at the first page (events opened since come first on a new listing).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::extract::{ApiQuery, Params};
use super::{HttpState, blocking, error, rfc3339};
use crate::store::security_events::EventFilter;

/// Events on a page unless `limit` says otherwise...
pub const DEFAULT_LIMIT: u32 = 100;
/// ...and at most.
pub const MAX_LIMIT: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    kind: Option<String>,
    source: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl Params for EventsQuery {
    const ALLOWED: &'static str = "kind, source, since, until (RFC 3339), limit (1 to 1000), cursor";
}

pub(super) async fn list(State(s): State<HttpState>, ApiQuery(q): ApiQuery<EventsQuery>) -> Response {
    let filter = match filter(q) {
        Ok(f) => f,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    match blocking(move || Ok(s.store.security_events(&filter)?)).await {
        Ok(page) => {
            Json(json!({"events": page.events, "next": page.next.map(|id| id.to_string())})).into_response()
        }
        Err(r) => r,
    }
}

/// The query checked and turned into the store's filter; the error says
/// which parameter is wrong and what it takes.
fn filter(q: EventsQuery) -> Result<EventFilter, String> {
    let time = |name: &str, v: Option<String>| -> Result<Option<i64>, String> {
        v.map(|text| rfc3339(name, &text).map(OffsetDateTime::unix_timestamp)).transpose()
    };
    let (since, until) = (time("since", q.since)?, time("until", q.until)?);
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return Err("until lies before since".into());
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(format!("limit must be 1 to {MAX_LIMIT}"));
    }
    let before_id = match q.cursor {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or("cursor must be the `next` of a previous page")?,
        ),
    };
    for (name, value) in [("kind", &q.kind), ("source", &q.source)] {
        if value.as_ref().is_some_and(|v| v.is_empty() || v.len() > 200) {
            return Err(format!("{name} must be 1 to 200 characters"));
        }
    }
    Ok(EventFilter { kind: q.kind, source: q.source, since, until, before_id, limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowed_parameters_name_the_limit_in_force() {
        assert!(EventsQuery::ALLOWED.contains(&format!("limit (1 to {MAX_LIMIT})")));
    }
}
