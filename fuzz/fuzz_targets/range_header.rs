#![no_main]
// chordnet::fuzzing::range_header: never panics, and holds what the decoder promises.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chordnet::fuzzing::range_header(data));
