//! The `os_patches` check: are security updates applied, are the package
//! lists fresh enough to know, and does the running kernel match the newest
//! installed one?
//!
//! apt: a no-op simulation (`apt-get -s dist-upgrade`, nothing is changed)
//! lists pending upgrades with their origin; those from a `-security`
//! suite are security updates. The age of the package lists comes from the
//! mtime of `/var/lib/apt/periodic/update-success-stamp` or
//! `/var/lib/apt/lists`. dnf / yum: `updateinfo list --security`. zypper
//! (SUSE): `list-patches` from the cached metadata, whose age is that of the
//! repositories' `repomd.xml`. Kernel: `/proc/sys/kernel/osrelease` against
//! `/boot/vmlinuz-*`; reboot required from `/var/run/reboot-required`
//! (Debian, Ubuntu) or `/run/reboot-needed` (SUSE).
//!
//! Windows: pending updates from the Windows Update Agent (security when
//! rated Critical/Important or in "Security Updates"). macOS: recommended
//! updates from `softwareupdate --list`.

pub mod linux;
pub mod macos;
pub mod windows;

/// Package lists older than this cannot vouch for "no pending updates".
pub const MAX_LIST_AGE_DAYS: i64 = 7;
