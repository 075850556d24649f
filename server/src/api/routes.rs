//! Every route of the HTTP port in one table: method, path template,
//! handler and who may call it ([`ROUTES`]).
//!
//! The router is folded from the table ([`super::router`]), and the access
//! layer ([`super::access`]) decides each request by the table entry of the
//! route the router matched, so a route cannot be served without saying who
//! may call it, and docs, tests and (later) an OpenAPI document read the
//! same list the server serves.
//!
//! Invariants: each method and path is in the table once; every method but
//! GET is [`Access::Admin`]; only [`Access::Open`] routes lie outside
//! `/api/`, and they are GET.

use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::{
    HttpState, agents, audit_trail, changes, controls, dashboard, exceptions, export, gaps, healthz, hosts,
    log, mappings, policy, records, risks, security_events, tags, webhooks,
};
use crate::store::tokens::ApiRole;

use self::Access::{Admin, AdminOrAuditor, AdminOrViewer, AnyRole, Open};

/// Who may call a route. Writes need [`Access::Admin`] whatever the table
/// says (the access layer checks the method too); the test below holds
/// every write to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token: the health check and the dashboard page, which holds no
    /// data and asks for a token itself.
    Open,
    /// Every valid token; auditors within their window and controls.
    AnyRole,
    /// Admin and viewer tokens: how the service runs (webhook deliveries,
    /// gaps, security events), which is not evidence an audit reads.
    AdminOrViewer,
    /// Admin and auditor tokens: the evidence bundle, which is what an
    /// audit takes away; viewers see states, not bundles.
    AdminOrAuditor,
    /// Admin tokens only: every write, and the audit trail (who read what).
    Admin,
}

impl Access {
    /// Whether a token of `role` may call the route.
    pub fn allows(self, role: ApiRole) -> bool {
        match self {
            Access::Open | Access::AnyRole => true,
            Access::AdminOrViewer => matches!(role, ApiRole::Admin | ApiRole::Viewer),
            Access::AdminOrAuditor => matches!(role, ApiRole::Admin | ApiRole::Auditor),
            Access::Admin => role == ApiRole::Admin,
        }
    }
}

/// One route: a method on a path template, as the router spells it.
pub struct Route {
    pub method: Method,
    /// The path template (`/api/v1/risks/{id}`), which the router reports
    /// as the matched path.
    pub path: &'static str,
    pub access: Access,
    /// The handler for the route's method. A function pointer, because a
    /// handler's type is its own and a table needs one type; the method
    /// comes from [`Route::method`], so the table names it once.
    handler: fn(MethodFilter) -> MethodRouter<HttpState>,
}

impl Route {
    const fn new(
        method: Method,
        path: &'static str,
        access: Access,
        handler: fn(MethodFilter) -> MethodRouter<HttpState>,
    ) -> Self {
        Route { method, path, access, handler }
    }

    /// The route's handler, for its method only: other methods on the path
    /// come from their own entries, or are 405.
    pub(super) fn method_router(&self) -> MethodRouter<HttpState> {
        let filter = MethodFilter::try_from(self.method.clone())
            .unwrap_or_else(|_| panic!("{} {}: not a method the router takes", self.method, self.path));
        (self.handler)(filter)
    }
}

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;

