//! The `software_inventory` check: which software packages are installed (facts only, never a pass or fail on its own)?

pub mod linux;
pub mod macos;
pub mod windows;
