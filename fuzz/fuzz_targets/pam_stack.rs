//! Fuzz target `pam_stack`: see `custos_fuzz::pam_stack` for what it drives and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_fuzz::pam_stack(data));
