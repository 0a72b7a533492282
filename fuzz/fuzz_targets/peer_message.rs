#![no_main]
// chordnet::fuzzing::peer_message: never panics, and holds what the decoder promises.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chordnet::fuzzing::peer_message(data));
