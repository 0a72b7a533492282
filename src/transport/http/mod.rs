//! The HTTP/JSON transport: the ring as `POST /peer/v1/rpc` with JSON envelopes, the data plane
//! as streamed object frames and small JSON queries. Addresses are `host:port` (DNS names
//! allowed).

mod client;
pub mod frame;
mod server;

use std::time::Duration;

pub use client::HttpClient;
pub use server::router;

use super::{
    AddressError, BoxFuture, Clients, Handlers, Refusal, RefusalKind, ServeError, ServeOptions,
    Serving, TransportError, TransportFactory, TransportKind,
};
use crate::wire::Address;

/// The path of the ring's requests.
pub const RPC_PATH: &str = "/peer/v1/rpc";
/// Where objects live.
pub const OBJECTS_PATH: &str = "/peer/v1/objects";
/// Any data-plane query as JSON (those added after the first data plane).
pub const QUERY_PATH: &str = "/peer/v1/query";
/// The header that carries the sender's peer-protocol version on data-plane requests.
pub const PROTOCOL_HEADER: &str = "chordnet-protocol";

/// The HTTP transport's factory.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpTransport;

impl TransportFactory for HttpTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Http
    }

    fn parse_address(&self, text: &str) -> Result<Address, AddressError> {
        super::tcp::parse_address("http", text)
    }

    fn resolves<'a>(&'a self, address: &'a Address) -> BoxFuture<'a, bool> {
        Box::pin(super::tcp::resolves(address))
    }

    fn clients(&self, connect_timeout: Duration) -> Result<Clients, TransportError> {
        Ok(Clients::both(std::sync::Arc::new(HttpClient::new(
            connect_timeout,
        )?)))
    }

    fn serve(
        &self,
        options: ServeOptions,
        handlers: Handlers,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<Serving, ServeError>> {
        Box::pin(async move {
            let (listener, local) = super::tcp::bind(options.listen).await?;
            let app = router(handlers, options.max_body);
            let task = tokio::spawn(async move {
                let stop = async move {
                    let _ = shutdown.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::warn!(error = %e, "peer-protocol server stopped with an error");
                }
            });
            Ok(Serving { local, task })
        })
    }
}

/// `host:port` with a numeric port; the host may be a name, an IPv4 or a bracketed IPv6.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    crate::config::split_host_port(s)
}

/// A refusal from a status code and the problem body the server sent.
fn refusal_from(status: u16, text: &[u8], to: &Address) -> TransportError {
    #[derive(serde::Deserialize)]
    struct Problem {
        kind: String,
        detail: String,
    }
    if let Ok(p) = serde_json::from_slice::<Problem>(text) {
        return TransportError::Refused(Refusal::new(RefusalKind::from_name(&p.kind), p.detail));
    }
    let detail = String::from_utf8_lossy(text).into_owned();
    let kind = match status {
        400 | 413 | 422 => RefusalKind::Invalid,
        503 => RefusalKind::Unavailable,
        507 => RefusalKind::InsufficientStorage,
        _ => {
            return TransportError::Protocol(format!("{to} answered HTTP {status}: {detail}"));
        }
    };
    TransportError::Refused(Refusal::new(kind, detail))
}
