//! Small catalog and mapping files shared by the catalog's tests, and the
//! built-in files they edit.

pub(super) use super::load::{BUILTIN_CATALOG, BUILTIN_MAPPINGS, line_at};

pub(super) const CAT: &str = r#"
[[framework]]
id = "iso27001:2022"
name = "ISO"
[[control]]
id = "iso27001:2022/A.8.20"
title = "Networks security"
"#;
pub(super) const CHECK: &str = r#"
version = "test-1"
[[check]]
id = "firewall"
title = "fw"
deviation = "fw off"
threats = []
likelihood = "mittel"
impact = "begrenzt"
goals = ["integrity"]
"#;

pub(super) fn mapping(check: &str, control: &str, rel: &str) -> String {
    format!(
        "{CHECK}\n[[mapping]]\ncheck = \"{check}\"\ncontrol = \"{control}\"\nrelationship = \"{rel}\"\nrationale = \"r\"\n"
    )
}

/// The 1-based line of the first occurrence of `needle` in `text`.
pub(super) fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|at| line_at(text, at))
}
