//! Compiles the peer protocol's `.proto` with protox (pure Rust: no `protoc` on the machine) and
//! generates the tonic client and server from its descriptors.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/chordnet/v1/peer.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
