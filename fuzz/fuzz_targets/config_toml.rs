#![no_main]
// chordnet::fuzzing::config_toml: never panics, and holds what the decoder promises.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chordnet::fuzzing::config_toml(data));
