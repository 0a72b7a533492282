//! The server-side layers every transport gets around a peer's handlers (the client side is
//! [`super::layers`]): the protocol-version check (a clear rejection and
//! `chordnet_peer_protocol_rejections_total`), the identity mutual TLS proves (a `from` or a
//! provider record the connection's certificate does not name is refused), the ring secret's
//! authenticator check when one is set, and at most `transport.max_transfers` transfers at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::debug;

use super::auth::RingAuth;
use super::auth::serve::{AuthBlob, AuthRing};
use super::tls::identity::{IdentityBlob, IdentityRing};
use super::{
    BlobAnswer, BlobHandler, BlobQuery, Body, BoxFuture, Handlers, Object, PutReply, Refusal,
    RefusalKind, RingHandler, TraceCarrier,
};
use crate::config::Config;
use crate::id::Id;
use crate::metrics::Metrics;
use crate::wire::files::FileMeta;
use crate::wire::ring::{Rejection, RequestEnvelope, Response, ResponseEnvelope};
use crate::wire::{Peer, protocol_supported};

/// The server-side layers around a peer's handlers.
pub fn serving(handlers: Handlers, me: Peer, config: &Config, metrics: Metrics) -> Handlers {
    serving_with(handlers, me, config, metrics, None)
}

/// [`serving`], and with a ring secret every request must carry a valid authenticator
/// (checked before anything else is done for it).
pub fn serving_with(
    handlers: Handlers,
    me: Peer,
    config: &Config,
    metrics: Metrics,
    auth: Option<Arc<RingAuth>>,
) -> Handlers {
    let limited: Arc<dyn BlobHandler> = Arc::new(LimitedBlob {
        inner: handlers.blob,
        transfers: Arc::new(Semaphore::new(config.transport.max_transfers.max(1))),
        wait: config.transport.progress_timeout,
    });
    // With mutual TLS, a message speaks only for the peer its connection's certificate names
    // (a no-op on plain connections).
    let limited: Arc<dyn BlobHandler> = Arc::new(IdentityBlob { inner: limited });
    let (ring, blob): (Arc<dyn RingHandler>, Arc<dyn BlobHandler>) = match auth {
        Some(auth) => (
            Arc::new(AuthRing {
                inner: handlers.ring,
                auth: Arc::clone(&auth),
                me: me.clone(),
            }),
            Arc::new(AuthBlob {
                inner: limited,
                auth,
            }),
        ),
        None => (handlers.ring, limited),
    };
    let ring = Arc::new(IdentityRing {
        inner: ring,
        me: me.clone(),
        metrics: metrics.clone(),
    });
    Handlers {
        ring: Arc::new(CheckedRing {
            inner: ring,
            me,
            metrics,
        }),
        blob,
    }
}

struct CheckedRing {
    inner: Arc<dyn RingHandler>,
    me: Peer,
    metrics: Metrics,
}

impl RingHandler for CheckedRing {
    fn handle(
        &self,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'_, ResponseEnvelope> {
        if !protocol_supported(request.protocol) {
            self.metrics.protocol_rejections.inc();
            debug!(from = %request.from, version = request.protocol, "refused a message in an unknown peer-protocol version");
            let answer = ResponseEnvelope::protocol_mismatch(self.me.clone(), request.protocol);
            return Box::pin(std::future::ready(answer));
        }
        self.inner.handle(request, trace)
    }
}

/// Is a rejection one of protocol versions?
pub fn is_protocol_rejection(r: &ResponseEnvelope) -> bool {
    matches!(
        r.body,
        Response::Rejected {
            reason: Rejection::Protocol { .. }
        }
    )
}

struct LimitedBlob {
    inner: Arc<dyn BlobHandler>,
    transfers: Arc<Semaphore>,
    /// How long a transfer waits for its turn before the peer says it is busy.
    wait: Duration,
}

impl LimitedBlob {
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        match tokio::time::timeout(self.wait, self.transfers.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Refusal::new(
                RefusalKind::Unavailable,
                "too many transfers at once; try again",
            )),
        }
    }
}

impl BlobHandler for LimitedBlob {
    fn put(&self, meta: FileMeta, body: Option<Body>) -> BoxFuture<'_, Result<PutReply, Refusal>> {
        Box::pin(async move {
            let _permit = match body {
                Some(_) => Some(self.permit().await?),
                None => None,
            };
            self.inner.put(meta, body).await
        })
    }

    fn get(&self, id: Id) -> BoxFuture<'_, Result<Option<Object>, Refusal>> {
        Box::pin(async move {
            let permit = self.permit().await?;
            Ok(self.inner.get(id).await?.map(|o| Object {
                meta: o.meta,
                body: o.body.holding(permit),
            }))
        })
    }

    fn get_shared<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Body>, Refusal>> {
        Box::pin(async move {
            let permit = self.permit().await?;
            Ok(self
                .inner
                .get_shared(name)
                .await?
                .map(|b| b.holding(permit)))
        })
    }

    fn query(&self, query: BlobQuery) -> BoxFuture<'_, Result<BlobAnswer, Refusal>> {
        self.inner.query(query)
    }
}
