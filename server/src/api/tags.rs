//! `PUT hosts/{id}/tags` (admin): the host-group tags the server assigns to
//! a host; the policy's scopes decide by them, and by the tags the agent
//! reports, which controls apply.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::extract::{ApiJson, ApiPath};
use super::{HttpState, blocking, error};

use custos_proto::evidence::statement::{MAX_TAGS, is_tag};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TagsBody {
    tags: Vec<String>,
}

pub(super) async fn put(
    State(s): State<HttpState>,
    ApiPath(agent_id): ApiPath<String>,
    ApiJson(b): ApiJson<TagsBody>,
) -> Response {
    if b.tags.len() > MAX_TAGS {
        return error(StatusCode::BAD_REQUEST, &format!("at most {MAX_TAGS} tags"));
    }
    if let Some(bad) = b.tags.iter().find(|t| !is_tag(t)) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("tag {bad:?}: use 1 to 64 lowercase letters, digits, '-', '_' or '.'"),
        );
    }
    let mut tags = b.tags;
    tags.sort();
    tags.dedup();
    let wake = s.reevaluate.clone();
    let stored = tags.clone();
    match blocking(move || Ok(s.store.set_tags(&agent_id, &stored)?)).await {
        Ok(true) => {
            wake.notify_one();
            Json(json!({"tags": tags})).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "no such host"),
        Err(r) => r,
    }
}
