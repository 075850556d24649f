//! Who may see what, enforced for every `/api/` route in one place, by the
//! entry of [`super::routes::ROUTES`] for the route the router matched
//! (method and path template).
//!
//! - Every route needs a valid, unexpired bearer token (401 otherwise).
//! - A request whose method and route have no entry is 405, whatever the
//!   role (HEAD has the GET entry), so nothing the table does not list is
//!   served.
//! - Any method but GET needs the admin role (403 "this token may only
//!   read" otherwise), whatever the entry says.
//! - The entry's [`Access`] names the roles that may call the route (403
//!   otherwise); auditors read only the [`Access::AnyRole`] and
//!   [`Access::AdminOrAuditor`] routes.
//! - When an auditor's token is limited to a window of evidence time,
//!   every time a request names (`as_of`, `from`, `to`) must lie inside it,
//!   and a request naming none is answered as of the window's end; when
//!   limited to a set of controls, answers are cut down to those controls
//!   (other controls, risks and change-log rows are left out; naming one
//!   directly is 403; exports, whose signed records cannot be cut down, are
//!   refused).
//! - Every request an auditor makes is kept in the audit trail (who, when,
//!   what, and the answer's status), refused ones too.
//!
//! Invariant: a route added to the table is refused to auditors unless its
//! entry names them.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::routes::{self, Access, Route};
use super::{HttpState, error, internal};
use crate::identity::secrets::token_hash;
use crate::store::tokens::{ApiRole, AuditEntry, Caller};

/// The largest answer body that is cut down to an auditor's controls.
const MAX_FILTERED_BODY: usize = 64 * 1024 * 1024;

