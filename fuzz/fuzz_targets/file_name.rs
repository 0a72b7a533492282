#![no_main]
// chordnet::fuzzing::file_name: never panics, and holds what the decoder promises.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chordnet::fuzzing::file_name(data));
