//! The `disk_encryption` check: does every fixed filesystem that holds data
//! (the root, other fixed data filesystems, and swap) sit on dm-crypt?
//!
//! Walks the block-device tree from `lsblk -J` (TYPE `crypt` is dm-crypt;
//! confirmed by `/sys/block/<dm>/dm/uuid` starting with `CRYPT-`) for every
//! mount in `/proc/mounts` and every swap area in `/proc/swaps`. `/boot` and
//! the EFI system partition are exempt (they hold no data and cannot be
//! encrypted with the usual setups); swap on zram lives in RAM. Removable
//! media are out of scope and listed as such.

pub mod linux;
pub mod macos;
pub mod windows;
