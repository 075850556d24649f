//! The HTTP API (JSON, bearer token) and the dashboard.
//!
//! Routes: `GET /healthz` (open), `GET /` (dashboard page, open: it holds no
//! data and asks for a token), and under `/api/v1/` (bearer token required):
//! `GET hosts`, `hosts/{id}`, `controls` (both with `as_of=<RFC 3339>` for
//! the state at a past time, read from the signed records), `risks`,
//! `effectiveness?control=ID&from=T1[&to=T2][&points=N]` (a control's
//! effectiveness over time), `gaps`, `security-events` (aggregated, paged and
//! filtered, see [`security_events`]); the risk register
//! (`risks` with filters and `format=csv`, `risks/{id}` with its history,
//! `risks/matrix`; admin: `POST risks`, `PATCH risks/{id}`,
//! `POST risks/{id}/accept`, see [`risks`]); per-host exceptions
//! (`exceptions`; admin: `POST exceptions`, `POST exceptions/{id}/withdraw`);
//! `policy` (the rules in force), `changes` (the per-requirement change
//! log), `records/{agent}/{seq}` (a signed record as a DSSE envelope),
//! `webhooks/deliveries`; the transparency log (`log/checkpoint`,
//! `log/key`, `log/inclusion`, `log/consistency`, see [`log`]); admin `PUT hosts/{id}/tags`; and
//! `POST agents/{id}/revoke` and `POST agents/{id}/collect` (ask the agent
//! for a fresh collection at its next policy poll) for admin tokens only;
//! read tokens get 403.
//!
//! Every answer carries the security headers of [`headers`]
//! (Content-Security-Policy, `X-Frame-Options`, `X-Content-Type-Options`,
//! `Referrer-Policy`).
//!
//! Invariants: every `/api/` route answers 401 without a valid token, and
//! roles and auditor limits are enforced in one place ([`access`]); tokens
//! are compared by hash; query parameters are allow-listed, never spliced
//! into SQL.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
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
mod headers;
mod hosts;
mod log;
mod mappings;
mod policy;
mod records;
mod risks;
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

/// Every read route; the authentication test enumerates this list.
pub const API_ROUTES: &[&str] = &[
    "/api/v1/hosts",
    "/api/v1/hosts/0123456789abcdef0123456789abcdef",
    "/api/v1/controls",
    "/api/v1/effectiveness?control=iso27001:2022/A.8.20&from=2026-01-01T00:00:00Z&points=2",
    "/api/v1/risks",
    "/api/v1/risks?status=all&format=csv",
    "/api/v1/risks/matrix",
    "/api/v1/exceptions",
    "/api/v1/policy",
    "/api/v1/mappings",
    "/api/v1/changes",
    "/api/v1/records/0123456789abcdef0123456789abcdef/1",
    "/api/v1/webhooks/deliveries",
    "/api/v1/audit-trail",
    "/api/v1/log/key",
    "/api/v1/log/consistency?from=0&to=0",
    "/api/v1/gaps",
    "/api/v1/security-events",
];
/// Every write route (any method but GET): method and path template
/// exactly as routed below. Admin tokens only. The list is complete by
/// construction: [`access::require_token`] answers 405 to any other
/// non-read request, admins included, so a write route added to the router
/// is not served until it is listed here; the unit test below checks the
/// router against the list, and `tests/tests/auditor_access.rs` sends every
/// entry with auditor and viewer tokens.
pub const WRITE_ROUTES: &[(&str, &str)] = &[
    ("PUT", "/api/v1/hosts/{agent_id}/tags"),
    ("POST", "/api/v1/policy/reload"),
    ("POST", "/api/v1/risks"),
    ("PATCH", "/api/v1/risks/{id}"),
    ("POST", "/api/v1/risks/{id}/accept"),
    ("POST", "/api/v1/exceptions"),
    ("POST", "/api/v1/exceptions/{id}/withdraw"),
    ("POST", "/api/v1/agents/{agent_id}/revoke"),
    ("POST", "/api/v1/agents/{agent_id}/collect"),
];

