#![no_main]
// chordnet::fuzzing::request_head: never panics, and holds what the decoder promises.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chordnet::fuzzing::request_head(data));
