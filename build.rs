//! Compiles the peer protocol's `.proto` with protox (pure Rust: no `protoc` on the machine) and
//! generates the tonic client and server from its descriptors. The encoded descriptors are kept
//! too (`OUT_DIR/chordnet_v1.bin`): server reflection hands them to clients that have no
//! `.proto`.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/chordnet/v1/peer.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("chordnet_v1.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
