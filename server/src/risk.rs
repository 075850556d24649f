//! Risk-register reconciliation: keeps one entry per deviating (control,
//! check) across the fleet, listing the affected hosts. Pure: no I/O, the
//! time is a parameter; the store applies the returned changes.
//!
//! Rules: an entry opens when a host first fails a check mapped to the
//! control; a host joins when it fails; a host leaves only when it *passes*
//! the check again (a failing host that turns unknown or goes silent stays
//! affected) or leaves the fleet; the entry closes when no host is left.
//! A later failure opens a new entry.

use std::collections::{BTreeMap, BTreeSet};

use custos_proto::evidence::CheckStatus;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::catalog::Catalog;

/// Likelihood on the BSI 200-3 four-step scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Likelihood {
    #[serde(rename = "selten")]
    Selten,
    #[serde(rename = "mittel")]
    Mittel,
    #[serde(rename = "häufig")]
    Haeufig,
    #[serde(rename = "sehr häufig")]
    SehrHaeufig,
}

/// Impact on the BSI 200-3 four-step scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Impact {
    #[serde(rename = "vernachlässigbar")]
    Vernachlaessigbar,
    #[serde(rename = "begrenzt")]
    Begrenzt,
    #[serde(rename = "beträchtlich")]
    Betraechtlich,
    #[serde(rename = "existenzbedrohend")]
    Existenzbedrohend,
}

macro_rules! text_enum {
    ($t:ty, $($v:ident => $s:literal),+) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $(Self::$v => $s),+ })
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s { $($s => Ok(Self::$v),)+ other => Err(format!("unknown value {other:?}")) }
            }
        }
    };
}
text_enum!(Likelihood, Selten => "selten", Mittel => "mittel", Haeufig => "häufig", SehrHaeufig => "sehr häufig");
text_enum!(Impact, Vernachlaessigbar => "vernachlässigbar", Begrenzt => "begrenzt", Betraechtlich => "beträchtlich", Existenzbedrohend => "existenzbedrohend");

/// An open entry as the register holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskEntry {
    pub id: i64,
    pub control_id: String,
    pub check_id: String,
    pub title: String,
    pub threats: Vec<String>,
    pub likelihood: Likelihood,
    pub impact: Impact,
    pub affected_hosts: BTreeSet<String>,
    pub opened_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub closed_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RiskChange {
    Open {
        control_id: String,
        check_id: String,
        title: String,
        threats: Vec<String>,
        likelihood: Likelihood,
        impact: Impact,
        affected_hosts: BTreeSet<String>,
        at: OffsetDateTime,
    },
    Update {
        id: i64,
        affected_hosts: BTreeSet<String>,
        at: OffsetDateTime,
    },
    Close {
        id: i64,
        at: OffsetDateTime,
    },
}

