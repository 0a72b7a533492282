//! The one place that maps a configured [`TransportKind`] to its implementation. Adding a
//! transport = a module under `transport/` + a config value + one arm here.

use std::sync::Arc;

use super::TransportFactory;
use super::grpc::GrpcTransport;
use super::http::HttpTransport;
use super::memory::{MemoryNetwork, MemoryTransport};
use crate::config::TransportKind;

/// The factory of `kind`. `memory` peers share the process-wide [`MemoryNetwork::global`].
pub fn factory(kind: TransportKind) -> Arc<dyn TransportFactory> {
    match kind {
        TransportKind::Http => Arc::new(HttpTransport),
        TransportKind::Grpc => Arc::new(GrpcTransport),
        TransportKind::Memory => Arc::new(MemoryTransport::new(MemoryNetwork::global())),
    }
}
