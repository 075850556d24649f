//! The `ssh_server` check: is the SSH server, where one runs, configured to resist credential attacks?

pub mod linux;
pub mod macos;
pub mod windows;
