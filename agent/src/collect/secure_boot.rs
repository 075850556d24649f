//! The `secure_boot` check: does the firmware only boot signed code (UEFI Secure Boot)?

pub mod linux;
pub mod macos;
pub mod windows;
