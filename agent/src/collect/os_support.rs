//! The `os_support` check: does the operating system release still receive security updates from its vendor?

pub mod linux;
pub mod macos;
pub mod windows;
