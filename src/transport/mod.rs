//! How peers reach each other. The ring speaks in [`RequestEnvelope`]s and
//! [`ResponseEnvelope`]s; a [`Transport`] carries one request to a peer and brings back its
//! answer. HTTP/JSON is the first implementation; gRPC or a message broker plug in here, and the
//! simulator's virtual network is the same seam without sockets.

pub mod http;

use std::future::Future;

use crate::ring::{Address, RequestEnvelope, ResponseEnvelope};

/// Why a request got no answer. To the ring, all of these mean "no response".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("no answer within the RPC time-out")]
    Timeout,
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl TransportError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            TransportError::Timeout => "timeout",
            TransportError::Unreachable(_) => "unreachable",
            TransportError::Protocol(_) => "protocol_error",
        }
    }
}

/// Carries one request to the peer at `to` and returns its answer.
pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        to: &Address,
        request: RequestEnvelope,
    ) -> impl Future<Output = Result<ResponseEnvelope, TransportError>> + Send;
}

/// The receiving side: answers a peer's request (the ring node behind it).
pub trait RequestHandler: Send + Sync + 'static {
    fn handle(&self, request: RequestEnvelope) -> ResponseEnvelope;
}
