//! `expected.toml`: what each check of a recorded host must report, how a
//! finding is compared with it, and how an expectation is brought up to date
//! with a finding (blessing, `UPDATE_EXPECT=1` in `agent/tests/cases.rs`).

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

    /// This expectation changed only as far as `got` contradicts it, so that
    /// a blessed case reviews as a small diff: the status becomes the observed
    /// one, a backend that was pinned becomes the observed one, each reason
    /// fragment that still matches stays and each that no longer does gives
    /// way to the whole observed reason (once), and each listed fact takes its
    /// observed value or, gone from the finding, is dropped. Nothing that was
    /// not asserted before is added.
    pub fn blessed(&self, got: &custos_proto::evidence::CheckResult) -> ExpectedCheck {
        let reason = got.reason.as_deref().unwrap_or("");
        let mut reason_contains: Vec<String> = Vec::new();
        for want in &self.reason_contains {
            if reason.contains(want.as_str()) {
                reason_contains.push(want.clone());
            } else if !reason.is_empty() && !reason_contains.iter().any(|r| r == reason) {
                reason_contains.push(reason.to_string());
            }
        }
        let facts = self
            .facts
            .iter()
            .filter_map(|(k, want)| match got.facts.get(k) {
                // Kept as written: `1` and `1.0` are equal here and a rewrite would be noise.
                Some(v) if facts_equal(v, want) => Some((k.clone(), want.clone())),
                // TOML cannot state null: a fact that became null is one that is gone.
                Some(v) if !v.is_null() => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect();
        ExpectedCheck {
            status: got.status.as_str().to_string(),
            backend: self.backend.as_ref().map(|_| got.backend.clone()),
            reason_contains,
            facts,
        }
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

#[cfg(test)]
mod tests {
    use custos_proto::evidence::{CheckResult, CheckStatus, Observation};
    use serde_json::json;

    use super::*;

    fn finding(status: CheckStatus, reason: Option<&str>, facts: serde_json::Value) -> CheckResult {
        CheckResult {
            id: "firewall".into(),
            status,
            backend: "nftables".into(),
            facts: facts.as_object().unwrap().clone(),
            observation: Observation::default(),
            reason: reason.map(str::to_string),
        }
    }

    fn expectation(toml: &str) -> ExpectedCheck {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn an_expectation_that_holds_is_blessed_unchanged() {
        let want = expectation(
            "status = \"fail\"\nbackend = \"nftables\"\nreason_contains = [\"drops nothing\"]\n\
             [facts]\nrules = 3\nratio = 1\n",
        );
        let got = finding(
            CheckStatus::Fail,
            Some("the input hook drops nothing"),
            json!({"rules": 3, "ratio": 1.0, "unlisted": true}),
        );
        assert!(want.mismatches(&got).is_empty());
        assert_eq!(want.blessed(&got), want);
    }

    #[test]
    fn status_and_a_pinned_backend_follow_the_finding() {
        let got = finding(CheckStatus::Pass, None, json!({}));
        let mut moved = finding(CheckStatus::Pass, None, json!({}));
        moved.backend = "iptables".into();
        let pinned = expectation("status = \"fail\"\nbackend = \"nftables\"\n");
        assert_eq!(pinned.blessed(&moved), expectation("status = \"pass\"\nbackend = \"iptables\"\n"));
        let unpinned = expectation("status = \"unknown\"\n");
        assert_eq!(unpinned.blessed(&moved), expectation("status = \"pass\"\n"));
        assert_eq!(unpinned.blessed(&got).backend, None);
    }

    #[test]
    fn reason_fragments_that_still_match_stay_and_the_rest_become_the_reason_once() {
        let want = expectation("status = \"fail\"\nreason_contains = [\"tcp/22\", \"tcp/23\", \"udp/53\"]\n");
        let got = finding(CheckStatus::Fail, Some("open: tcp/22 from any"), json!({}));
        let blessed = want.blessed(&got);
        assert_eq!(blessed.reason_contains, ["tcp/22", "open: tcp/22 from any"]);
        assert!(blessed.mismatches(&got).is_empty());
        let silent = finding(CheckStatus::Pass, None, json!({}));
        assert!(want.blessed(&silent).reason_contains.is_empty(), "no reason, nothing to contain");
    }

    #[test]
    fn listed_facts_take_observed_values_and_vanished_ones_are_dropped() {
        let want =
            expectation("status = \"pass\"\n[facts]\nrules = 3\ngone = true\nnulled = 1\nkeep = \"a\"\n");
        let got = finding(
            CheckStatus::Pass,
            None,
            json!({"rules": 5, "nulled": null, "keep": "a", "unlisted": [1, 2]}),
        );
        let blessed = want.blessed(&got);
        assert_eq!(blessed.facts, *json!({"rules": 5, "keep": "a"}).as_object().unwrap());
        assert!(blessed.mismatches(&got).is_empty());
    }
}
