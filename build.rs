//! Compiles the peer protocol's `.proto` with protox (pure Rust: no `protoc` on the machine) and
//! generates the tonic client and server from its descriptors. The encoded descriptors are kept
//! too (`OUT_DIR/chordnet_v1.bin`): server reflection hands them to clients that have no
//! `.proto`.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    hot_code_first();
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

/// The image's build (static, an optimised profile) lays the functions an idle peer runs out
/// together at the start of `.text` (`link/hot-symbols.txt`, written by
/// `scripts/hot-symbols.sh`): the kernel maps code in 64 KiB windows, so an idle peer's 1 MB of
/// code scattered over 13 MiB kept about 6 MiB resident. Names the
/// build does not have are ignored (a stale list costs memory, never correctness).
/// `CHORDNET_CODE_ORDER=0` turns it off (a linker other than lld refuses the option; builds
/// for other architectures, or naming their linker, do without it anyway).
fn hot_code_first() {
    let list = "link/hot-symbols.txt";
    println!("cargo:rerun-if-changed={list}");
    println!("cargo:rerun-if-env-changed=CHORDNET_CODE_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let static_linux = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_FEATURE")
            .split(',')
            .any(|f| f == "crt-static");
    // lld is the toolchain's default linker on x86_64 Linux only; a build that names another
    // linker keeps the default layout.
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let default_linker = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_empty()
        && !flags.contains("linker")
        && !flags.contains("fuse-ld");
    if !static_linux
        || !default_linker
        || var("PROFILE") != "release"
        || var("CHORDNET_CODE_ORDER") == "0"
    {
        return;
    }
    let path = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join(list);
    if path.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            path.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
