//! Fuzz target `dsse_envelope`: see `custos_fuzz::dsse_envelope` for what it drives and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_fuzz::dsse_envelope(data));
