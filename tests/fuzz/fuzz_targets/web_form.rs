#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nachtwacht_fuzz::web_form(data));
