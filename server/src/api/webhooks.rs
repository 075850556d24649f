//! `GET webhooks/deliveries`: the delivery log (newest first), each
//! delivery with its attempts.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::extract::{ApiQuery, Params};
use super::{HttpState, blocking, error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<usize>,
}

impl Params for DeliveriesQuery {
    const ALLOWED: &'static str = "status, limit";
}

pub(super) async fn deliveries(
    State(s): State<HttpState>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Response {
    let status = match q.status.as_deref().map(str::parse).transpose() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("status: {e}")),
    };
    let limit = q.limit.unwrap_or(100).min(1000);
    match blocking(move || Ok(s.store.webhook_deliveries(limit, status)?)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}
