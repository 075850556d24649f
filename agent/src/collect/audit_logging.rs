//! The `audit_logging` check: are security-relevant events recorded and kept?

pub mod linux;
pub mod macos;
pub mod windows;
