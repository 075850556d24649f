//! Fuzz target `intoto_statement`: see `custos_fuzz::intoto_statement` for what it drives and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_fuzz::intoto_statement(data));
