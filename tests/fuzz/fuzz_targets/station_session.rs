#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nachtwacht_fuzz::station_session(data));
