//! The Windows backends of the `software_inventory` check.

use crate::collect::{Context, Finding, Os, not_collected};
use crate::host::Host;

/// Gathers and evaluates on a Windows host.
pub fn gather(_host: &dyn Host, _ctx: &Context) -> Finding {
    not_collected("software_inventory", Os::Windows)
}
