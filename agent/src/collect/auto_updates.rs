//! The `auto_updates` check: are security updates installed automatically, without waiting for a person?

pub mod apt;
pub mod apt_origins;
pub mod apt_rules;
pub mod linux;
pub mod macos;
pub mod windows;
