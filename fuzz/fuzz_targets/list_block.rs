#![no_main]
// chordnet::fuzzing::list_block: never panics, and holds what the decoder promises.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chordnet::fuzzing::list_block(data));
