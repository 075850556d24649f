//! The HTTP API (JSON, bearer token) and the dashboard.
//!
//! The routes, with who may call each, are the table in [`routes`]; the
//! router is folded from it, so it is the one list. What a route takes and
//! answers: its handler's module (e.g. [`risks`], [`log`], [`security_events`]).
//!
//! Every answer carries the security headers of [`headers`]
//! (Content-Security-Policy, `X-Frame-Options`, `X-Content-Type-Options`,
//! `Referrer-Policy`).
//!
//! Invariants: every `/api/` route answers 401 without a valid token, and
//! roles and auditor limits are enforced in one place ([`access`], by the
//! matched route's table entry); tokens are compared by hash; query
//! parameters are allow-listed, never spliced into SQL.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use time::OffsetDateTime;

use crate::compliance::catalog::Catalog;
use crate::config::Config;
use crate::identity::registry::AgentRegistry;
use crate::store::Store;

mod access;
mod agents;
mod changes;
mod controls;
mod errors;
mod exceptions;
mod export;
mod extract;
mod headers;
mod hosts;
mod log;
mod mappings;
mod policy;
mod records;
mod risks;
pub mod routes;
mod security_events;
pub mod serve;
mod tags;
pub mod views;
mod webhooks;

#[derive(Clone)]
pub struct HttpState {
    pub store: Arc<Store>,
    pub config: Config,
    /// The catalog with its mappings (the keeper takes up changed files).
    pub catalog: Arc<crate::datadir::reload::Reloadable<Catalog>>,
    pub agents: Arc<AgentRegistry>,
    /// Wakes the risk keeper after a change that moves the evaluation.
    pub reevaluate: Arc<tokio::sync::Notify>,
    /// The policy in force (the keeper takes up changes to its file).
    pub policy: Arc<crate::datadir::reload::Reloadable<crate::compliance::policy::Policy>>,
    pub data_dir: std::path::PathBuf,
    /// The transparency log's verifier key (Go note format).
    pub log_key: String,
    /// The fleet's decided evidence, shared with the keeper.
    pub fleet: Arc<crate::keeper::fleet::Fleet>,
}

/// The router: every route of [`routes::ROUTES`], those behind a token
/// under the access layer; anything else is a JSON 404.
pub fn router(state: HttpState) -> Router {
    let (open, api) = routes::ROUTES.iter().fold((Router::new(), Router::new()), |(open, api), r| {
        if r.access == routes::Access::Open {
            (open.route(r.path, r.method_router()), api)
        } else {
            (open, api.route(r.path, r.method_router()))
        }
    });
    // A route layer: it runs only for a matched route, which it then finds
    // in the table by the router's path template.
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), access::require_token));
    open.merge(api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn(errors::as_json))
        .layer(middleware::from_fn(headers::add))
        .with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "API request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the server log")
}

/// Runs a blocking store read off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(e)),
    }
}

/// Field `name` as an RFC 3339 time; the error says what is expected.
fn rfc3339(name: &str, text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{name} must be an RFC 3339 time such as 2026-11-23T12:00:00Z"))
}

/// Query parameter `name` as an RFC 3339 time, not in the future; the error
/// says why not.
fn parse_time(
    name: &str,
    value: Option<&str>,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, String> {
    let Some(text) = value else { return Ok(None) };
    let t = rfc3339(name, text)?;
    if t > now {
        return Err(format!("{name} lies in the future"));
    }
    Ok(Some(t))
}

/// `GET audit-trail` (admin only): who read what, newest first.
async fn audit_trail(State(s): State<HttpState>) -> Response {
    match blocking(move || Ok(s.store.audit_trail(1000)?)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn gaps(State(s): State<HttpState>) -> Response {
    match blocking(move || Ok(s.store.gaps()?)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn dashboard() -> Html<&'static str> {
    Html(headers::DASHBOARD)
}
