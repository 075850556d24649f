//! Applies an imported OSCAL mapping collection: a map "source control is
//! R of target control" (e.g. ISO/IEC 27001:2022 A.8.20 → a Grundschutz++
//! requirement) lets the checks that support the source support the target
//! too, with the composed relationship and a rationale naming the route.
//! Pure: the caller reads the files and adds the rows to the catalog.
//!
//! Invariants: only targets the imported target catalog defines get rows
//! (the others are reported, never guessed); a relationship is composed
//! conservatively (anything but equal/equal, subset/subset or
//! superset/superset becomes intersect).

use std::collections::BTreeSet;

use crate::compliance::catalog::{Catalog, Mapping, Relationship};
use crate::compliance::oscal::OscalMapping;

/// What applying one mapping gives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Derived {
    /// New check → target-control rows.
    pub rows: Vec<Mapping>,
    /// Target ids the target framework does not define.
    pub dangling: Vec<String>,
    /// Source ids the source framework does not define.
    pub unknown_sources: Vec<String>,
    /// Targets that gained at least one check.
    pub targets_with_evidence: usize,
}

/// "check is `a` of source" and "source is `b` of target" → "check is ? of target".
pub fn compose(a: Relationship, b: Relationship) -> Relationship {
    use Relationship::*;
    match (a, b) {
        (Equal, x) | (x, Equal) => x,
        (Subset, Subset) => Subset,
        (Superset, Superset) => Superset,
        _ => Intersect,
    }
}

/// The id of `id` in framework `fw`: as given, or with ISO Annex A's `A.`
/// prefix (mapping collections often write `5.1` for `A.5.1`).
fn resolve(catalog: &Catalog, fw: &str, id: &str) -> Option<String> {
    [format!("{fw}/{id}"), format!("{fw}/A.{id}")].into_iter().find(|q| catalog.control(q).is_some())
}

/// Derives the rows `mapping` gives from `source_fw` to `target_fw`.
pub fn derive(
    catalog: &Catalog,
    mapping: &OscalMapping,
    source_fw: &str,
    target_fw: &str,
    label: &str,
) -> Derived {
    let mut out = Derived::default();
    let mut dangling = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut targets = BTreeSet::new();
    for m in &mapping.maps {
        for source in &m.sources {
            let Some(src) = resolve(catalog, source_fw, source) else {
                unknown.insert(source.clone());
                continue;
            };
            for target in &m.targets {
                let tgt = format!("{target_fw}/{target}");
                if catalog.control(&tgt).is_none() {
                    dangling.insert(target.clone());
                    continue;
                }
                for check in catalog.checks_for_control(&src) {
                    let Some(r1) =
                        catalog.controls_for_check(check).iter().find(|(c, _)| *c == src).map(|(_, r)| *r)
                    else {
                        continue;
                    };
                    if !seen.insert((check.clone(), tgt.clone())) {
                        continue;
                    }
                    let rel = compose(r1, m.relationship);
                    targets.insert(tgt.clone());
                    out.rows.push(Mapping {
                        check: check.clone(),
                        control: tgt.clone(),
                        relationship: rel.as_str().to_string(),
                        rationale: format!(
                            "via {src}: the check is {} of it, and it is {} of this requirement per {label}",
                            r1.as_str(),
                            m.relationship.as_str()
                        ),
                    });
                }
            }
        }
    }
    out.dangling = dangling.into_iter().collect();
    out.unknown_sources = unknown.into_iter().collect();
    out.targets_with_evidence = targets.len();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Relationship::*;

    #[test]
    fn composition_is_conservative() {
        assert_eq!(compose(Equal, Subset), Subset);
        assert_eq!(compose(Subset, Equal), Subset);
        assert_eq!(compose(Subset, Subset), Subset);
        assert_eq!(compose(Superset, Superset), Superset);
        assert_eq!(compose(Subset, Superset), Intersect);
        assert_eq!(compose(Intersect, Equal), Intersect);
        assert_eq!(compose(Superset, Subset), Intersect);
    }
}
