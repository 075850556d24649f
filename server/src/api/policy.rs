//! `GET policy`: the policy in force (version, parameters, rules with the
//! file and line they come from, scopes), the mapping version, and why the
//! policy file on disk was rejected, if it was. `POST policy/reload`
//! (admin): take up the data dir's `policy.toml` and `mappings.toml` now
//! rather than at the keeper's next pass.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use axum::http::StatusCode;
use time::OffsetDateTime;

use super::{HttpState, blocking};
use crate::datadir;

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
        "mapping_version": s.catalog.current().mapping_version(),
        "rejected_mappings_error": s.catalog.last_error(),
        "params": p.params(),
        "rules": rules,
        "scopes": p.scopes(),
        "rejected_file_error": s.policy.last_error(),
    }))
    .into_response()
}

pub(super) async fn reload(State(s): State<HttpState>) -> Response {
    let (policy, catalog, dir, store) =
        (s.policy.clone(), s.catalog.clone(), s.data_dir.clone(), s.store.clone());
    let outcome = blocking(move || {
        let now = OffsetDateTime::now_utc();
        Ok((
            datadir::refresh_policy(&policy, &dir, &store, now),
            datadir::refresh_catalog(&catalog, &dir, &store, now),
        ))
    })
    .await;
    let version = s.policy.current().version().to_string();
    let mapping_version = s.catalog.current().mapping_version().to_string();
    match outcome {
        Ok((Ok(p), Ok(m))) => {
            if p || m {
                s.reevaluate.notify_one();
            }
            Json(json!({"version": version, "mapping_version": mapping_version, "changed": p || m}))
                .into_response()
        }
        Ok((p, m)) => {
            let errors: Vec<String> = [p.err().map(|e| e.to_string()), m.err().map(|e| e.to_string())]
                .into_iter()
                .flatten()
                .collect();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "error": errors.join("; "),
                    "version_in_force": version,
                    "mapping_version_in_force": mapping_version,
                })),
            )
                .into_response()
        }
        Err(r) => r,
    }
}
