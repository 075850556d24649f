//! The `local_admins` check: who holds administrative rights on the host?

pub mod linux;
pub mod macos;
pub mod sudo_rules;
pub mod windows;
