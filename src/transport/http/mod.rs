//! The HTTP/JSON transport: the ring as `POST /peer/v1/rpc` with JSON envelopes, the data plane
//! as streamed object frames and small JSON queries. Addresses are `host:port` (DNS names
//! allowed).

mod client;
pub mod frame;
mod server;

use std::sync::Arc;

pub use client::HttpClient;
pub use server::{PeerService, router, service};

use super::tls::PeerTls;
use super::tls::accept::{TlsListener, TlsPeer};
use super::{
    AddressError, BoxFuture, ClientOptions, Clients, Handlers, Refusal, RefusalKind, ServeError,
    ServeOptions, Serving, TransportError, TransportFactory, TransportKind,
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

/// The HTTP transport's factory: plain HTTP (`HttpTransport::default()`), or HTTPS with mutual
/// TLS.
#[derive(Clone, Default)]
pub struct HttpTransport {
    tls: Option<Arc<PeerTls>>,
}

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

    fn clients(&self, options: ClientOptions) -> Result<Clients, TransportError> {
        Ok(Clients::both(Arc::new(HttpClient::new(
            options,
            self.tls.clone(),
        ))))
    }

    fn with_tls(&self, tls: Arc<PeerTls>) -> Option<Arc<dyn TransportFactory>> {
        Some(Arc::new(HttpTransport { tls: Some(tls) }))
    }

    fn serve(
        &self,
        options: ServeOptions,
        handlers: Handlers,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<Serving, ServeError>> {
        Box::pin(async move {
            let (listener, local) = super::tcp::bind(options.listen).await?;
            let stop = async move {
                let _ = shutdown.wait_for(|s| *s).await;
            };
            let task = match &self.tls {
                None => tokio::spawn(async move {
                    // Plain HTTP: the ring messages' fast path. With TLS every request runs
                    // through the router, inside its connection's identity (`with_identity`).
                    let app = service(handlers, options.max_body);
                    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
                    let served = axum::serve(listener, app).with_graceful_shutdown(stop);
                    if let Err(e) = served.await {
                        tracing::warn!(error = %e, "peer-protocol server stopped with an error");
                    }
                }),
                Some(tls) => {
                    let listener =
                        TlsListener::new(listener, Arc::clone(tls)).map_err(|source| {
                            ServeError {
                                what: local.clone(),
                                source,
                            }
                        })?;
                    // Each request runs with the identity its connection's certificate proves.
                    let app = router(handlers, options.max_body)
                        .layer(axum::middleware::from_fn(with_identity))
                        .into_make_service_with_connect_info::<TlsPeer>();
                    tokio::spawn(async move {
                        let served = axum::serve(listener, app).with_graceful_shutdown(stop);
                        if let Err(e) = served.await {
                            tracing::warn!(error = %e, "peer-protocol server stopped with an error");
                        }
                    })
                }
            };
            Ok(Serving { local, task })
        })
    }
}

/// Runs the request with the TLS identity of its connection in scope (for the shared layers).
async fn with_identity(
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<TlsPeer>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    super::tls::identity::scoped(Some(peer), next.run(req)).await
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
