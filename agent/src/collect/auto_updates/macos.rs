//! The macOS backends of the `auto_updates` check.

use crate::collect::{Context, Finding, Os, not_collected};
use crate::host::Host;

/// Gathers and evaluates on a macOS host.
pub fn gather(_host: &dyn Host, _ctx: &Context) -> Finding {
    not_collected("auto_updates", Os::Macos)
}
