//! The `auto_updates` check: are security updates installed automatically, without waiting for a person?

pub mod linux;
pub mod macos;
pub mod windows;
