#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dailypot_fuzz::token_parse(data));
