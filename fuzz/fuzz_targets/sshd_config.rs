//! Fuzz target `sshd_config`: see `custos_fuzz::sshd_config` for what it drives and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_fuzz::sshd_config(data));
