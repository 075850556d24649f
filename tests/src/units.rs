//! The systemd units of `packaging/systemd/`, read as systemd reads them, so
//! that tests hold the binaries to what their units say (one source: the
//! unit file), and the binaries those units start, as this build made them.

use std::path::{Path, PathBuf};

/// `packaging/systemd/` of this checkout.
pub fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd")
}

/// One unit file: its assignments in order, each with its section.
pub struct Unit {
    pub name: String,
    pub path: PathBuf,
    assignments: Vec<(String, String, String)>,
}

impl Unit {
    /// Reads `packaging/systemd/NAME`.
    pub fn load(name: &str) -> Unit {
        let path = units_dir().join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Unit { name: name.to_string(), path, assignments: parse(&text) }
    }

    /// Every value assigned to `key` in `[Service]`, in order.
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.assignments
            .iter()
            .filter(|(section, k, _)| section == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The value of `key` in `[Service]` (the last assignment wins).
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values(key).pop()
    }

    /// Whether a boolean `key` is on.
    pub fn is_on(&self, key: &str) -> bool {
        self.value(key).is_some_and(|v| matches!(v, "yes" | "true" | "on" | "1"))
    }

    /// `ExecStart=`: the program and its arguments (the units quote nothing).
    pub fn exec_start(&self) -> (String, Vec<String>) {
        let line = self.value("ExecStart").unwrap_or_else(|| panic!("{}: no ExecStart=", self.name));
        assert!(!line.contains(['"', '\'', '$', '%']), "{}: ExecStart= is read as plain words", self.name);
        let mut words = line.split_whitespace().map(str::to_string);
        let program = words.next().unwrap_or_else(|| panic!("{}: empty ExecStart=", self.name));
        (program, words.collect())
    }

    /// `CapabilityBoundingSet=` as capability names without `CAP_`, lower
    /// case (setpriv's spelling). Lines add up; an empty one resets.
    pub fn capability_bounding_set(&self) -> Vec<String> {
        let mut caps: Vec<String> = Vec::new();
        for line in self.values("CapabilityBoundingSet") {
            assert!(!line.starts_with('~'), "{}: an inverted bounding set is not read here", self.name);
            if line.is_empty() {
                caps.clear();
            }
            for cap in line.split_whitespace() {
                let name = cap.strip_prefix("CAP_").unwrap_or_else(|| panic!("{}: {cap}?", self.name));
                caps.push(name.to_ascii_lowercase());
            }
        }
        caps
    }

    /// The words of every assignment to a list-valued `key`, in order
    /// (`SystemCallFilter=`, `ReadWritePaths=`, ...). A line that starts
    /// with `~` inverts all of its words, so each of them carries the `~`.
    pub fn words(&self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in self.values(key) {
            let (invert, list) = match line.strip_prefix('~') {
                Some(rest) => ("~", rest),
                None => ("", line),
            };
            out.extend(list.split_whitespace().map(|w| format!("{invert}{w}")));
        }
        out
    }
}

/// Assignments of a unit file: comments and blank lines skipped, lines
/// ending in a backslash continued, keys and values trimmed.
fn parse(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + line;
        if let Some(name) = full.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((k, v)) = full.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_keep_their_order_and_sections() {
        let text = "[Unit]\nDescription=x\n# ExecStart=/bin/false\n[Service]\nExecStart=/usr/bin/a run \\\n  --x y\n\
                    CapabilityBoundingSet=CAP_NET_ADMIN\nCapabilityBoundingSet=CAP_NET_RAW\nNoNewPrivileges=yes\n\
                    SystemCallFilter=@system-service\nSystemCallFilter=~@privileged @resources\nSystemCallFilter=adjtimex\n";
        let unit = Unit { name: "t".into(), path: PathBuf::new(), assignments: parse(text) };
        assert_eq!(
            unit.exec_start(),
            ("/usr/bin/a".to_string(), vec!["run".into(), "--x".into(), "y".into()])
        );
        assert_eq!(unit.capability_bounding_set(), ["net_admin", "net_raw"]);
        assert!(unit.is_on("NoNewPrivileges"));
        assert_eq!(unit.value("Description"), None, "[Unit] keys are not [Service] keys");
        assert_eq!(
            unit.words("SystemCallFilter"),
            ["@system-service", "~@privileged", "~@resources", "adjtimex"]
        );
    }
}
