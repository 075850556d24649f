//! The `password_policy` check: do local accounts need strong passwords, and are guessing attacks throttled?

pub mod linux;
pub mod macos;
pub mod pam_auth;
pub mod pam_include;
pub mod windows;

/// Shortest accepted minimum password length.
pub const MIN_PASSWORD_LENGTH: u32 = 12;
/// Most failed logons accepted before an account is locked out.
pub const MAX_FAILED_LOGONS: u32 = 10;
