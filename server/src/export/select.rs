//! Which hosts and requirements an export covers: `--host` ids, `--control`
//! ids or prefixes resolved against the catalog. The seeded sample is
//! `custos_verify::sample`, the rule the verifier redraws it by.
//! Pure.

use std::collections::BTreeSet;

use super::ExportError;
use crate::compliance::catalog::Catalog;

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