pub fn router(state: HttpState) -> Router {
    let api = Router::new()
        .route("/api/v1/hosts", get(hosts::list))
        .route("/api/v1/hosts/{agent_id}", get(hosts::one))
        .route("/api/v1/hosts/{agent_id}/tags", axum::routing::put(tags::put))
        .route("/api/v1/policy", get(policy::show))
        .route("/api/v1/mappings", get(mappings::list))
        .route("/api/v1/policy/reload", post(policy::reload))
        .route("/api/v1/changes", get(changes::list))
        .route("/api/v1/log/checkpoint", get(log::checkpoint))
        .route("/api/v1/log/key", get(log::key))
        .route("/api/v1/log/inclusion", get(log::inclusion))
        .route("/api/v1/log/consistency", get(log::consistency))
        .route("/api/v1/records/{agent_id}/{seq}", get(records::one))
        .route("/api/v1/webhooks/deliveries", get(webhooks::deliveries))
        .route("/api/v1/controls", get(controls::list))
        .route("/api/v1/effectiveness", get(controls::effectiveness))
        .route("/api/v1/export", get(export::bundle))
        .route("/api/v1/risks", get(risks::list).post(risks::create))
        .route("/api/v1/risks/matrix", get(risks::matrix))
        .route("/api/v1/risks/{id}", get(risks::one).patch(risks::patch))
        .route("/api/v1/risks/{id}/accept", post(risks::accept_risk))
        .route("/api/v1/exceptions", get(exceptions::list).post(exceptions::create))
        .route("/api/v1/exceptions/{id}/withdraw", post(exceptions::withdraw))
        .route("/api/v1/gaps", get(gaps))
        .route("/api/v1/security-events", get(security_events::list))
        .route("/api/v1/agents/{agent_id}/revoke", post(agents::revoke))
        .route("/api/v1/agents/{agent_id}/collect", post(agents::collect_now))
        .route("/api/v1/audit-trail", get(audit_trail))
        .route_layer(middleware::from_fn_with_state(state.clone(), access::require_token));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/", get(dashboard))
        .merge(api)
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
async fn audit_trail(
    State(s): State<HttpState>,
    caller: axum::Extension<crate::store::tokens::Caller>,
) -> Response {
    if caller.role != crate::store::tokens::ApiRole::Admin {
        return error(StatusCode::FORBIDDEN, "the audit trail is for admin tokens");
    }
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

async fn dashboard() -> Html<&'static str> {
    Html(headers::DASHBOARD)
}

#[cfg(test)]
mod tests {
    //! [`WRITE_ROUTES`] against the router: every write the router has is
    //! listed, everything listed is routed, and an unlisted write is never
    //! served.

    use std::collections::BTreeSet;

    use axum::body::{Body, to_bytes};
    use axum::http::{Method, Request};
    use tower::ServiceExt as _;

    use super::*;
    use crate::store::tokens::{ApiRole, NewApiToken};

    /// The method and path template of every non-GET route registered in
    /// [`router`], read from this file's source: the router cannot be asked.
    fn routed_writes() -> BTreeSet<(String, String)> {
        let src = include_str!("mod.rs");
        let start = src.find("pub fn router(").expect("the router function");
        let body = &src[start..start + src[start..].find("\n}\n").expect("its end")];
        for other in [".nest(", ".route_service(", ".nest_service("] {
            assert!(!body.contains(other), "{other} routes are not checked here; list them in WRITE_ROUTES");
        }
        let mut out = BTreeSet::new();
        for call in body.split(".route(").skip(1) {
            let (path, method_router) = call
                .trim_start()
                .strip_prefix('"')
                .and_then(|rest| rest.split_once('"'))
                .unwrap_or_else(|| panic!("a route path that is not a string literal: {call}"));
            // `put(`, not `output(`: the name must start an identifier.
            let calls = |name: &str| {
                method_router
                    .match_indices(name)
                    .any(|(i, _)| !method_router[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
            };
            for unknown in ["any(", "on(", "MethodFilter"] {
                assert!(
                    !calls(unknown),
                    "{path}: {unknown} is not understood here; use get/post/put/patch/delete"
                );
            }
            for (name, method) in
                [("post(", "POST"), ("put(", "PUT"), ("patch(", "PATCH"), ("delete(", "DELETE")]
            {
                if calls(name) {
                    out.insert((method.to_string(), path.to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn every_routed_write_is_listed_and_every_listed_write_is_routed() {
        let listed: BTreeSet<(String, String)> =
            WRITE_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        assert_eq!(listed.len(), WRITE_ROUTES.len(), "WRITE_ROUTES lists a route twice");
        let routed = routed_writes();
        assert!(routed.len() >= 9, "the source scan found too few writes: {routed:?}");
        assert_eq!(routed, listed, "the router's writes and WRITE_ROUTES differ");
    }

    /// A server's HTTP state over a fresh data dir.
    fn state(dir: &std::path::Path) -> HttpState {
        let store = Arc::new(Store::open(&dir.join("custos.db")).unwrap());
        HttpState {
            store: Arc::clone(&store),
            config: Config::default(),
            catalog: Arc::new(crate::datadir::reload::Reloadable::new(
                Catalog::builtin().unwrap(),
                Vec::new(),
            )),
            agents: Arc::new(AgentRegistry::new(store)),
            reevaluate: Arc::new(tokio::sync::Notify::new()),
            policy: Arc::new(crate::datadir::reload::Reloadable::new(
                crate::compliance::policy::Policy::builtin().unwrap(),
                Vec::new(),
            )),
            data_dir: dir.to_path_buf(),
            log_key: String::new(),
            fleet: Arc::new(crate::keeper::fleet::Fleet::new()),
        }
    }

    fn token(s: &HttpState, role: ApiRole) -> String {
        let t = crate::identity::secrets::new_token("ctest");
        s.store
            .create_api_token(&crate::identity::secrets::token_hash(&t), &NewApiToken::new(role, "t"), 0)
            .unwrap();
        t
    }

    async fn call(app: &Router, method: &str, path: &str, token: &str) -> (u16, String) {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A template's parameters filled with an id no object has.
    fn sample(template: &str) -> String {
        template
            .split('/')
            .map(|seg| if seg.starts_with('{') { "999999999" } else { seg })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[tokio::test]
    async fn listed_writes_reach_their_handler_for_admins_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let (admin, auditor, viewer) =
            (token(&s, ApiRole::Admin), token(&s, ApiRole::Auditor), token(&s, ApiRole::Viewer));
        let store = Arc::clone(&s.store);
        let app = router(s);
        for (method, template) in WRITE_ROUTES {
            let path = sample(template);
            let (status, body) = call(&app, method, &path, &admin).await;
            // The handler answered (400 for the empty body, 404 for the
            // missing object, 200 for the reload): not the guard, not the fallback.
            assert!(status != 405 && !body.contains("no such route"), "{method} {template}: {status} {body}");
            for t in [&auditor, &viewer] {
                let (status, body) = call(&app, method, &path, t).await;
                assert_eq!(status, 403, "{method} {template}: {body}");
                assert!(body.contains("may only read"), "{body}");
            }
        }
        // The auditor's refused writes are in the audit trail, each as refused.
        let trail = store.audit_trail(1000).unwrap();
        let mut seen: Vec<(String, String, u16)> =
            trail.iter().map(|r| (r.entry.action.clone(), r.entry.target.clone(), r.entry.status)).collect();
        seen.sort();
        let mut want: Vec<(String, String, u16)> =
            WRITE_ROUTES.iter().map(|(m, t)| (m.to_string(), sample(t), 403)).collect();
        want.sort();
        assert_eq!(seen, want);
        // Methods a route does not take are 405, admins included.
        assert_eq!(call(&app, "DELETE", "/api/v1/risks/1", &admin).await.0, 405);
        assert_eq!(call(&app, "POST", "/api/v1/hosts", &admin).await.0, 405);
    }

    #[tokio::test]
    async fn an_unlisted_write_route_is_not_served_even_to_admins() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let admin = token(&s, ApiRole::Admin);
        let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&served);
        let app: Router = Router::new()
            .route(
                "/api/v1/unlisted/{id}",
                post(move || async move {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    "written"
                }),
            )
            .route_layer(middleware::from_fn_with_state(s.clone(), access::require_token))
            .with_state(s);
        let (status, body) = call(&app, "POST", "/api/v1/unlisted/1", &admin).await;
        assert_eq!(status, 405, "{body}");
        assert!(!served.load(std::sync::atomic::Ordering::SeqCst), "the unlisted handler ran");
    }
}
