//! What every transport gets for free, on both sides of both planes.
//!
//! Client side ([`Layered`], wrapping a transport's [`Clients`]):
//! - **loopback**: a call to this peer's own address goes straight to its handlers;
//! - **deadlines by call class**: control calls get `ring.rpc_timeout`; a transfer gets
//!   `transport.bulk_floor + size / transport.min_transfer_rate` and fails as soon as no byte
//!   moved for `transport.progress_timeout` (never one total time-out for every size);
//! - **limits**: at most `transport.max_transfers` transfers at once (the others wait);
//! - **metrics** (`chordnet_peer_rpcs_total{method,outcome}`, `..._duration_seconds`), a client
//!   span per data-plane call, and the caller's trace context handed to the transport;
//! - answers in a protocol version this build does not speak are refused;
//! - test-only fault injection ([`super::faults`], off unless a test sets its variable);
//! - the deadline of the call in progress, for transports whose protocol carries one
//!   ([`time_left`]: gRPC sends it as `grpc-timeout`, so the server stops work when it passes).
//!
//! Server side: [`super::serving`] (re-exported here as [`serving`] and [`serving_with`]).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, debug};

use super::auth::serve::{answer_digest, answer_method, method};
use super::auth::{AuthFailure, FIELD, RingAuth, digest_bytes, digest_json, digest_put};
use super::faults::Faults;
pub use super::serving::{is_protocol_rejection, serving, serving_with};
use super::{
    BlobAnswer, BlobClient, BlobQuery, Body, BoxFuture, CallClass, Clients, Handlers, Object,
    PutReply, RingClient, TraceCarrier, TransportError,
};
use crate::config::Config;
use crate::id::Id;
use crate::metrics::Metrics;
use crate::telemetry::peer_call_span;
use crate::wire::files::FileMeta;
use crate::wire::ring::{Rejection, RequestEnvelope, Response, ResponseEnvelope};
use crate::wire::{Address, protocol_supported};

tokio::task_local! {
    /// When the call in progress must be done (set around control calls).
    static DEADLINE: tokio::time::Instant;
}

/// What is left of the deadline of the control call in progress, if the caller runs inside one
/// (a transport's client is called by [`Layered`] within it). `None` outside a call, and for
/// transfers (whose limit grows with the size and is enforced on the body, not as one total).
pub fn time_left() -> Option<Duration> {
    DEADLINE
        .try_with(|d| d.saturating_duration_since(tokio::time::Instant::now()))
        .ok()
}

/// Runs `call` with `limit` as the deadline [`time_left`] reports, and fails it when it passes.
pub(crate) async fn with_deadline<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    let deadline = tokio::time::Instant::now() + limit;
    match tokio::time::timeout_at(deadline, DEADLINE.scope(deadline, call)).await {
        // A transport that carries the deadline may hear of it from the peer first: the
        // deadline that passed is this one, whoever noticed.
        Ok(Err(TransportError::Timeout(_))) | Err(_) => Err(TransportError::Timeout(limit)),
        Ok(answer) => answer,
    }
}

/// The deadlines of each call class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    pub rpc_timeout: Duration,
    pub bulk_floor: Duration,
    /// Bytes per second.
    pub min_transfer_rate: u64,
    pub progress_timeout: Duration,
}

impl Deadlines {
    pub fn from_config(config: &Config) -> Deadlines {
        Deadlines {
            rpc_timeout: config.ring.rpc_timeout,
            bulk_floor: config.transport.bulk_floor,
            min_transfer_rate: config.transport.min_transfer_rate.max(1),
            progress_timeout: config.transport.progress_timeout,
        }
    }

    /// The whole-call limit of a call of `class`.
    pub fn limit(&self, class: CallClass) -> Duration {
        match class {
            CallClass::Control => self.rpc_timeout,
            CallClass::Bulk { bytes } => {
                let secs = bytes as f64 / self.min_transfer_rate as f64;
                self.bulk_floor
                    .max(self.rpc_timeout)
                    .saturating_add(Duration::from_secs_f64(secs.min(1e9)))
            }
        }
    }
}

