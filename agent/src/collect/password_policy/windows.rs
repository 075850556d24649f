//! The Windows backends of the `password_policy` check.

use crate::collect::{Context, Finding, Os, not_collected};
use crate::host::Host;

/// Gathers and evaluates on a Windows host.
pub fn gather(_host: &dyn Host, _ctx: &Context) -> Finding {
    not_collected("password_policy", Os::Windows)
}
