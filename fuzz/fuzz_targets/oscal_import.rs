//! Fuzz target `oscal_import`: see `custos_fuzz::oscal_import` for what it drives and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_fuzz::oscal_import(data));
