//! `expected.toml`: what each check of a recorded host must report, and how
//! a finding is compared with it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::RecordingError;

/// `expected.toml`: what each check must report for a case.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    #[serde(default)]
    pub checks: BTreeMap<String, ExpectedCheck>,
}

/// The expectation for one check: exact status, and optionally the backend,
/// text the reason must contain, and facts that must have exactly these values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCheck {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reason_contains: Vec<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub facts: serde_json::Map<String, serde_json::Value>,
}

impl Expected {
    pub fn load(path: &Path) -> Result<Expected, RecordingError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RecordingError::Io { path: path.to_path_buf(), message: e.to_string() })?;
        toml::from_str(&text)
            .map_err(|e| RecordingError::Format { path: path.to_path_buf(), message: e.to_string() })
    }

    /// A snapshot of what was observed (status, backend, reason and scalar
    /// facts), for a person to review before it becomes a test.
    pub fn snapshot(results: &[custos_proto::evidence::CheckResult]) -> Expected {
        let checks = results
            .iter()
            .map(|r| {
                let facts = r
                    .facts
                    .iter()
                    .filter(|(_, v)| !v.is_array() && !v.is_object() && !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let check = ExpectedCheck {
                    status: r.status.as_str().to_string(),
                    backend: Some(r.backend.clone()),
                    reason_contains: r.reason.iter().cloned().collect(),
                    facts,
                };
                (r.id.clone(), check)
            })
            .collect();
        Expected { checks }
    }
}

impl ExpectedCheck {
    /// What differs between the expectation and a finding (empty: it holds).
    pub fn mismatches(&self, got: &custos_proto::evidence::CheckResult) -> Vec<String> {
        let mut out = Vec::new();
        if got.status.as_str() != self.status {
            out.push(format!("status {} (want {})", got.status.as_str(), self.status));
        }
        if let Some(b) = &self.backend
            && &got.backend != b
        {
            out.push(format!("backend {:?} (want {b:?})", got.backend));
        }
        let reason = got.reason.as_deref().unwrap_or("");
        for want in &self.reason_contains {
            if !reason.contains(want.as_str()) {
                out.push(format!("reason {reason:?} lacks {want:?}"));
            }
        }
        for (k, want) in &self.facts {
            match got.facts.get(k) {
                Some(v) if facts_equal(v, want) => {}
                Some(v) => out.push(format!("fact {k} = {v} (want {want})")),
                None => out.push(format!("fact {k} missing (want {want})")),
            }
        }
        out
    }
}

/// TOML has no null and one number type per literal: compare integers and
/// floats by value.
fn facts_equal(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    match (got.as_f64(), want.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        _ => got == want,
    }
}
