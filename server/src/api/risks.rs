//! The risk register's routes: list and filter (JSON or CSV), one entry
//! with its history, the matrix in use, and for admin tokens: record a
//! manual entry, update, accept.
//!
//! Writes name the person acting (`actor`, or `approver` for an
//! acceptance): the history says who changed what.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::extract::{ApiJson, ApiPath, ApiQuery, BadRequest, Params};
use super::{HttpState, blocking, error, internal, rfc3339};
use crate::register::lifecycle::{ManualRisk, Patch, accept, create_manual, update};
use crate::register::{Level, RiskError, Status, Transition, Treatment, export};
use crate::store::risks::RiskFilter;
use crate::webhook;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    level: Option<String>,
    owner: Option<String>,
    requirement: Option<String>,
    origin: Option<String>,
    format: Option<String>,
}

impl Params for ListQuery {
    const ALLOWED: &'static str = "status (live, all, or a comma list of pending, open, in_treatment, accepted, closed), level (low, medium, high, very_high), owner, requirement (id or prefix), origin (evidence, manual), format (json, csv)";
}

/// The filter a query asks for ([`RiskFilter::parse`] against the
/// catalog); the error names the bad value.
fn filter(q: &ListQuery, catalog: &crate::compliance::catalog::Catalog) -> Result<RiskFilter, String> {
    if q.format.as_deref().is_some_and(|v| v.trim().is_empty()) {
        return Err("format is empty".into());
    }
    RiskFilter::parse(
        q.status.as_deref(),
        q.level.as_deref(),
        q.owner.as_deref(),
        q.requirement.as_deref(),
        q.origin.as_deref(),
        |r| catalog.knows_prefix(r),
    )
}

pub(super) async fn list(State(s): State<HttpState>, ApiQuery(q): ApiQuery<ListQuery>) -> Response {
    let f = match filter(&q, &s.catalog.current()) {
        Ok(f) => f,
        Err(why) => {
            return error(StatusCode::BAD_REQUEST, &format!("{why}; allowed: {}", ListQuery::ALLOWED));
        }
    };
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return error(StatusCode::BAD_REQUEST, &format!("format {other:?}: use json or csv")),
    };
    let matrix = s.config.risk.policy().matrix;
    let entries = match blocking(move || Ok(s.store.risks(&f)?)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !csv {
        return Json(entries).into_response();
    }
    match export::to_csv(&entries, &matrix) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8; header=present"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"custos-risk-register.csv\""),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

pub(super) async fn one(State(s): State<HttpState>, ApiPath(id): ApiPath<i64>) -> Response {
    let found = blocking(move || {
        let Some(entry) = s.store.risk(id)? else { return Ok(None) };
        Ok(Some((entry, s.store.risk_history(id)?)))
    })
    .await;
    match found {
        Ok(Some((entry, history))) => Json(json!({"entry": entry, "history": history})).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such risk"),
        Err(r) => r,
    }
}

/// The matrix in use with its labels and levels, for forms and legends.
pub(super) async fn matrix(State(s): State<HttpState>) -> Response {
    let policy = s.config.risk.policy();
    let m = policy.matrix;
    let steps: Vec<u8> = (1..=m.steps()).collect();
    let cells: Vec<Vec<Level>> =
        steps.iter().map(|l| steps.iter().map(|i| m.at(*l, *i).level).collect()).collect();
    let sla_days: serde_json::Map<String, serde_json::Value> =
        Level::ALL.iter().map(|l| (l.to_string(), json!(policy.sla(*l) / 86_400))).collect();
    Json(json!({
        "matrix": s.config.risk.matrix,
        "likelihood": steps.iter().map(|s| m.likelihood_label(*s)).collect::<Vec<_>>(),
        "impact": steps.iter().map(|s| m.impact_label(*s)).collect::<Vec<_>>(),
        "levels": cells,
        "sla_days": sla_days,
        "frameworks": s.config.risk.frameworks,
    }))
    .into_response()
}

fn refused(e: RiskError) -> Response {
    match e {
        RiskError::Invalid(m) => error(StatusCode::BAD_REQUEST, &m),
        e @ RiskError::State { .. } => error(StatusCode::CONFLICT, &e.to_string()),
    }
}

/// A likelihood or impact: a step number or a label of the matrix.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Step {
    Number(u8),
    Label(String),
}

