//! What an evaluation runs under: when evidence is stale (each check's
//! collection interval times a factor, never below a floor), the
//! exceptions in force, and which controls apply to which hosts.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::CheckEvidence;

/// Decides whether a control applies to a host with these tags.
#[derive(Clone)]
pub struct AppliesTo(pub Arc<AppliesFn>);

/// `(control id, host tags) → applies`.
pub type AppliesFn = dyn Fn(&str, &[String]) -> bool + Send + Sync;

impl std::fmt::Debug for AppliesTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppliesTo(..)")
    }
}

/// The settings one evaluation runs under (not the policy's rules, which
/// decide each result before evaluation sees it).
#[derive(Debug, Clone)]
pub struct EvaluationSettings {
    /// Collection interval of checks without one of their own.
    pub default_interval: Duration,
    /// Per-check collection intervals.
    pub intervals: BTreeMap<String, Duration>,
    /// Evidence older than interval × factor is stale...
    pub stale_factor: f64,
    /// ...but never before this age (laptops sleep).
    pub stale_floor: Duration,
    /// Exceptions: (agent id, control id) → when the exception ends.
    pub exceptions: BTreeMap<(String, String), OffsetDateTime>,
    /// `None`: every control applies to every host.
    pub scope: Option<AppliesTo>,
}

impl EvaluationSettings {
    /// A policy where evidence is stale after `after` for every check, with
    /// no exceptions and no scopes.
    pub fn stale_after(after: Duration) -> EvaluationSettings {
        EvaluationSettings {
            default_interval: after,
            intervals: BTreeMap::new(),
            stale_factor: 1.0,
            stale_floor: Duration::ZERO,
            exceptions: BTreeMap::new(),
            scope: None,
        }
    }

    /// How old evidence of `check` may be before it is stale.
    pub fn stale_limit(&self, check: &str) -> Duration {
        let interval = self.intervals.get(check).copied().unwrap_or(self.default_interval);
        (interval * self.stale_factor).max(self.stale_floor)
    }

    pub fn is_fresh(&self, e: &CheckEvidence, now: OffsetDateTime) -> bool {
        now - e.collected_at <= self.stale_limit(&e.check_id)
    }

    pub(super) fn applies(&self, control: &str, tags: &[String]) -> bool {
        self.scope.as_ref().is_none_or(|s| (s.0)(control, tags))
    }
}

#[cfg(test)]
mod tests {
    use custos_proto::evidence::CheckStatus;

    use super::*;
    use crate::compliance::catalog::Catalog;
    use crate::compliance::evaluate::ControlState;
    use crate::compliance::evaluate::evaluate;
    use crate::compliance::evaluate::test_support::{NOW, control, host};

    #[test]
    fn staleness_follows_each_checks_interval_times_the_factor_with_a_floor() {
        use CheckStatus::*;
        let cat = Catalog::builtin().unwrap();
        let mut p = EvaluationSettings::stale_after(Duration::hours(1));
        p.stale_factor = 3.0;
        p.intervals.insert("software_inventory".into(), Duration::hours(24));
        assert_eq!(p.stale_limit("firewall"), Duration::hours(3));
        assert_eq!(p.stale_limit("software_inventory"), Duration::hours(72));
        // Firewall evidence 4 hours old is stale; 2 hours old is current.
        let e = evaluate(&cat, &[host("a", &[("firewall", Pass, 4)])], NOW, &p);
        assert_eq!(control(&e, "bsi-grundschutz:2023/SYS.1.1.A19").stale, ["a"]);
        assert_eq!(control(&e, "bsi-grundschutz:2023/SYS.1.1.A19").state, ControlState::Unknown);
        let e = evaluate(&cat, &[host("a", &[("firewall", Pass, 2)])], NOW, &p);
        assert_eq!(control(&e, "bsi-grundschutz:2023/SYS.1.1.A19").passing, ["a"]);
        // The floor keeps a sleeping laptop's evidence current for longer.
        p.stale_floor = Duration::hours(12);
        assert_eq!(p.stale_limit("firewall"), Duration::hours(12));
        let e = evaluate(&cat, &[host("a", &[("firewall", Pass, 4)])], NOW, &p);
        assert_eq!(control(&e, "bsi-grundschutz:2023/SYS.1.1.A19").passing, ["a"]);
    }
}
