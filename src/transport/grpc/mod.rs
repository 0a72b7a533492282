//! The gRPC transport (tonic): the ring as one unary call carrying the JSON envelope, the data
//! plane as a client-streaming put and server-streaming gets of chunks of at most 1 MiB (never
//! one message with a whole body), and a unary query. `proto/chordnet/v1/peer.proto` defines
//! the services; `build.rs` compiles it with protox (no `protoc` needed) and generates the code.
//! Addresses are `host:port` (DNS names allowed), as for HTTP.
//!
//! - Deadlines: control calls carry `grpc-timeout` (the layers' deadline), so the server drops
//!   the work when it passes; transfers are bounded by the layers on the body.
//! - Metadata: `chordnet-protocol` (checked by the server on data-plane calls; ring envelopes
//!   carry their own version), `traceparent` / `tracestate`.
//! - Refusals travel as status codes (`INVALID_ARGUMENT`, `FAILED_PRECONDITION` for another
//!   protocol version, `RESOURCE_EXHAUSTED` for a full disk or an over-size object,
//!   `UNAVAILABLE`, `INTERNAL`) with the refusal's kind in `chordnet-refusal`, and come back as
//!   the same [`Refusal`](super::Refusal).
//! - Also on the peer port: `grpc.health.v1` (SERVING exactly when the peer is ready) and
//!   server reflection (`grpc.reflection.v1` and `v1alpha`).

mod channels;
mod client;
mod health;
pub mod reflection;
mod server;
mod status;
mod stream;

use std::sync::Arc;
use std::time::Duration;

pub use client::GrpcClient;

use super::tls::PeerTls;
use super::{
    AddressError, BoxFuture, ClientOptions, Clients, Handlers, ServeError, ServeOptions, Serving,
    TransportError, TransportFactory, TransportKind,
};
use crate::wire::Address;

/// The code generated from `proto/chordnet/v1/peer.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("chordnet.v1");
}

/// The largest piece of content in one message.
pub const MAX_CHUNK: usize = 1 << 20;
/// The largest ring envelope accepted (as the HTTP transport).
const MAX_RPC: usize = 1 << 20;
/// The largest data-plane message (a "which of these do you lack" list of a big hand-off; a
/// chunk is far smaller).
const MAX_QUERY: usize = 32 << 20;
/// The largest object metadata accepted: a manifest of 65536 blocks is about 4.4 MB of JSON.
const MAX_META: usize = 8 << 20;
/// How long a stopping server waits for calls in flight before it drops them.
const DRAIN: Duration = Duration::from_secs(5);

/// The gRPC transport's factory: h2c (`GrpcTransport::default()`), or HTTP/2 over mutual TLS.
#[derive(Clone, Default)]
pub struct GrpcTransport {
    tls: Option<Arc<PeerTls>>,
}

impl TransportFactory for GrpcTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Grpc
    }

    fn parse_address(&self, text: &str) -> Result<Address, AddressError> {
        super::tcp::parse_address("grpc", text)
    }

    fn resolves<'a>(&'a self, address: &'a Address) -> BoxFuture<'a, bool> {
        Box::pin(super::tcp::resolves(address))
    }

    fn clients(&self, options: ClientOptions) -> Result<Clients, TransportError> {
        Ok(Clients::both(Arc::new(GrpcClient::new(
            options,
            self.tls.clone(),
        ))))
    }

    fn with_tls(&self, tls: Arc<PeerTls>) -> Option<Arc<dyn TransportFactory>> {
        Some(Arc::new(GrpcTransport { tls: Some(tls) }))
    }

    fn serve(
        &self,
        options: ServeOptions,
        handlers: Handlers,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<Serving, ServeError>> {
        Box::pin(server::serve(options, handlers, shutdown, self.tls.clone()))
    }
}
