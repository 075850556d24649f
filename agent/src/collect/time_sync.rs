//! The `time_sync` check: is the clock synchronised to a time source, and by how much is it off?

pub mod kernel;
pub mod linux;
pub mod macos;
pub mod windows;

/// Largest accepted clock offset from the time source, milliseconds.
pub const MAX_OFFSET_MS: f64 = 1000.0;

/// Longest accepted time since the last successful synchronisation (Windows
/// machines outside a domain synchronise weekly by default).
pub const MAX_SYNC_AGE_SECONDS: f64 = 8.0 * 86_400.0;
