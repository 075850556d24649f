//! Which hosts and requirements an export covers: `--host` ids, `--control`
//! ids or prefixes resolved against the catalog, and the seeded sample.
//! Pure.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::ExportError;
use crate::catalog::Catalog;

/// The controls `wanted` names (each an id or an id prefix), in catalog
/// order; every entry must name at least one control with mapped checks.
pub fn resolve_controls(catalog: &Catalog, wanted: &[String]) -> Result<Vec<String>, ExportError> {
    let mut out = BTreeSet::new();
    for w in wanted {
        let hits: Vec<&str> = catalog
            .controls()
            .iter()
            .filter(|c| {
                (c.id == *w || c.id.starts_with(w.as_str())) && !catalog.checks_for_control(&c.id).is_empty()
            })
            .map(|c| c.id.as_str())
            .collect();
        if hits.is_empty() {
            return Err(ExportError::Invalid(format!(
                "--control {w:?} names no control that a check supports (ids look like iso27001:2022/A.8.20)"
            )));
        }
        out.extend(hits.into_iter().map(str::to_string));
    }
    Ok(out.into_iter().collect())
}

/// The checks mapped to any of `controls`.
pub fn checks_of(catalog: &Catalog, controls: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = controls.iter().flat_map(|c| catalog.checks_for_control(c)).collect();
    set.into_iter().cloned().collect()
}

/// The sampling key of a host: hex SHA-256(seed || 0x00 || agent id).
pub fn sample_key(seed: &str, agent: &str) -> String {
    let mut h = Sha256::new();
    h.update(seed.as_bytes());
    h.update([0u8]);
    h.update(agent.as_bytes());
    hex::encode(h.finalize())
}

/// The `n` hosts of `population` with the smallest sampling keys (all of
/// them when there are fewer), sorted by agent id. The order of
/// `population` does not matter.
pub fn sample(population: &[String], n: usize, seed: &str) -> Vec<String> {
    let mut keyed: Vec<(String, &String)> = population.iter().map(|a| (sample_key(seed, a), a)).collect();
    keyed.sort();
    let mut chosen: Vec<String> = keyed.into_iter().take(n).map(|(_, a)| a.clone()).collect();
    chosen.sort();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_depends_on_the_seed_not_on_the_order() {
        let hosts: Vec<String> = (0..50).map(|i| format!("agent-{i:02}")).collect();
        let a = sample(&hosts, 5, "audit-2026");
        let mut reversed = hosts.clone();
        reversed.reverse();
        assert_eq!(a, sample(&reversed, 5, "audit-2026"));
        assert_eq!(a.len(), 5);
        assert_ne!(a, sample(&hosts, 5, "audit-2027"));
        assert_eq!(sample(&hosts[..3], 5, "x").len(), 3);
    }
}
