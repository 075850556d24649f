//! The ids of the checks the agent runs: the one list the agent's registry,
//! the server's policy and the control mappings are held to. An id is part
//! of the signed evidence (`checks[].id`) and of every mapping row, so ids
//! are stable: a check is added at the end and never renamed.

/// Every check id, in the agent's registry order.
pub const CHECK_IDS: [&str; 14] = [
    "firewall",
    "disk_encryption",
    "os_patches",
    "auto_updates",
    "antivirus",
    "screen_lock",
    "password_policy",
    "secure_boot",
    "ssh_server",
    "time_sync",
    "audit_logging",
    "local_admins",
    "os_support",
    "software_inventory",
];

/// Whether `id` names a check.
pub fn is_check(id: &str) -> bool {
    CHECK_IDS.contains(&id)
}

/// Whether `ids` is exactly [`CHECK_IDS`], in order; usable in a `const`
/// assertion, so a registry that drifts from the list does not build.
pub const fn is_check_list(ids: &[&str]) -> bool {
    if ids.len() != CHECK_IDS.len() {
        return false;
    }
    let mut i = 0;
    while i < ids.len() {
        let (a, b) = (ids[i].as_bytes(), CHECK_IDS[i].as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut j = 0;
        while j < a.len() {
            if a[j] != b[j] {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_compared_exactly() {
        assert!(is_check_list(&CHECK_IDS));
        let mut swapped = CHECK_IDS;
        swapped.swap(0, 1);
        assert!(!is_check_list(&swapped));
        assert!(!is_check_list(&CHECK_IDS[..13]));
        let mut renamed = CHECK_IDS;
        renamed[3] = "auto_update";
        assert!(!is_check_list(&renamed));
        assert!(is_check("ssh_server") && !is_check("ssh"));
    }
}
