//! Every integration test of the crate, in one test binary.
//!
//! Each `tests/<name>.rs` is a module here, so `cargo test --release` compiles and links one
//! test executable instead of one per file: each of the 37 files used to monomorphize and link
//! the crate, its runtime and its HTTP stacks again (29 to 108 s each under load, against 539 s
//! for all of them in one). One file's tests: `cargo test --release --test suite <name>::` (e.g. `block_lists::`).
//! The test below fails when a file in `tests/` is not listed, so none is skipped silently.

/// What the tests share (tests/support/): each file is compiled once, for every test here.
#[macro_use]
mod support {
    pub mod attacker;
    pub mod cli;
    pub mod cluster;
    #[macro_use]
    pub mod conformance;
    pub mod conformance_kit;
    pub mod harness;
    pub mod nats_server;
    pub mod otlp;
    pub mod paired;
    pub mod test_ca;
    pub mod webdriver;
}

mod api_edges;
mod api_load;
mod api_tokens;
mod big_files;
mod block_gc;
mod block_lists;
mod blocks;
mod cli;
mod cli_habits;
mod conformance;
mod events;
mod full_disk;
mod fuzz_corpus;
mod grpc;
mod grpc_services;
mod http_pool;
mod memory_release;
mod mtls;
mod nats;
mod nats_tls;
mod otlp_receiver;
mod partition_merge;
mod peer_security;
mod peers;
mod ring_files;
mod ring_merge;
mod ring_secret;
mod ring_secret_transports;
mod ring_view;
mod shared_blocks;
mod shared_files;
mod sim;
mod sim_founding;
mod sim_partition;
mod sim_table;
mod sim_verify;
mod telemetry;
mod ui_browser;

/// Every `tests/*.rs` file (but this one) is a module of the suite, and every module a file.
#[test]
fn every_test_file_is_a_module_of_the_suite() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/ is readable")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".rs").map(str::to_owned))
        .filter(|n| n != "suite")
        .collect();
    files.sort();
    let mut modules: Vec<String> = include_str!("suite.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned))
        .collect();
    modules.sort();
    assert_eq!(
        files, modules,
        "tests/suite.rs must declare `mod <name>;` for each tests/<name>.rs (and no other)"
    );
}
