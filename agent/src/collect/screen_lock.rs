//! The `screen_lock` check: does an unattended desktop session lock itself after a short inactivity time?

pub mod linux;
pub mod macos;
pub mod windows;

/// Longest accepted inactivity time before the session locks (15 minutes).
pub const MAX_IDLE_SECONDS: u64 = 900;
/// Longest accepted grace time between screen saver and lock.
pub const MAX_LOCK_DELAY_SECONDS: u64 = 5;