/// Every route the HTTP port serves. What each takes and answers: the
/// handler's doc comment.
pub static ROUTES: &[Route] = &[
    Route::new(GET, "/healthz", Open, |m| on(m, healthz)),
    Route::new(GET, "/", Open, |m| on(m, dashboard)),
    // Hosts and controls: now, or `as_of` a past time.
    Route::new(GET, "/api/v1/hosts", AnyRole, |m| on(m, hosts::list)),
    Route::new(GET, "/api/v1/hosts/{agent_id}", AnyRole, |m| on(m, hosts::one)),
    Route::new(PUT, "/api/v1/hosts/{agent_id}/tags", Admin, |m| on(m, tags::put)),
    Route::new(GET, "/api/v1/controls", AnyRole, |m| on(m, controls::list)),
    Route::new(GET, "/api/v1/effectiveness", AnyRole, |m| on(m, controls::effectiveness)),
    // The rules and mappings in force, and the change log they decide.
    Route::new(GET, "/api/v1/policy", AnyRole, |m| on(m, policy::show)),
    Route::new(POST, "/api/v1/policy/reload", Admin, |m| on(m, policy::reload)),
    Route::new(GET, "/api/v1/mappings", AnyRole, |m| on(m, mappings::list)),
    Route::new(GET, "/api/v1/changes", AnyRole, |m| on(m, changes::list)),
    // The risk register and exceptions.
    Route::new(GET, "/api/v1/risks", AnyRole, |m| on(m, risks::list)),
    Route::new(POST, "/api/v1/risks", Admin, |m| on(m, risks::create)),
    Route::new(GET, "/api/v1/risks/matrix", AnyRole, |m| on(m, risks::matrix)),
    Route::new(GET, "/api/v1/risks/{id}", AnyRole, |m| on(m, risks::one)),
    Route::new(PATCH, "/api/v1/risks/{id}", Admin, |m| on(m, risks::patch)),
    Route::new(POST, "/api/v1/risks/{id}/accept", Admin, |m| on(m, risks::accept_risk)),
    Route::new(GET, "/api/v1/exceptions", AnyRole, |m| on(m, exceptions::list)),
    Route::new(POST, "/api/v1/exceptions", Admin, |m| on(m, exceptions::create)),
    Route::new(POST, "/api/v1/exceptions/{id}/withdraw", Admin, |m| on(m, exceptions::withdraw)),
    // Signed evidence: one record, the transparency log, the bundle.
    Route::new(GET, "/api/v1/records/{agent_id}/{seq}", AnyRole, |m| on(m, records::one)),
    Route::new(GET, "/api/v1/log/checkpoint", AnyRole, |m| on(m, log::checkpoint)),
    Route::new(GET, "/api/v1/log/key", AnyRole, |m| on(m, log::key)),
    Route::new(GET, "/api/v1/log/inclusion", AnyRole, |m| on(m, log::inclusion)),
    Route::new(GET, "/api/v1/log/consistency", AnyRole, |m| on(m, log::consistency)),
    Route::new(GET, "/api/v1/export", AdminOrAuditor, |m| on(m, export::bundle)),
    // How the service runs.
    Route::new(GET, "/api/v1/webhooks/deliveries", AdminOrViewer, |m| on(m, webhooks::deliveries)),
    Route::new(GET, "/api/v1/gaps", AdminOrViewer, |m| on(m, gaps)),
    Route::new(GET, "/api/v1/security-events", AdminOrViewer, |m| on(m, security_events::list)),
    Route::new(GET, "/api/v1/audit-trail", Admin, |m| on(m, audit_trail)),
    Route::new(POST, "/api/v1/agents/{agent_id}/revoke", Admin, |m| on(m, agents::revoke)),
    Route::new(POST, "/api/v1/agents/{agent_id}/collect", Admin, |m| on(m, agents::collect_now)),
];

/// The entry for a request's method on the route the router matched (its
/// path template); HEAD is answered by the GET handler, so it has the GET
/// entry.
pub fn find(method: &Method, path: &str) -> Option<&'static Route> {
    let method = if method == Method::HEAD { &GET } else { method };
    ROUTES.iter().find(|r| r.path == path && r.method == *method)
}

#[cfg(test)]
mod tests {
    //! The table against itself (each route once, every write for admins)
    //! and against the router folded from it: every route answers 401,
    //! 403 or its handler as its entry says, every other method is 405,
    //! and nothing outside the table is served.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use axum::middleware;
    use axum::routing::{get, post};
    use tower::ServiceExt as _;

    use super::*;
    use crate::api::{access, router};
    use crate::compliance::catalog::Catalog;
    use crate::config::Config;
    use crate::identity::registry::AgentRegistry;
    use crate::store::Store;
    use crate::store::tokens::NewApiToken;

    const ROLES: [ApiRole; 3] = [ApiRole::Admin, ApiRole::Viewer, ApiRole::Auditor];

    /// Every write route: method and path template.
    fn writes() -> Vec<(&'static str, &'static str)> {
        ROUTES.iter().filter(|r| r.method != Method::GET).map(|r| (r.method.as_str(), r.path)).collect()
    }

