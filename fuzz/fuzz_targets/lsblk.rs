//! Fuzz target `lsblk`: see `custos_fuzz::lsblk` for what it drives and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_fuzz::lsblk(data));
