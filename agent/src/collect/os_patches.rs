//! The `os_patches` check (placeholder until its collector lands).

use super::{Finding, unsupported_os};
use crate::host::Host;

pub fn collect(_host: &dyn Host) -> Finding {
    unsupported_os("os_patches")
}
