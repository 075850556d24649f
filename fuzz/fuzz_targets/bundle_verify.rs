//! Fuzz target `bundle_verify`: see `custos_fuzz::bundle_verify` for what it drives and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_fuzz::bundle_verify(data));