/// A transport's clients with the shared layers around them.
pub struct Layered {
    inner: Clients,
    me: Address,
    local: OnceLock<Handlers>,
    deadlines: Deadlines,
    transfers: Arc<Semaphore>,
    metrics: Metrics,
    faults: Faults,
    /// The ring secret that signs every message to another peer, when one is configured.
    auth: OnceLock<Arc<RingAuth>>,
}

impl Layered {
    pub fn new(inner: Clients, me: Address, config: &Config, metrics: Metrics) -> Arc<Layered> {
        Arc::new(Layered {
            inner,
            me,
            local: OnceLock::new(),
            deadlines: Deadlines::from_config(config),
            transfers: Arc::new(Semaphore::new(config.transport.max_transfers.max(1))),
            metrics,
            faults: Faults::from_env(),
            auth: OnceLock::new(),
        })
    }

    /// Signs every message to another peer with `auth` (set once, before the first call).
    pub fn set_auth(&self, auth: Arc<RingAuth>) {
        let _ = self.auth.set(auth);
    }

    /// `trace` with an authenticator for a message of `method` digesting to `digest`.
    fn signed(
        &self,
        mut trace: TraceCarrier,
        method: &str,
        digest: impl FnOnce() -> [u8; 32],
    ) -> TraceCarrier {
        if let Some(auth) = self.auth.get() {
            auth.sign_into(&mut trace, method, &digest(), None);
        }
        trace
    }

    /// Connects calls to oneself with this peer's handlers (set once, after they exist).
    pub fn set_local(&self, handlers: Handlers) {
        let _ = self.local.set(handlers);
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    fn local(&self, to: &Address) -> Option<&Handlers> {
        (*to == self.me).then(|| self.local.get()).flatten()
    }

    fn record(&self, method: &'static str, started: Instant, outcome: &'static str) {
        self.metrics
            .rpcs
            .with_label_values(&[method, outcome])
            .inc();
        self.metrics
            .rpc_duration
            .with_label_values(&[method])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Runs one data-plane call with its deadline, span and metrics.
    async fn blob_call<T>(
        &self,
        method: &'static str,
        to: &Address,
        class: CallClass,
        call: impl std::future::Future<Output = Result<T, TransportError>>,
    ) -> Result<T, TransportError> {
        let span = peer_call_span(method, to);
        let started = Instant::now();
        let limit = self.deadlines.limit(class);
        let call = call.instrument(span.clone());
        let answer = match class {
            CallClass::Control => with_deadline(limit, call).await,
            CallClass::Bulk { .. } => match tokio::time::timeout(limit, call).await {
                Ok(answer) => answer,
                Err(_) => Err(TransportError::Timeout(limit)),
            },
        };
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                debug!(peer = %to, method, error = %e, "peer call failed");
                e.label()
            }
        };
        self.record(method, started, outcome);
        answer
    }

    fn bulk_body(&self, body: Body, limit: Duration) -> Body {
        body.with_progress_timeout(self.deadlines.progress_timeout)
            .with_deadline(limit)
    }

    /// One of the `transport.max_transfers` slots (waits for its turn).
    async fn transfer_slot(&self) -> Result<OwnedSemaphorePermit, TransportError> {
        self.transfers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| TransportError::Unreachable("the peer is shutting down".into()))
    }

    /// A received body under what is left of its transfer's deadline (counted from `started`,
    /// when the request went out), holding the transfer's slot until it ends.
    fn incoming(&self, body: Body, started: Instant, slot: OwnedSemaphorePermit) -> Body {
        let limit = self
            .deadlines
            .limit(CallClass::Bulk { bytes: body.len() })
            .saturating_sub(started.elapsed());
        self.bulk_body(body, limit).holding(slot)
    }
}

