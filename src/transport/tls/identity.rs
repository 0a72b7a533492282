//! The peer identity TLS proves, and the checks that bind it to node ids: a ring message that
//! claims `from = id@host:port` passes only if the client certificate names `host` and `id` is
//! the SHA-1 of `host:port` (how every peer's id is made from its advertised address); a
//! provider record the same for the peer it names. Servers hand the connection's identity to
//! the shared layers with [`scoped`]; without TLS nothing is in scope and nothing is checked.

use std::future::Future;
use std::sync::Arc;

use super::accept::TlsPeer;
use crate::id::Id;
use crate::transport::{
    BlobAnswer, BlobHandler, BlobQuery, Body, BoxFuture, Object, PutReply, Refusal, RefusalKind,
    RingHandler, TraceCarrier,
};
use crate::wire::files::FileMeta;
use crate::wire::ring::{Rejection, RequestEnvelope, Response, ResponseEnvelope};
use crate::wire::{Address, Peer};

tokio::task_local! {
    /// The TLS identity of the connection the request in progress arrived on.
    static CONNECTION: Option<TlsPeer>;
}

/// Runs a handler call with the identity of the connection its request arrived on (`None` on
/// a plain connection).
pub async fn scoped<F: Future>(peer: Option<TlsPeer>, call: F) -> F::Output {
    CONNECTION.scope(peer, call).await
}

/// Why a claimed identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("a TLS connection without a client certificate")]
    NoCertificate,
    #[error("the id {id} is not the SHA-1 of {address}")]
    NotItsId { id: Id, address: String },
    #[error("the client certificate does not name {host:?}: {reason}")]
    NotNamed { host: String, reason: String },
}

/// Whether the connection in scope may speak for `id` at `address`: always without TLS.
pub fn check(id: Id, address: &str) -> Result<(), IdentityError> {
    let Ok(Some(peer)) = CONNECTION.try_with(Clone::clone) else {
        return Ok(());
    };
    let cert = peer.cert.ok_or(IdentityError::NoCertificate)?;
    if Id::hash(address.as_bytes()) != id {
        return Err(IdentityError::NotItsId {
            id,
            address: address.to_owned(),
        });
    }
    let host = crate::config::split_host_port(address).map_or(address, |(h, _)| h);
    super::names(&cert, host).map_err(|reason| IdentityError::NotNamed {
        host: host.to_owned(),
        reason,
    })
}

/// Whether the connection in scope may speak for `peer`.
pub fn check_peer(peer: &Peer) -> Result<(), IdentityError> {
    check(peer.id, Address::as_str(&peer.address))
}

/// Ring requests whose `from` the connection's certificate does not prove are refused
/// (counted as `chordnet_peer_auth_rejections_total{reason="tls_identity"}`).
pub struct IdentityRing {
    pub inner: Arc<dyn RingHandler>,
    pub me: Peer,
    pub metrics: crate::metrics::Metrics,
}

impl RingHandler for IdentityRing {
    fn handle(
        &self,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'_, ResponseEnvelope> {
        // Checked when polled, inside the server's scope (a caller may make the future first).
        Box::pin(async move {
            match check_peer(&request.from) {
                Ok(()) => self.inner.handle(request, trace).await,
                Err(e) => {
                    self.metrics
                        .auth_rejections
                        .with_label_values(&["tls_identity"])
                        .inc();
                    tracing::debug!(from = %request.from, error = %e, "refused a ring message over TLS");
                    ResponseEnvelope::new(
                        None,
                        self.me.clone(),
                        Response::Rejected {
                            reason: Rejection::Unauthenticated,
                        },
                    )
                }
            }
        })
    }
}

/// Provider records are accepted only for the peer the connection's certificate proves.
pub struct IdentityBlob {
    pub inner: Arc<dyn BlobHandler>,
}

impl BlobHandler for IdentityBlob {
    fn put(&self, meta: FileMeta, body: Option<Body>) -> BoxFuture<'_, Result<PutReply, Refusal>> {
        self.inner.put(meta, body)
    }

    fn get(&self, id: Id) -> BoxFuture<'_, Result<Option<Object>, Refusal>> {
        self.inner.get(id)
    }

    fn get_shared<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Body>, Refusal>> {
        self.inner.get_shared(name)
    }

    fn query(&self, query: BlobQuery) -> BoxFuture<'_, Result<BlobAnswer, Refusal>> {
        Box::pin(async move {
            if let BlobQuery::PutProvider { record } = &query
                && let Err(e) = check(record.peer_id, &record.peer)
            {
                let detail = format!("provider record: {e}");
                return Err(Refusal::new(RefusalKind::Invalid, detail));
            }
            self.inner.query(query).await
        })
    }
}
