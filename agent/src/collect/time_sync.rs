//! The `time_sync` check: is the clock synchronised to a time source, and by how much is it off?

pub mod linux;
pub mod macos;
pub mod windows;

/// Largest accepted clock offset from the time source, milliseconds.
pub const MAX_OFFSET_MS: f64 = 1000.0;
