#![no_main]
// chordnet::fuzzing::object_frame: never panics, and holds what the decoder promises.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chordnet::fuzzing::object_frame(data));
