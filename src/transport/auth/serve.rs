//! The ring secret on the serving side: handlers that act only on authenticated messages.
//! (The client side signs in [`super::super::layers::Layered`].)

use std::sync::Arc;

use super::{AuthFailure, RingAuth, digest_bytes, digest_json, digest_put, received_carrier};
use crate::id::Id;
use crate::transport::{
    BlobAnswer, BlobHandler, BlobQuery, Body, BoxFuture, Object, PutReply, Refusal, RefusalKind,
    RingHandler, TraceCarrier,
};
use crate::wire::Peer;
use crate::wire::files::FileMeta;
use crate::wire::ring::{Rejection, RequestEnvelope, Response, ResponseEnvelope};

/// The method names the authenticators of each message cover.
pub mod method {
    pub const PUT: &str = "blob/put";
    pub const GET: &str = "blob/get";
    pub const GET_SHARED: &str = "blob/get_shared";
    pub const QUERY: &str = "blob/query";

    /// A ring request's: `ring/` and its method.
    pub fn ring(request: &crate::wire::ring::RequestEnvelope) -> String {
        format!("ring/{}", request.body.method())
    }
}

/// Ring requests pass only with a valid authenticator whose signer is the envelope's `from`.
pub struct AuthRing {
    pub inner: Arc<dyn RingHandler>,
    pub auth: Arc<RingAuth>,
    pub me: Peer,
}

impl AuthRing {
    fn check(&self, request: &RequestEnvelope, trace: &TraceCarrier) -> Result<(), AuthFailure> {
        let method = method::ring(request);
        let verified = self.auth.verify(trace, &method, &digest_json(request))?;
        if verified.sender != request.from.id || verified.ring != request.ring_id {
            self.auth.reject(AuthFailure::Spoofed, &method);
            return Err(AuthFailure::Spoofed);
        }
        Ok(())
    }
}

/// The digest an answer's authenticator covers: the answer (without its authenticator) and the
/// authenticator of the request it answers, so that it answers that request only.
pub fn answer_digest(answer: &ResponseEnvelope, request_auth: &str) -> [u8; 32] {
    digest_json(&(answer, request_auth))
}

/// The method an answer to `request` is signed as.
pub fn answer_method(request: &RequestEnvelope) -> String {
    format!("ring-answer/{}", request.body.method())
}

impl RingHandler for AuthRing {
    fn handle(
        &self,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'_, ResponseEnvelope> {
        match self.check(&request, &trace) {
            Ok(()) => Box::pin(async move {
                let method = answer_method(&request);
                let asked = trace.field(super::FIELD).unwrap_or_default().to_owned();
                let mut answer = self.inner.handle(request, trace).await;
                answer.auth = None;
                let digest = answer_digest(&answer, &asked);
                answer.auth = Some(self.auth.sign(&method, &digest, Some(answer.ring_id)));
                answer
            }),
            // No ring id, no successor list, no reason beyond "not authenticated".
            Err(_) => Box::pin(std::future::ready(ResponseEnvelope::new(
                None,
                self.me.clone(),
                Response::Rejected {
                    reason: Rejection::Unauthenticated,
                },
            ))),
        }
    }
}

/// Data-plane requests pass only with a valid authenticator (read from the carrier the
/// transport handed over with [`super::received`]).
pub struct AuthBlob {
    pub inner: Arc<dyn BlobHandler>,
    pub auth: Arc<RingAuth>,
}

fn refused(_: AuthFailure) -> Refusal {
    Refusal::new(
        RefusalKind::Invalid,
        "the request is not authenticated for this ring (check security.ring_secret_file)",
    )
}

impl AuthBlob {
    fn check(&self, method: &str, digest: &[u8; 32]) -> Result<Id, Refusal> {
        let v = self
            .auth
            .verify(&received_carrier(), method, digest)
            .map_err(refused)?;
        self.auth.check_ring(&v, method).map_err(refused)?;
        Ok(v.sender)
    }
}

impl BlobHandler for AuthBlob {
    fn put(&self, meta: FileMeta, body: Option<Body>) -> BoxFuture<'_, Result<PutReply, Refusal>> {
        Box::pin(async move {
            self.check(
                method::PUT,
                &digest_put(&meta, body.as_ref().map(Body::len)),
            )?;
            self.inner.put(meta, body).await
        })
    }

    fn get(&self, id: Id) -> BoxFuture<'_, Result<Option<Object>, Refusal>> {
        Box::pin(async move {
            self.check(method::GET, &digest_bytes(id.to_string().as_bytes()))?;
            self.inner.get(id).await
        })
    }

    fn get_shared<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Body>, Refusal>> {
        Box::pin(async move {
            self.check(method::GET_SHARED, &digest_bytes(name.as_bytes()))?;
            self.inner.get_shared(name).await
        })
    }

    fn query(&self, query: BlobQuery) -> BoxFuture<'_, Result<BlobAnswer, Refusal>> {
        Box::pin(async move {
            let sender = self.check(method::QUERY, &digest_json(&query))?;
            // A peer publishes its own provider records only.
            if let BlobQuery::PutProvider { record } = &query
                && record.peer_id != sender
            {
                self.auth.reject(AuthFailure::Spoofed, method::QUERY);
                return Err(refused(AuthFailure::Spoofed));
            }
            self.inner.query(query).await
        })
    }
}