impl RingClient for Layered {
    fn call<'a>(
        &'a self,
        to: &'a Address,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<ResponseEnvelope, TransportError>> {
        Box::pin(async move {
            let method = request.body.method();
            let started = Instant::now();
            let limit = self.deadlines.rpc_timeout;
            let call = async {
                match self.local(to) {
                    Some(local) => Ok(local.ring.handle(request, trace).await),
                    None => {
                        self.faults.check(to)?;
                        let Some(auth) = self.auth.get() else {
                            return self.inner.ring.call(to, request, trace).await;
                        };
                        let mut trace = trace;
                        let digest = digest_json(&request);
                        let ring = Some(request.ring_id);
                        auth.sign_into(&mut trace, &method::ring(&request), &digest, ring);
                        let asked = trace.field(FIELD).unwrap_or_default().to_owned();
                        let answered = answer_method(&request);
                        let answer = self.inner.ring.call(to, request, trace).await?;
                        verified_answer(auth, answer, &answered, &asked, to)
                    }
                }
            };
            let answer = match with_deadline(limit, call).await {
                Ok(r) if !protocol_supported(r.protocol) => Err(TransportError::Protocol(format!(
                    "{to} answered in peer-protocol version {}",
                    r.protocol
                ))),
                answer => answer,
            };
            let outcome = match &answer {
                Ok(ResponseEnvelope {
                    body: Response::Rejected { .. },
                    ..
                }) => "rejected",
                Ok(_) => "ok",
                Err(e) => e.label(),
            };
            self.record(method, started, outcome);
            if let Err(e) = &answer {
                debug!(peer = %to, method, error = %e, "peer RPC failed");
            }
            answer
        })
    }
}

impl BlobClient for Layered {
    fn put<'a>(
        &'a self,
        to: &'a Address,
        meta: FileMeta,
        body: Option<Body>,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<PutReply, TransportError>> {
        Box::pin(async move {
            let class = match &body {
                Some(b) => CallClass::Bulk { bytes: b.len() },
                None => CallClass::Control,
            };
            let limit = self.deadlines.limit(class);
            let _slot = match &body {
                Some(_) => Some(self.transfer_slot().await?),
                None => None,
            };
            let body = body.map(|b| self.bulk_body(b, limit));
            self.blob_call("put_object", to, class, async {
                let trace = trace_in_span(trace);
                match self.local(to) {
                    Some(local) => local
                        .blob
                        .put(meta, body)
                        .await
                        .map_err(TransportError::Refused),
                    None => {
                        self.faults.check(to)?;
                        let len = body.as_ref().map(Body::len);
                        let trace = self.signed(trace, method::PUT, || digest_put(&meta, len));
                        self.inner.blob.put(to, meta, body, trace).await
                    }
                }
            })
            .await
        })
    }

    fn get<'a>(
        &'a self,
        to: &'a Address,
        id: Id,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Object>, TransportError>> {
        Box::pin(async move {
            let slot = self.transfer_slot().await?;
            let started = Instant::now();
            // Until the metadata arrives the size is unknown: the header phase gets the floor.
            let object = self
                .blob_call("get_object", to, CallClass::Bulk { bytes: 0 }, async {
                    let trace = trace_in_span(trace);
                    match self.local(to) {
                        Some(local) => local.blob.get(id).await.map_err(TransportError::Refused),
                        None => {
                            self.faults.check(to)?;
                            let trace = self.signed(trace, method::GET, || {
                                digest_bytes(id.to_string().as_bytes())
                            });
                            self.inner.blob.get(to, id, trace).await
                        }
                    }
                })
                .await?;
            Ok(object.map(|o| Object {
                meta: o.meta,
                body: self.incoming(o.body, started, slot),
            }))
        })
    }

