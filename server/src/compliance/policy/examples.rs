//! Each rule's examples, run at load against the policy the file makes:
//! an example gives facts, the agent's status and what the policy must
//! decide, and may set its own parameters over the policy's.
//!
//! Invariant: an example may only set parameters the policy defines, each
//! of the same kind; one that does not hold refuses the file, naming its
//! line.

use super::*;

impl Policy {
    /// Runs the examples of the rules a file defined against this policy,
    /// each with its own `params` (if any) merged over the policy's.
    pub(super) fn check_examples(&self, path: &Path, examples: &[Example]) -> Result<(), PolicyError> {
        for ex in examples {
            let d = if ex.params.is_empty() {
                self.decide(&ex.check, ex.status, &ex.facts, &ex.host)
            } else {
                self.with_example_params(path, ex)?.decide(&ex.check, ex.status, &ex.facts, &ex.host)
            };
            if d.status != ex.expect {
                let why = d.reason.map(|r| format!(" ({r})")).unwrap_or_default();
                return Err(err(
                    path,
                    Some(ex.line),
                    format!(
                        "example for {} expects {} but the policy decides {}{why}",
                        ex.check, ex.expect, d.status
                    ),
                ));
            }
        }
        Ok(())
    }

    /// This policy's rules with the example's parameters merged over its
    /// own, without scopes (deciding does not read them).
    fn with_example_params(&self, path: &Path, ex: &Example) -> Result<Policy, PolicyError> {
        let mut params = self.inner.params.clone();
        for (name, value) in &ex.params {
            match params.get(name) {
                None => {
                    return Err(err(
                        path,
                        Some(ex.line),
                        format!(
                            "example for {} sets params.{name}, which the policy does not define",
                            ex.check
                        ),
                    ));
                }
                Some(old) if kind(old) != kind(value) => {
                    return Err(err(
                        path,
                        Some(ex.line),
                        format!(
                            "example for {} sets params.{name} to a {}, not a {} like the policy",
                            ex.check,
                            kind(value),
                            kind(old)
                        ),
                    ));
                }
                Some(_) => {}
            }
            params.insert(name.clone(), value.clone());
        }
        Ok(Policy {
            inner: Arc::new(Inner {
                version: self.inner.version.clone(),
                params_cel: map_to_cel(&params),
                params,
                rules: self.inner.rules.clone(),
                scopes: Vec::new(),
                env: Arc::clone(&self.inner.env),
            }),
        })
    }
}