pub(super) async fn require_token(State(state): State<HttpState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // RFC 9110 11.1: the scheme is case-insensitive.
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = presented else {
        return unauthorized("missing bearer token");
    };
    let store = Arc::clone(&state.store);
    let hash = token_hash(token);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let caller = match tokio::task::spawn_blocking(move || store.api_caller(&hash, now)).await {
        Ok(Ok(Some(c))) => c,
        Ok(Ok(None)) => return unauthorized("invalid or expired token"),
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let route = req.extensions().get::<MatchedPath>().and_then(|p| routes::find(req.method(), p.as_str()));
    let refused = refusal(req.method(), route, caller.role);
    req.extensions_mut().insert(caller.clone());
    if caller.role != ApiRole::Auditor {
        return match refused {
            Some(r) => r,
            None => next.run(req).await,
        };
    }
    // An auditor's refused write is on record too: the trail is every request.
    let action = req.method().to_string();
    let target = req.uri().path_and_query().map_or_else(String::new, |p| p.as_str().to_string());
    let response = match (refused, auditor_request(&caller, req.uri(), now)) {
        (Some(r), _) => r,
        (None, Err((status, why))) => error(status, &why),
        (None, Ok(uri)) => {
            *req.uri_mut() = uri;
            let path = req.uri().path().to_string();
            let response = next.run(req).await;
            cut_to_controls(&caller, &path, response).await
        }
    };
    let row = AuditEntry {
        at: now,
        token_id: caller.token_id,
        name: caller.name.clone(),
        action,
        target,
        status: response.status().as_u16(),
    };
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || store.record_audit(&row)).await {
        Ok(Ok(_)) => response,
        // An auditor's read that cannot be recorded is not served.
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// Why a caller of `role` may not have `method` served on the matched
/// route, whose table entry is `route`; `None` if they may.
fn refusal(method: &Method, route: Option<&Route>, role: ApiRole) -> Option<Response> {
    let Some(route) = route else {
        return Some(error(StatusCode::METHOD_NOT_ALLOWED, "this route does not take this method"));
    };
    // Reads are GET only: a write is refused to read roles before the
    // entry is asked, so a write listed with a read access is not served.
    if method != Method::GET && role != ApiRole::Admin {
        return Some(error(StatusCode::FORBIDDEN, "this token may only read"));
    }
    let why = match role {
        _ if route.access.allows(role) => return None,
        ApiRole::Auditor => "auditor tokens may not read this route",
        _ if route.access == Access::Admin => "this route is for admin tokens",
        _ => "viewer tokens may not read this route",
    };
    Some(error(StatusCode::FORBIDDEN, why))
}

fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// A window end as a query value: RFC 3339, or the bare number, which the
/// route then refuses as it refuses any other time it cannot read.
fn rfc3339(t: i64) -> String {
    custos_proto::time::unix_rfc3339(t).unwrap_or_else(|| t.to_string())
}

/// Checks an auditor's request against the token's limits and returns the
/// URI to serve (with the window's end filled in where no time is named).
fn auditor_request(caller: &Caller, uri: &Uri, now: i64) -> Result<Uri, (StatusCode, String)> {
    let path = uri.path();
    let route = path.strip_prefix("/api/v1/").unwrap_or("");
    let first = route.split('/').next().unwrap_or("");
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    // Signed records carry every check and cannot be cut down to controls.
    if first == "export" && !caller.controls.is_empty() {
        return Err((
            StatusCode::FORBIDDEN,
            "signed records carry every check; a token limited to controls cannot export them".to_string(),
        ));
    }
    // Every control named directly must be one the auditor may see.
    if pairs.iter().any(|(k, c)| k == "control" && !caller.may_see_control(c)) {
        return Err((
            StatusCode::FORBIDDEN,
            "this control is outside the auditor token's controls".to_string(),
        ));
    }
    if let Some((from, to)) = caller.window {
        for (k, v) in &pairs {
            if matches!(k.as_str(), "as_of" | "from" | "to") {
                let t = OffsetDateTime::parse(v, &Rfc3339)
                    .map_err(|_| (StatusCode::BAD_REQUEST, format!("{k} must be an RFC 3339 time")))?
                    .unix_timestamp();
                if t < from || t > to {
                    return Err((
                        StatusCode::FORBIDDEN,
                        format!(
                            "{k} lies outside the auditor token's window ({} to {})",
                            rfc3339(from),
                            rfc3339(to)
                        ),
                    ));
                }
            }
        }
        let end = to.min(now);
        let named: Vec<String> = pairs.iter().map(|(n, _)| n.clone()).collect();
        let has = |k: &str| named.iter().any(|n| n == k);
        match first {
            "hosts" | "controls" if !has("as_of") => pairs.push(("as_of".into(), rfc3339(end))),
            "effectiveness" | "changes" | "export" => {
                if !has("from") {
                    pairs.push(("from".into(), rfc3339(from.min(end))));
                }
                if !has("to") {
                    pairs.push(("to".into(), rfc3339(end)));
                }
            }
            // Risks, exceptions and the policy describe now: outside a window.
            "risks" | "exceptions" | "policy" | "mappings" => {
                return Err((
                    StatusCode::FORBIDDEN,
                    "this route shows the present; a token limited to a window reads controls, hosts, effectiveness, changes, records and the log".to_string(),
                ));
            }
            _ => {}
        }
    }
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
    let pq = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
    pq.parse().map_err(|_| (StatusCode::BAD_REQUEST, "malformed request target".to_string()))
}

/// The collection time a DSSE envelope's statement states.
fn collected_at(envelope: &Value) -> Option<i64> {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str()?).ok()?;
    let st: Value = serde_json::from_slice(&payload).ok()?;
    OffsetDateTime::parse(st["predicate"]["collected_at"].as_str()?, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Leaves out of an answer what lies outside the auditor's controls, and
/// refuses a record collected outside the auditor's window.
async fn cut_to_controls(caller: &Caller, path: &str, response: Response) -> Response {
    let route = path.strip_prefix("/api/v1/").unwrap_or("");
    let needs_window = caller.window.is_some() && route.starts_with("records/");
    if (caller.controls.is_empty() && !needs_window) || !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, MAX_FILTERED_BODY).await {
        Ok(b) => b,
        Err(e) => return internal(e),
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        // Not JSON (the CSV export): refused rather than served unfiltered.
        return error(StatusCode::FORBIDDEN, "a token limited to controls reads JSON answers only");
    };
    if needs_window {
        let (from, to) = caller.window.unwrap_or((i64::MIN, i64::MAX));
        if !collected_at(&v).is_some_and(|t| t >= from && t <= to) {
            return error(StatusCode::FORBIDDEN, "this record lies outside the auditor token's window");
        }
    }
    let allowed = |id: Option<&str>| id.is_some_and(|i| caller.may_see_control(i));
    let first = route.split('/').next().unwrap_or("");
    match first {
        "controls" => {
            if let Some(list) = v.get_mut("controls").and_then(Value::as_array_mut) {
                list.retain(|c| allowed(c["control_id"].as_str()));
            }
            if let Some(list) = v.get_mut("deviations").and_then(Value::as_array_mut) {
                list.retain(|d| allowed(d["control_id"].as_str()));
            }
            if let Some(s) = v.get_mut("summary") {
                *s = Value::Null;
            }
        }
        "risks" if route == "risks" => {
            if let Some(list) = v.as_array_mut() {
                list.retain(|r| allowed(r["requirement"].as_str()));
            }
        }
        "risks" if route != "risks/matrix" && !allowed(v["entry"]["requirement"].as_str()) => {
            return error(StatusCode::FORBIDDEN, "this risk is outside the auditor token's controls");
        }
        "changes" => {
            if let Some(list) = v.as_array_mut() {
                list.retain(|c| allowed(c["requirement"].as_str()));
            }
        }
        "exceptions" => {
            if let Some(list) = v.as_array_mut() {
                list.retain(|e| allowed(e["requirement"].as_str()));
            }
        }
        "hosts" => {
            if let Some(list) = v.get_mut("requirements").and_then(Value::as_array_mut) {
                list.retain(|r| allowed(r["requirement"].as_str()));
            }
        }
        "mappings" => {
            for key in ["mappings", "requirements"] {
                if let Some(list) = v.get_mut(key).and_then(Value::as_array_mut) {
                    list.retain(|m| allowed(m["requirement"].as_str()));
                }
            }
            if let Some(list) = v.get_mut("modules").and_then(Value::as_array_mut) {
                for m in list.iter_mut() {
                    if let Some(reqs) = m.get_mut("requirements").and_then(Value::as_array_mut) {
                        reqs.retain(|r| allowed(r["id"].as_str()));
                    }
                }
                list.retain(|m| m["requirements"].as_array().is_some_and(|r| !r.is_empty()));
            }
        }
        _ => {}
    }
    let mut r = (parts.status, serde_json::to_vec(&v).unwrap_or_default()).into_response();
    *r.headers_mut() = parts.headers;
    r.headers_mut().remove(header::CONTENT_LENGTH);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.map(Body::new)
}
