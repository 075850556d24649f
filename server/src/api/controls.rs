//! `GET controls` (each control's state and effectiveness, now or `as_of`
//! a past time, for a framework and a host group) and `GET effectiveness`
//! (one control's effectiveness over time), see [`views::controls`] and
//! [`views::effectiveness`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::extract::{ApiQuery, Params};
use super::{HttpState, blocking, error, parse_time, views};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ControlsQuery {
    framework: Option<String>,
    /// A host group: only hosts with this tag.
    group: Option<String>,
    as_of: Option<String>,
}

impl Params for ControlsQuery {
    const ALLOWED: &'static str = "framework, group (a host tag), as_of";
}

pub(super) async fn list(State(s): State<HttpState>, ApiQuery(q): ApiQuery<ControlsQuery>) -> Response {
    let now = OffsetDateTime::now_utc();
    let as_of = match parse_time("as_of", q.as_of.as_deref(), now) {
        Ok(t) => t,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    match blocking(move || {
        Ok(views::controls(
            views::Sources {
                store: &s.store,
                fleet: &s.fleet,
                catalog: &s.catalog.current(),
                config: &s.config,
                rules: &s.policy.current(),
            },
            now,
            q.framework.as_deref(),
            q.group.as_deref(),
            as_of,
        )?)
    })
    .await
    {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(unknown)) => error(StatusCode::BAD_REQUEST, &format!("unknown framework {unknown:?}")),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EffectivenessQuery {
    control: String,
    from: String,
    to: Option<String>,
    points: Option<u32>,
    group: Option<String>,
}

impl Params for EffectivenessQuery {
    const ALLOWED: &'static str = "control (required), from (required), to, points, group (a host tag)";
}

/// `GET /api/v1/effectiveness?control=ID&from=T1[&to=T2][&points=N]`: the
/// control's effectiveness (passing / in scope) at N evenly spaced times.
pub(super) async fn effectiveness(
    State(s): State<HttpState>,
    ApiQuery(q): ApiQuery<EffectivenessQuery>,
) -> Response {
    let now = OffsetDateTime::now_utc();
    let (from, to) = match (parse_time("from", Some(&q.from), now), parse_time("to", q.to.as_deref(), now)) {
        (Ok(Some(from)), Ok(to)) => (from, to.unwrap_or(now)),
        (Err(why), _) | (_, Err(why)) => return error(StatusCode::BAD_REQUEST, &why),
        (Ok(None), _) => return error(StatusCode::BAD_REQUEST, "from is required"),
    };
    if to < from {
        return error(StatusCode::BAD_REQUEST, "to lies before from");
    }
    let points = q.points.unwrap_or(30);
    if points == 0 || points > views::MAX_POINTS {
        return error(StatusCode::BAD_REQUEST, &format!("points must be 1 to {}", views::MAX_POINTS));
    }
    let control = q.control.clone();
    match blocking(move || {
        Ok(views::effectiveness(
            views::Sources {
                store: &s.store,
                fleet: &s.fleet,
                catalog: &s.catalog.current(),
                config: &s.config,
                rules: &s.policy.current(),
            },
            q.group.as_deref(),
            &control,
            from,
            to,
            points,
        )?)
    })
    .await
    {
        Ok(Ok(series)) => Json(json!({"control_id": q.control, "points": series})).into_response(),
        Ok(Err(unknown)) => error(StatusCode::BAD_REQUEST, &format!("unknown control {unknown:?}")),
        Err(r) => r,
    }
}