    #[test]
    fn each_route_is_listed_once_and_every_write_is_for_admins() {
        let mut seen = BTreeSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method.as_str(), r.path)), "{} {} is listed twice", r.method, r.path);
            assert!(MethodFilter::try_from(r.method.clone()).is_ok(), "{} {}", r.method, r.path);
            if r.method != Method::GET {
                assert_eq!(r.access, Access::Admin, "{} {}: a write is for admins", r.method, r.path);
            }
            let open = r.access == Access::Open;
            assert_eq!(
                !open,
                r.path.starts_with("/api/v1/"),
                "{} {}: open exactly outside /api/",
                r.method,
                r.path
            );
            assert!(!open || r.method == Method::GET, "{} {}: an open route only reads", r.method, r.path);
        }
        assert_eq!(writes().len(), 9, "{:?}", writes());
        // Today's auditor routes: a change here is a change of who reads what.
        let auditors: Vec<&str> = ROUTES
            .iter()
            .filter(|r| r.access != Access::Open && r.access.allows(ApiRole::Auditor))
            .map(|r| r.path.trim_start_matches("/api/v1/"))
            .collect();
        assert_eq!(
            auditors,
            [
                "hosts",
                "hosts/{agent_id}",
                "controls",
                "effectiveness",
                "policy",
                "mappings",
                "changes",
                "risks",
                "risks/matrix",
                "risks/{id}",
                "exceptions",
                "records/{agent_id}/{seq}",
                "log/checkpoint",
                "log/key",
                "log/inclusion",
                "log/consistency",
                "export"
            ]
        );
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

    /// Status and body of a request without a body, with a bearer token if given.
    async fn call_with(app: &Router, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn call(app: &Router, method: &str, path: &str, token: &str) -> (u16, String) {
        call_with(app, method, path, Some(token)).await
    }

    /// A template's parameters filled with an id no object has.
    fn sample(template: &str) -> String {
        template
            .split('/')
            .map(|seg| if seg.starts_with('{') { "999999999" } else { seg })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Every route, called without a token and with each role's: 401, 403
    /// or the handler's answer, as the entry says; each auditor request is
    /// in the audit trail with its status.
    #[tokio::test]
    async fn every_route_answers_each_role_as_its_entry_says() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let tokens: Vec<(ApiRole, String)> = ROLES.iter().map(|r| (*r, token(&s, *r))).collect();
        let store = Arc::clone(&s.store);
        let app = router(s);
        let mut audited = Vec::new();
        for r in ROUTES {
            let (method, path) = (r.method.as_str(), sample(r.path));
            let (status, body) = call_with(&app, method, &path, None).await;
            if r.access == Access::Open {
                assert_eq!(status, 200, "{method} {path}: {body}");
                continue;
            }
            assert_eq!(status, 401, "{method} {path} without a token: {body}");
            for (role, t) in &tokens {
                let (status, body) = call(&app, method, &path, t).await;
                if r.access.allows(*role) {
                    // The handler answered: not the guard, not the fallback.
                    assert!(
                        ![401, 403, 405].contains(&status) && !body.contains("no such route"),
                        "{role:?}: {method} {path}: {status} {body}"
                    );
                } else {
                    assert_eq!(status, 403, "{role:?}: {method} {path}: {body}");
                }
                if *role == ApiRole::Auditor {
                    audited.push((method.to_string(), path.clone(), status));
                }
            }
        }
        let mut trail: Vec<(String, String, u16)> = store
            .audit_trail(1000)
            .unwrap()
            .into_iter()
            .map(|r| (r.entry.action, r.entry.target, r.entry.status))
            .collect();
        trail.sort();
        audited.sort();
        assert_eq!(trail, audited);
    }

    /// Every method a path has no entry for is 405, admins included, and
    /// before any role is asked.
    #[tokio::test]
    async fn other_methods_are_405_for_every_role() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let tokens: Vec<String> = ROLES.iter().map(|r| token(&s, *r)).collect();
        let app = router(s);
        let paths: BTreeSet<&str> =
            ROUTES.iter().filter(|r| r.access != Access::Open).map(|r| r.path).collect();
        let mut checked = 0;
        for path in paths {
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                if ROUTES.iter().any(|r| r.path == path && r.method == method) {
                    continue;
                }
                for t in &tokens {
                    let (status, body) = call(&app, method, &sample(path), t).await;
                    assert_eq!(status, 405, "{method} {path}: {body}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} requests checked");
        assert_eq!(call(&app, "DELETE", "/api/v1/risks/1", &tokens[0]).await.0, 405);
        assert_eq!(call(&app, "POST", "/api/v1/hosts", &tokens[0]).await.0, 405);
    }

    #[tokio::test]
    async fn listed_writes_reach_their_handler_for_admins_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let (admin, auditor, viewer) =
            (token(&s, ApiRole::Admin), token(&s, ApiRole::Auditor), token(&s, ApiRole::Viewer));
        let store = Arc::clone(&s.store);
        let app = router(s);
        for (method, template) in writes() {
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
            writes().iter().map(|(m, t)| (m.to_string(), sample(t), 403)).collect();
        want.sort();
        assert_eq!(seen, want);
        // Methods a route does not take are 405, admins included.
        assert_eq!(call(&app, "DELETE", "/api/v1/risks/1", &admin).await.0, 405);
        assert_eq!(call(&app, "POST", "/api/v1/hosts", &admin).await.0, 405);
    }

    /// A router with one route the table does not have, behind the access
    /// layer, and a flag its handler sets.
    fn unlisted(s: HttpState, route: MethodRouter<HttpState>) -> Router {
        Router::new()
            .route("/api/v1/unlisted/{id}", route)
            .route_layer(middleware::from_fn_with_state(s.clone(), access::require_token))
            .with_state(s)
    }

    #[tokio::test]
    async fn an_unlisted_write_route_is_not_served_even_to_admins() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let admin = token(&s, ApiRole::Admin);
        let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&served);
        let app = unlisted(
            s,
            post(move || async move {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                "written"
            }),
        );
        let (status, body) = call(&app, "POST", "/api/v1/unlisted/1", &admin).await;
        assert_eq!(status, 405, "{body}");
        assert!(!served.load(std::sync::atomic::Ordering::SeqCst), "the unlisted handler ran");
    }

    #[tokio::test]
    async fn an_unlisted_read_route_is_not_served_either() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let (admin, auditor) = (token(&s, ApiRole::Admin), token(&s, ApiRole::Auditor));
        let app = unlisted(s, get(|| async { "read" }));
        for t in [&admin, &auditor] {
            let (status, body) = call(&app, "GET", "/api/v1/unlisted/1", t).await;
            assert_eq!(status, 405, "{body}");
        }
    }
}
