#![no_main]
// chordnet::fuzzing::blob_message: never panics, and holds what the decoder promises.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chordnet::fuzzing::blob_message(data));
