//! Server reflection (`grpc.reflection.v1` and the older `v1alpha` that many tools still ask):
//! a client with no `.proto` (grpcurl, Postman, a Python `grpcio-reflection` client) lists the
//! peer port's services and learns their messages. It describes `chordnet.v1` and
//! `grpc.health.v1`.

use tonic_reflection::server::Error;
use tonic_reflection::server::v1::{ServerReflection, ServerReflectionServer};
use tonic_reflection::server::v1alpha::{
    ServerReflection as ServerReflectionAlpha,
    ServerReflectionServer as ServerReflectionAlphaServer,
};

/// The encoded descriptors of `proto/chordnet/v1/peer.proto` (written by `build.rs`).
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/chordnet_v1.bin"));

fn builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTORS)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Both versions of the reflection service.
pub(super) fn services() -> Result<
    (
        ServerReflectionServer<impl ServerReflection>,
        ServerReflectionAlphaServer<impl ServerReflectionAlpha>,
    ),
    Error,
> {
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}
