//! Scopes: which controls apply to which hosts, by host tag. A control no
//! scope names applies everywhere; a control id or prefix names a control
//! only up to an id boundary.

use super::*;

/// Which controls apply to which hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// Control ids or id prefixes (`bsi-grundschutz:2023/SYS.2.1` covers
    /// `bsi-grundschutz:2023/SYS.2.1.A31`, not `.../SYS.2.10`).
    pub controls: Vec<String>,
    /// The host must carry one of these tags (empty: any host).
    pub tags_any: Vec<String>,
    /// The host must carry none of these tags.
    pub tags_none: Vec<String>,
}

impl Scope {
    fn covers(&self, control_id: &str) -> bool {
        self.controls.iter().any(|c| control_matches(c, control_id))
    }

    fn admits(&self, tags: &[String]) -> bool {
        (self.tags_any.is_empty() || self.tags_any.iter().any(|t| tags.contains(t)))
            && !self.tags_none.iter().any(|t| tags.contains(t))
    }
}

/// Whether `entry` names `control_id` itself or a prefix of it that ends at
/// an id boundary (`.`, `/` or `:`).
fn control_matches(entry: &str, control_id: &str) -> bool {
    let boundary = |c: char| matches!(c, '.' | '/' | ':');
    match control_id.strip_prefix(entry) {
        Some("") => true,
        Some(rest) => entry.ends_with(boundary) || rest.starts_with(boundary),
        None => false,
    }
}

impl Policy {
    /// Whether a control applies to a host with these tags: a control that
    /// no scope names applies everywhere; otherwise one of the scopes naming
    /// it must admit the host.
    pub fn applies(&self, control_id: &str, tags: &[String]) -> bool {
        let mut named = false;
        for scope in self.inner.scopes.iter().filter(|s| s.covers(control_id)) {
            named = true;
            if scope.admits(tags) {
                return true;
            }
        }
        !named
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_scopes_naming_a_control_admit_a_host_through_any_of_them() {
        let builtin = Policy::builtin().unwrap();
        let text = "version = \"v\"\n[[scope]]\ncontrols = [\"iso27001:2022/A.8\"]\ntags_any = [\"laptop\"]\n\
                    [[scope]]\ncontrols = [\"iso27001:2022/A.8.1\"]\ntags_any = [\"server\"]\n";
        let p = Policy::with_override(&builtin, Path::new("o.toml"), text).unwrap();
        assert!(p.applies("iso27001:2022/A.8.1", &["server".into()]));
        assert!(p.applies("iso27001:2022/A.8.1", &["laptop".into()]));
        assert!(!p.applies("iso27001:2022/A.8.1", &["desktop".into()]));
        assert!(!p.applies("iso27001:2022/A.8.20", &["server".into()]));
    }

    #[test]
    fn control_prefixes_end_at_id_boundaries() {
        assert!(control_matches("a:1/SYS.2.1", "a:1/SYS.2.1"));
        assert!(control_matches("a:1/SYS.2.1", "a:1/SYS.2.1.A3"));
        assert!(!control_matches("a:1/SYS.2.1", "a:1/SYS.2.10"));
        assert!(control_matches("a:1/", "a:1/SYS.2.10"));
        assert!(control_matches("a", "a:1/SYS"));
        assert!(!control_matches("a:1/SYS.2.1.A3", "a:1/SYS.2.1"));
    }
}
