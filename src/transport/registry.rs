//! The one place that maps a configured [`TransportKind`] to its implementation. Adding a
//! transport = a module under `transport/` + a config value + one arm here.

use std::sync::Arc;

use super::TransportFactory;
use super::grpc::GrpcTransport;
use super::http::HttpTransport;
use super::memory::{MemoryNetwork, MemoryTransport};
use super::nats::NatsTransport;
use crate::config::{Config, TransportKind};

/// The factory of `kind`, with the defaults of everything else.
pub fn factory(kind: TransportKind) -> Arc<dyn TransportFactory> {
    let mut config = Config::default();
    config.transport.kind = kind;
    configured(&config)
}

/// The factory `config` names (`transport.kind`), set up from its sections (`nats`). `memory`
/// peers share the process-wide [`MemoryNetwork::global`].
pub fn configured(config: &Config) -> Arc<dyn TransportFactory> {
    match config.transport.kind {
        TransportKind::Http => Arc::new(HttpTransport::default()),
        TransportKind::Grpc => Arc::new(GrpcTransport::default()),
        TransportKind::Memory => Arc::new(MemoryTransport::new(MemoryNetwork::global())),
        TransportKind::Nats => Arc::new(NatsTransport::new(config)),
    }
}
