//! What an evidence entry says about its requirement: title, threats,
//! protection goals, inherent rating and related requirements, from the
//! catalog's data on the failing checks. Pure.

use std::collections::BTreeSet;

use super::lifecycle::Profile;
use super::{Matrix, Rating};
use crate::compliance::catalog::{Catalog, GOALS};

/// The profile of a deviation of `requirement` through `checks` (at least
/// one, all declared in the catalog; unknown ones are skipped).
pub fn profile(catalog: &Catalog, matrix: &Matrix, requirement: &str, checks: &BTreeSet<String>) -> Profile {
    let infos: Vec<_> = checks.iter().filter_map(|c| catalog.check(c)).collect();
    let control_title = catalog.control(requirement).map_or("", |c| c.title.as_str());
    let short = requirement.split_once('/').map_or(requirement, |(_, id)| id);
    let deviations: Vec<&str> = infos.iter().map(|i| i.deviation.as_str()).collect();
    let title = if deviations.is_empty() {
        format!("{short} {control_title}: not met")
    } else {
        format!("{short} {control_title}: {}", deviations.join("; "))
    };
    let description = infos
        .iter()
        .map(|i| format!("{} ({}): {}", i.title, i.id, i.deviation))
        .collect::<Vec<_>>()
        .join("\n");
    let mut threats: Vec<String> = Vec::new();
    for t in infos.iter().flat_map(|i| &i.threats) {
        if !threats.contains(t) {
            threats.push(t.clone());
        }
    }
    let goal_set: BTreeSet<&str> = infos.iter().flat_map(|i| &i.goals).map(String::as_str).collect();
    // In the canonical order, not alphabetical.
    let goals = GOALS.iter().filter(|g| goal_set.contains(*g)).map(|g| g.to_string()).collect();
    let inherent = infos
        .iter()
        .map(|i| matrix.rate(i.likelihood, i.impact))
        .max_by_key(|r: &Rating| (r.level, r.likelihood * r.impact, r.impact))
        .unwrap_or_else(|| matrix.at(1, 1));
    // The same deviation in the other frameworks (the entry's own framework
    // has its own entries).
    let own_framework = requirement.split_once('/').map_or("", |(f, _)| f);
    let mut related: BTreeSet<String> = BTreeSet::new();
    for check in checks {
        for (control, _) in catalog.controls_for_check(check) {
            if !control.starts_with(&format!("{own_framework}/")) {
                related.insert(control.clone());
            }
        }
    }
    Profile { title, description, threats, goals, related: related.into_iter().collect(), inherent }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{Level, MatrixKind};

    #[test]
    fn a_requirement_failing_through_two_checks_takes_the_worse_rating_and_all_threats() {
        let cat = Catalog::builtin().unwrap();
        let m = Matrix::new(MatrixKind::Iso27005);
        let checks: BTreeSet<String> = ["firewall".to_string(), "disk_encryption".to_string()].into();
        let p = profile(&cat, &m, "iso27001:2022/A.8.1", &checks);
        assert!(p.title.starts_with("A.8.1 User endpoint devices: "), "{}", p.title);
        assert!(p.title.contains("host firewall"), "{}", p.title);
        assert_eq!(p.goals, ["confidentiality", "integrity", "availability"]);
        let fw = cat.check("firewall").unwrap();
        let de = cat.check("disk_encryption").unwrap();
        let worst = m.rate(fw.likelihood, fw.impact).level.max(m.rate(de.likelihood, de.impact).level);
        assert_eq!(p.inherent.level, worst);
        assert!(p.threats.len() >= 2);
        assert!(p.related.iter().any(|r| r.starts_with("bsi-grundschutz:2023/")));
        assert!(!p.related.iter().any(|r| r.starts_with("iso27001:2022/")), "{:?}", p.related);
        assert!(p.inherent.level >= Level::Low);
    }
}
