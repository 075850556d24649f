//! Request extractors whose refusals are the API's own 400s: a query, body
//! or path value that does not deserialize is answered
//! `{"error": "<what is wrong>"}` before the handler runs, so handlers take
//! checked input and hold no rejection handling of their own.
//!
//! - [`ApiQuery`]: the serde reason and the parameters the route takes
//!   ([`Params::ALLOWED`]), e.g. ``colour: unknown field `colour`,
//!   expected `check` or `framework`; allowed: check, framework``.
//! - [`ApiJson`]: `request body: ` and the framework's reason (a missing
//!   content type, malformed JSON, an unknown or missing field).
//! - [`ApiPath`]: the framework's reason and status (400 for a value that
//!   does not parse).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::error;

/// A request refused before its handler, with the reason.
#[derive(Debug, thiserror::Error)]
pub(super) enum BadRequest {
    /// The query string does not fit the route's parameters.
    #[error("{reason}; allowed: {allowed}")]
    Query { reason: String, allowed: &'static str },
    /// The body is not the JSON the route takes.
    #[error("request body: {0}")]
    Body(String),
    /// A path value does not parse (400), or the route's parameters do not
    /// fit its template (500, a bug).
    #[error("{reason}")]
    Path { status: StatusCode, reason: String },
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        let status = match &self {
            BadRequest::Path { status, .. } => *status,
            BadRequest::Query { .. } | BadRequest::Body(_) => StatusCode::BAD_REQUEST,
        };
        error(status, &self.to_string())
    }
}

impl BadRequest {
    /// The serde reason (with the parameter's name where serde knows it),
    /// without the framework's "Failed to deserialize query string" prefix.
    fn query(e: &QueryRejection, allowed: &'static str) -> Self {
        let reason = std::error::Error::source(e).map_or_else(|| e.body_text(), ToString::to_string);
        BadRequest::Query { reason, allowed }
    }
}

impl From<JsonRejection> for BadRequest {
    fn from(e: JsonRejection) -> Self {
        // Every body refusal is 400, as before the extractor: a client
        // reads one status for "this body is not what the route takes".
        BadRequest::Body(e.body_text())
    }
}

impl From<PathRejection> for BadRequest {
    fn from(e: PathRejection) -> Self {
        BadRequest::Path { status: e.status(), reason: e.body_text() }
    }
}

/// A route's query parameters: the type they deserialize into (with
/// `#[serde(deny_unknown_fields)]`, so a misspelt name is refused rather
/// than ignored) and the list the 400 names.
pub(super) trait Params: DeserializeOwned {
    /// The parameters, as a client reads them: `check, framework`.
    const ALLOWED: &'static str;
}

/// The query string as `T`; a query that does not fit is a 400 naming
/// what is wrong and what the route takes.
pub(super) struct ApiQuery<T>(pub T);

impl<T: Params, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = BadRequest;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, BadRequest> {
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(q)) => Ok(ApiQuery(q)),
            Err(e) => Err(BadRequest::query(&e, T::ALLOWED)),
        }
    }
}

/// The JSON body as `T`; anything else is a 400 with the reason.
pub(super) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = BadRequest;

    async fn from_request(req: Request, state: &S) -> Result<Self, BadRequest> {
        let Json(body) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(body))
    }
}

/// The path's parameters as `T`; a value that does not parse is a 400
/// naming it.
pub(super) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = BadRequest;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, BadRequest> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::routing::{get, post};
    use axum::{Router, http};
    use serde::Deserialize;
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        #[allow(dead_code, reason = "only its parsing is tested")]
        limit: Option<u32>,
    }

    impl Params for Q {
        const ALLOWED: &'static str = "limit";
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct B {
        #[allow(dead_code, reason = "only its parsing is tested")]
        actor: String,
    }

    fn app() -> Router {
        Router::new()
            .route("/q", get(|_: ApiQuery<Q>| async { "ok" }))
            .route("/b", post(|_: ApiJson<B>| async { "ok" }))
            .route("/p/{id}", get(|_: ApiPath<i64>| async { "ok" }))
    }

    async fn answer(req: http::Request<Body>) -> (u16, String) {
        let resp = app().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let kind = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        let body: Value = serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 16).await.unwrap())
            .unwrap_or_else(|e| panic!("{status}: not JSON: {e}"));
        assert_eq!(kind.as_deref(), Some("application/json"));
        (status, body["error"].as_str().unwrap_or_default().to_string())
    }

    fn get_req(uri: &str) -> http::Request<Body> {
        http::Request::get(uri).body(Body::empty()).unwrap()
    }

    fn post_req(body: &str, json: bool) -> http::Request<Body> {
        let mut b = http::Request::post("/b");
        if json {
            b = b.header("content-type", "application/json");
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    #[tokio::test]
    async fn each_refusal_is_a_json_400_with_its_reason() {
        let (status, e) = answer(get_req("/q?colour=blue")).await;
        assert_eq!(status, 400);
        assert!(e.contains("unknown field `colour`") && e.ends_with("; allowed: limit"), "{e}");
        let (status, e) = answer(get_req("/q?limit=x")).await;
        assert_eq!(status, 400);
        assert!(e.starts_with("limit: invalid digit"), "{e}");

        for (body, json, want) in [
            (r#"{"actor": "x", "colour": 1}"#, true, "unknown field `colour`"),
            ("{}", true, "missing field `actor`"),
            ("{", true, "request body: Failed to parse"),
            (r#"{"actor": "x"}"#, false, "Content-Type: application/json"),
        ] {
            let (status, e) = answer(post_req(body, json)).await;
            assert_eq!(status, 400, "{body}");
            assert!(e.starts_with("request body: ") && e.contains(want), "{body}: {e}");
        }

        let (status, e) = answer(get_req("/p/not-a-number")).await;
        assert_eq!(status, 400);
        assert!(e.contains("not-a-number"), "{e}");
    }
}
