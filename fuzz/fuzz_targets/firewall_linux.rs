//! Fuzz target `firewall_linux`: see `custos_fuzz::firewall_linux` for what it drives and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_fuzz::firewall_linux(data));
