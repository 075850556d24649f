//! `GET policy`: the policy in force (version, parameters, rules with the
//! file and line they come from, scopes), the mapping version, and why the
//! policy file on disk was rejected, if it was.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::HttpState;

pub(super) async fn show(State(s): State<HttpState>) -> Response {
    let p = s.policy.current();
    let rules: Vec<serde_json::Value> = p
        .rules()
        .map(|r| {
            json!({
                "check": r.check,
                "expr": r.expr,
                "message": r.message,
                "source": r.source.file_name().map(|f| f.to_string_lossy().into_owned()),
                "line": r.line,
            })
        })
        .collect();
    Json(json!({
        "version": p.version(),
        "mapping_version": s.catalog.mapping_version(),
        "params": p.params(),
        "rules": rules,
        "scopes": p.scopes(),
        "rejected_file_error": s.policy.last_error(),
    }))
    .into_response()
}
