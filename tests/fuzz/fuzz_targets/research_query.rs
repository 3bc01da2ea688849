#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nachtwacht_fuzz::research_query(data));