/// The step of a likelihood or impact; the error says what is allowed.
fn step(s: &HttpState, v: &Step, impact: bool) -> Result<u8, String> {
    let m = s.config.risk.policy().matrix;
    let text = match v {
        Step::Number(n) => n.to_string(),
        Step::Label(l) => l.clone(),
    };
    m.parse_step(&text, impact)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Rated {
    likelihood: Step,
    impact: Step,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    actor: String,
    title: String,
    #[serde(default)]
    description: String,
    likelihood: Step,
    impact: Step,
    owner: Option<String>,
    #[serde(default)]
    threats: Vec<String>,
    #[serde(default)]
    goals: Vec<String>,
    treatment: Option<Treatment>,
    requirement: Option<String>,
}

pub(super) async fn create(State(s): State<HttpState>, ApiJson(b): ApiJson<CreateBody>) -> Response {
    let (likelihood, impact) = match (step(&s, &b.likelihood, false), step(&s, &b.impact, true)) {
        (Ok(l), Ok(i)) => (l, i),
        (Err(why), _) | (_, Err(why)) => return error(StatusCode::BAD_REQUEST, &why),
    };
    if let Some(req) = &b.requirement
        && s.catalog.current().control(req).is_none()
    {
        return error(StatusCode::BAD_REQUEST, &format!("requirement {req:?} is not in the catalog"));
    }
    let input = ManualRisk {
        title: b.title,
        description: b.description,
        likelihood,
        impact,
        owner: b.owner,
        threats: b.threats,
        goals: b.goals,
        treatment: b.treatment,
        requirement: b.requirement,
    };
    let t = match create_manual(input, &s.config.risk.policy(), &b.actor, OffsetDateTime::now_utc()) {
        Ok(t) => t,
        Err(e) => return refused(e),
    };
    let hooks = s.config.webhooks.clone();
    let at = OffsetDateTime::now_utc().unix_timestamp();
    let notify = move |ts: &[Transition]| webhook::deliveries_for_transitions(&hooks, ts, at);
    match blocking(move || Ok(s.store.insert_risk(t, notify)?)).await {
        Ok(t) => (StatusCode::CREATED, Json(t.entry)).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchBody {
    actor: String,
    owner: Option<String>,
    treatment: Option<Treatment>,
    status: Option<Status>,
    residual: Option<Rated>,
    rating: Option<Rated>,
}

pub(super) async fn patch(
    State(s): State<HttpState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<PatchBody>,
) -> Response {
    let rated = |r: &Option<Rated>| -> Result<Option<(u8, u8)>, String> {
        r.as_ref().map(|r| Ok((step(&s, &r.likelihood, false)?, step(&s, &r.impact, true)?))).transpose()
    };
    let (residual, rating) = match (rated(&b.residual), rated(&b.rating)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let p = Patch { owner: b.owner, treatment: b.treatment, status: b.status, residual, rating };
    let policy = s.config.risk.policy();
    let actor = b.actor;
    let now = OffsetDateTime::now_utc();
    let hooks = s.config.webhooks.clone();
    let notify =
        move |ts: &[Transition]| webhook::deliveries_for_transitions(&hooks, ts, now.unix_timestamp());
    respond(
        blocking(move || Ok(s.store.change_risk(id, |e| update(e, p, &policy, &actor, now), notify)?)).await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AcceptBody {
    approver: String,
    justification: String,
    /// RFC 3339.
    expires_at: String,
}

pub(super) async fn accept_risk(
    State(s): State<HttpState>,
    ApiPath(id): ApiPath<i64>,
    // Its refusal is answered after the entry is looked up: an unknown
    // entry is 404 whatever the body says.
    body: Result<ApiJson<AcceptBody>, BadRequest>,
) -> Response {
    let store = s.store.clone();
    match blocking(move || Ok(store.risk(id)?.is_some())).await {
        Ok(true) => {}
        Ok(false) => return error(StatusCode::NOT_FOUND, "no such risk"),
        Err(r) => return r,
    }
    let ApiJson(b) = match body {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let expires = match rfc3339("expires_at", &b.expires_at) {
        Ok(t) => t,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let policy = s.config.risk.policy();
    let now = OffsetDateTime::now_utc();
    let hooks = s.config.webhooks.clone();
    let notify =
        move |ts: &[Transition]| webhook::deliveries_for_transitions(&hooks, ts, now.unix_timestamp());
    respond(
        blocking(move || {
            Ok(s.store.change_risk(
                id,
                |e| accept(e, &b.approver, &b.justification, expires, &policy, now),
                notify,
            )?)
        })
        .await,
    )
}

fn respond(r: Result<Option<Result<crate::register::Transition, RiskError>>, Response>) -> Response {
    match r {
        Ok(Some(Ok(t))) => Json(t.entry).into_response(),
        Ok(Some(Err(e))) => refused(e),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such risk"),
        Err(r) => r,
    }
}