    fn get_shared<'a>(
        &'a self,
        to: &'a Address,
        name: &'a str,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Body>, TransportError>> {
        Box::pin(async move {
            let slot = self.transfer_slot().await?;
            let started = Instant::now();
            let body = self
                .blob_call("get_shared", to, CallClass::Bulk { bytes: 0 }, async {
                    let trace = trace_in_span(trace);
                    match self.local(to) {
                        Some(local) => local
                            .blob
                            .get_shared(name)
                            .await
                            .map_err(TransportError::Refused),
                        None => {
                            self.faults.check(to)?;
                            let trace = self.signed(trace, method::GET_SHARED, || {
                                digest_bytes(name.as_bytes())
                            });
                            self.inner.blob.get_shared(to, name, trace).await
                        }
                    }
                })
                .await?;
            Ok(body.map(|b| self.incoming(b, started, slot)))
        })
    }

    fn query<'a>(
        &'a self,
        to: &'a Address,
        query: BlobQuery,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<BlobAnswer, TransportError>> {
        Box::pin(async move {
            let method = match &query {
                BlobQuery::Info { .. } => "object_info",
                BlobQuery::PutProvider { .. } => "put_provider",
                BlobQuery::Missing { .. } => "missing",
                BlobQuery::Referenced { .. } => "referenced",
                BlobQuery::SharedManifest { .. } => "shared_manifest",
            };
            self.blob_call(method, to, CallClass::Control, async {
                let trace = trace_in_span(trace);
                match self.local(to) {
                    Some(local) => local
                        .blob
                        .query(query)
                        .await
                        .map_err(TransportError::Refused),
                    None => {
                        self.faults.check(to)?;
                        let trace = self.signed(trace, method::QUERY, || digest_json(&query));
                        self.inner.blob.query(to, query, trace).await
                    }
                }
            })
            .await
        })
    }
}

/// An answer from a peer with a ring secret, if it is signed by the peer it claims to come
/// from, for the request it answers. Unsigned refusals pass (a peer that could not check the
/// request cannot sign; they change nothing); anything else unsigned or wrongly signed is no
/// answer at all (a fake peer cannot answer lookups or let this one join its ring).
fn verified_answer(
    auth: &RingAuth,
    mut answer: ResponseEnvelope,
    method: &str,
    asked: &str,
    to: &Address,
) -> Result<ResponseEnvelope, TransportError> {
    let Some(signed) = answer.auth.take() else {
        return match answer.body {
            Response::Rejected {
                reason: Rejection::Unauthenticated | Rejection::Protocol { .. },
            } => Ok(answer),
            _ => {
                auth.reject(AuthFailure::Missing, method);
                Err(unauthenticated(to))
            }
        };
    };
    let mut carrier = TraceCarrier::default();
    carrier.set_field(FIELD, signed);
    match auth.verify(&carrier, method, &answer_digest(&answer, asked)) {
        Ok(v) if v.sender == answer.from.id => Ok(answer),
        Ok(_) => {
            auth.reject(AuthFailure::Spoofed, method);
            Err(unauthenticated(to))
        }
        Err(_) => Err(unauthenticated(to)),
    }
}

fn unauthenticated(to: &Address) -> TransportError {
    TransportError::Protocol(format!(
        "{to} answered without a valid ring-secret authenticator"
    ))
}

/// The caller's context, or the client span's when the caller passed none (the usual case:
/// callers pass [`TraceCarrier::current`], taken before the client span exists).
fn trace_in_span(trace: TraceCarrier) -> TraceCarrier {
    let inner = TraceCarrier::current();
    if inner.is_empty() { trace } else { inner }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_deadlines_grow_with_size_and_control_ones_do_not() {
        let d = Deadlines {
            rpc_timeout: Duration::from_millis(200),
            bulk_floor: Duration::from_secs(10),
            min_transfer_rate: 1 << 20,
            progress_timeout: Duration::from_secs(5),
        };
        assert_eq!(d.limit(CallClass::Control), Duration::from_millis(200));
        assert_eq!(
            d.limit(CallClass::Bulk { bytes: 0 }),
            Duration::from_secs(10)
        );
        assert_eq!(
            d.limit(CallClass::Bulk { bytes: 256 << 20 }),
            Duration::from_secs(10 + 256)
        );
    }
}
