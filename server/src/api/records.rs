//! `GET records/{agent}/{seq}`: one signed record exactly as received, as
//! the standard DSSE JSON envelope, so the evidence behind a state or a
//! risk can be fetched and verified with any DSSE tool.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::ApiPath;
use super::{HttpState, blocking, error};

pub(super) async fn one(
    State(s): State<HttpState>,
    ApiPath((agent_id, seq)): ApiPath<(String, u64)>,
) -> Response {
    if !custos_proto::evidence::statement::is_token(&agent_id, 64) {
        return error(StatusCode::BAD_REQUEST, "agent id must be a short token");
    }
    match blocking(move || Ok(s.store.record(&agent_id, seq)?)).await {
        Ok(Some(r)) => {
            let digest = format!("sha256:{}", hex::encode(&r.digest));
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (header::ETAG, format!("\"{digest}\"")),
                ],
                r.envelope_json(),
            )
                .into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such record"),
        Err(r) => r,
    }
}