/// Decides the changes that bring the open entries in line with `statuses`
/// (check id → agent id → latest status) for the hosts in `fleet`.
pub fn reconcile(
    catalog: &Catalog,
    open: &[RiskEntry],
    statuses: &BTreeMap<String, BTreeMap<String, CheckStatus>>,
    fleet: &BTreeSet<String>,
    now: OffsetDateTime,
) -> Vec<RiskChange> {
    let status = |check: &str, agent: &str| statuses.get(check).and_then(|m| m.get(agent)).copied();
    let failing = |check: &str| -> BTreeSet<String> {
        statuses
            .get(check)
            .map(|m| {
                m.iter()
                    .filter(|(a, s)| **s == CheckStatus::Fail && fleet.contains(*a))
                    .map(|(a, _)| a.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut changes = Vec::new();
    let mut covered = BTreeSet::new();
    for entry in open {
        covered.insert((entry.control_id.clone(), entry.check_id.clone()));
        let mut hosts: BTreeSet<String> = entry
            .affected_hosts
            .iter()
            .filter(|h| fleet.contains(*h) && status(&entry.check_id, h) != Some(CheckStatus::Pass))
            .cloned()
            .collect();
        hosts.extend(failing(&entry.check_id));
        if hosts.is_empty() {
            changes.push(RiskChange::Close { id: entry.id, at: now });
        } else if hosts != entry.affected_hosts {
            changes.push(RiskChange::Update { id: entry.id, affected_hosts: hosts, at: now });
        }
    }
    for check in statuses.keys() {
        let hosts = failing(check);
        if hosts.is_empty() {
            continue;
        }
        let Some(info) = catalog.check(check) else { continue };
        for (control_id, _) in catalog.controls_for_check(check) {
            if covered.contains(&(control_id.clone(), check.clone())) {
                continue;
            }
            let control_title = catalog.control(control_id).map_or("", |c| c.title.as_str());
            changes.push(RiskChange::Open {
                control_id: control_id.clone(),
                check_id: check.clone(),
                title: format!("{} ({control_id} {control_title})", info.deviation),
                threats: info.threats.clone(),
                likelihood: info.likelihood,
                impact: info.impact,
                affected_hosts: hosts.clone(),
                at: now,
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckStatus::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

    fn statuses(rows: &[(&str, &str, CheckStatus)]) -> BTreeMap<String, BTreeMap<String, CheckStatus>> {
        let mut m: BTreeMap<String, BTreeMap<String, CheckStatus>> = BTreeMap::new();
        for (check, agent, s) in rows {
            m.entry(check.to_string()).or_default().insert(agent.to_string(), *s);
        }
        m
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Applies changes the way the store does, for a multi-step scenario.
    fn apply(open: &mut Vec<RiskEntry>, changes: Vec<RiskChange>, next_id: &mut i64) {
        for c in changes {
            match c {
                RiskChange::Open {
                    control_id,
                    check_id,
                    title,
                    threats,
                    likelihood,
                    impact,
                    affected_hosts,
                    at,
                } => {
                    *next_id += 1;
                    open.push(RiskEntry {
                        id: *next_id,
                        control_id,
                        check_id,
                        title,
                        threats,
                        likelihood,
                        impact,
                        affected_hosts,
                        opened_at: at,
                        updated_at: at,
                        closed_at: None,
                    });
                }
                RiskChange::Update { id, affected_hosts, .. } => {
                    if let Some(e) = open.iter_mut().find(|e| e.id == id) {
                        e.affected_hosts = affected_hosts;
                    }
                }
                RiskChange::Close { id, .. } => open.retain(|e| e.id != id),
            }
        }
    }

    fn a820(open: &[RiskEntry]) -> Option<&RiskEntry> {
        open.iter().find(|e| e.control_id == "iso27001:2022/A.8.20" && e.check_id == "firewall")
    }

    #[test]
    fn entry_opens_grows_keeps_silent_hosts_and_closes_when_all_pass() {
        let cat = Catalog::builtin().unwrap();
        let fleet = set(&["a", "b"]);
        let (mut open, mut id) = (Vec::new(), 0);

        let c = reconcile(
            &cat,
            &open,
            &statuses(&[("firewall", "a", Fail), ("firewall", "b", Pass)]),
            &fleet,
            T0,
        );
        // One entry per control the check maps to, none per host.
        assert_eq!(c.len(), cat.controls_for_check("firewall").len());
        apply(&mut open, c, &mut id);
        let e = a820(&open).unwrap();
        assert_eq!(e.affected_hosts, set(&["a"]));
        assert_eq!(e.threats, ["G 0.23 Unbefugtes Eindringen in IT-Systeme"]);
        let first_id = e.id;

        // Nothing changed: no changes.
        assert!(
            reconcile(
                &cat,
                &open,
                &statuses(&[("firewall", "a", Fail), ("firewall", "b", Pass)]),
                &fleet,
                T0
            )
            .is_empty()
        );

        // b fails too.
        let c = reconcile(
            &cat,
            &open,
            &statuses(&[("firewall", "a", Fail), ("firewall", "b", Fail)]),
            &fleet,
            T0,
        );
        apply(&mut open, c, &mut id);
        assert_eq!(a820(&open).unwrap().affected_hosts, set(&["a", "b"]));
        assert_eq!(a820(&open).unwrap().id, first_id);

        // a turns unknown: stays affected. b has no record any more: stays too.
        let s = statuses(&[("firewall", "a", Unknown)]);
        assert!(reconcile(&cat, &open, &s, &fleet, T0).is_empty());

        // a passes: leaves.
        let c = reconcile(
            &cat,
            &open,
            &statuses(&[("firewall", "a", Pass), ("firewall", "b", Fail)]),
            &fleet,
            T0,
        );
        apply(&mut open, c, &mut id);
        assert_eq!(a820(&open).unwrap().affected_hosts, set(&["b"]));

        // b passes: closed.
        let c = reconcile(
            &cat,
            &open,
            &statuses(&[("firewall", "a", Pass), ("firewall", "b", Pass)]),
            &fleet,
            T0,
        );
        assert!(c.iter().all(|c| matches!(c, RiskChange::Close { .. })));
        apply(&mut open, c, &mut id);
        assert!(a820(&open).is_none());

        // Failing again later opens a new entry.
        let c = reconcile(&cat, &open, &statuses(&[("firewall", "a", Fail)]), &fleet, T0);
        apply(&mut open, c, &mut id);
        assert_ne!(a820(&open).unwrap().id, first_id);
    }

    #[test]
    fn hosts_leaving_the_fleet_leave_the_entry() {
        let cat = Catalog::builtin().unwrap();
        let (mut open, mut id) = (Vec::new(), 0);
        let c = reconcile(&cat, &open, &statuses(&[("antivirus", "a", Fail)]), &set(&["a"]), T0);
        apply(&mut open, c, &mut id);
        assert!(!open.is_empty());
        let c = reconcile(&cat, &open, &statuses(&[("antivirus", "a", Fail)]), &set(&[]), T0);
        assert!(c.iter().all(|c| matches!(c, RiskChange::Close { .. })));
        assert_eq!(c.len(), open.len());
    }

    #[test]
    fn scales_round_trip_as_text() {
        for l in [Likelihood::Selten, Likelihood::Mittel, Likelihood::Haeufig, Likelihood::SehrHaeufig] {
            assert_eq!(l.to_string().parse::<Likelihood>().unwrap(), l);
        }
        assert_eq!("beträchtlich".parse::<Impact>().unwrap(), Impact::Betraechtlich);
        assert!("high".parse::<Impact>().is_err());
    }
}
