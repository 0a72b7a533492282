//! How peers reach each other: two planes behind object-safe traits, one factory per transport,
//! and the layers every transport gets for free.
//!
//! - **Control plane** (the ring): [`RingClient::call`] carries one small
//!   [`RequestEnvelope`] to a peer and brings back its [`ResponseEnvelope`]; [`RingHandler`]
//!   answers on the other side.
//! - **Data plane** (files): [`BlobClient`] / [`BlobHandler`] move objects whose content is a
//!   byte *stream* of known length ([`Body`]), never a whole-file buffer, plus small queries
//!   ([`BlobQuery`]). A handler refuses with a typed [`Refusal`] that every transport maps to
//!   its own status codes and back.
//! - A transport is one module (`http/`, `grpc/`, `nats/`, `memory/`) exporting a [`TransportFactory`]: it parses
//!   its addresses, tells whether one still resolves, builds clients and serves both planes.
//!   [`registry`] holds the only `match` over [`TransportKind`]s.
//! - [`layers`] wraps every transport's clients and handlers with what they share: calls to
//!   oneself (loopback), deadlines by call class, concurrency limits for transfers, metrics,
//!   client spans and trace context, and the protocol-version check.

pub mod auth;
pub mod body;
pub mod faults;
pub mod grpc;
pub mod http;
pub mod layers;
pub mod memory;
pub mod nats;
pub mod registry;
pub mod serving;
pub mod tcp;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::TransportKind;
use crate::id::Id;
pub use crate::telemetry::TraceCarrier;
use crate::wire::Address;
pub use crate::wire::files::{BlobAnswer, BlobQuery, ObjectInfo, PutReply};
use crate::wire::files::{FileMeta, Version};
use crate::wire::ring::{RequestEnvelope, ResponseEnvelope};
pub use body::{Body, BodyError};

/// A boxed future, as the object-safe traits return (one allocation per network call costs
/// nothing next to a round trip).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a call got no (usable) answer. To the ring, all of these mean "no response".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The other side is not a peer this one can talk to: another `transport.kind`, or not a
    /// chordnet peer at all. Says which and what to change.
    #[error("{0}")]
    Incompatible(String),
    /// The peer answered, and refused.
    #[error("{0}")]
    Refused(Refusal),
    /// A body stream failed or stalled.
    #[error("transfer failed: {0}")]
    Body(#[from] BodyError),
}

impl TransportError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            TransportError::Timeout(_) => "timeout",
            TransportError::Unreachable(_) => "unreachable",
            TransportError::Protocol(_) => "protocol_error",
            TransportError::Incompatible(_) => "incompatible",
            TransportError::Refused(_) => "refused",
            TransportError::Body(_) => "transfer_error",
        }
    }

    /// The peer's refusal, if it refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            TransportError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// Why a data-plane handler refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// The request is malformed or breaks a rule (bad id, clock too far ahead, bad content).
    Invalid,
    /// This peer takes no copies now (leaving, not a ring member, or too busy).
    Unavailable,
    /// This peer's disk cannot hold it.
    InsufficientStorage,
    /// Something broke on the peer's side.
    Internal,
}

impl RefusalKind {
    /// A stable name for the wire and for metrics.
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::Invalid => "invalid",
            RefusalKind::Unavailable => "unavailable",
            RefusalKind::InsufficientStorage => "insufficient_storage",
            RefusalKind::Internal => "internal",
        }
    }

    pub fn from_name(name: &str) -> RefusalKind {
        match name {
            "invalid" => RefusalKind::Invalid,
            "unavailable" => RefusalKind::Unavailable,
            "insufficient_storage" => RefusalKind::InsufficientStorage,
            _ => RefusalKind::Internal,
        }
    }
}

/// A typed refusal with the peer's explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer refused ({}): {detail}", kind.name())]
pub struct Refusal {
    pub kind: RefusalKind,
    pub detail: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, detail: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            detail: detail.into(),
        }
    }
}

/// Which deadline a call gets (see [`layers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallClass {
    /// Small request, small answer: `ring.rpc_timeout`.
    Control,
    /// A transfer of `bytes`: `transport.bulk_floor + bytes / transport.min_transfer_rate`,
    /// and no gap longer than `transport.progress_timeout`.
    Bulk { bytes: u64 },
}

/// The control plane's client side.
pub trait RingClient: Send + Sync + 'static {
    /// Carries `request` to the peer at `to`. Implementations send `trace` (the caller's trace
    /// context) in their protocol's metadata.
    fn call<'a>(
        &'a self,
        to: &'a Address,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<ResponseEnvelope, TransportError>>;
}

/// The control plane's serving side: answers a peer's request. `trace` is the caller's trace
/// context as the transport received it (empty when it sent none).
pub trait RingHandler: Send + Sync + 'static {
    fn handle(
        &self,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'_, ResponseEnvelope>;
}

/// An object as the data plane returns it: its metadata and a stream of its content.
pub struct Object {
    pub meta: FileMeta,
    pub body: Body,
}

/// The data plane's client side.
pub trait BlobClient: Send + Sync + 'static {
    /// Stores `meta` at the peer (with `body` unless it is a tombstone), if newer than its copy.
    fn put<'a>(
        &'a self,
        to: &'a Address,
        meta: FileMeta,
        body: Option<Body>,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<PutReply, TransportError>>;
    /// The peer's live copy of `id`, if it has one.
    fn get<'a>(
        &'a self,
        to: &'a Address,
        id: Id,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Object>, TransportError>>;
    /// A file from the peer's shared directory, if it shares it.
    fn get_shared<'a>(
        &'a self,
        to: &'a Address,
        name: &'a str,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Body>, TransportError>>;
    fn query<'a>(
        &'a self,
        to: &'a Address,
        query: BlobQuery,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<BlobAnswer, TransportError>>;
}

/// The data plane's serving side (the file layer behind it).
pub trait BlobHandler: Send + Sync + 'static {
    fn put(&self, meta: FileMeta, body: Option<Body>) -> BoxFuture<'_, Result<PutReply, Refusal>>;
    fn get(&self, id: Id) -> BoxFuture<'_, Result<Option<Object>, Refusal>>;
    fn get_shared<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Body>, Refusal>>;
    fn query(&self, query: BlobQuery) -> BoxFuture<'_, Result<BlobAnswer, Refusal>>;
}

/// What a peer serves: both planes.
#[derive(Clone)]
pub struct Handlers {
    pub ring: Arc<dyn RingHandler>,
    pub blob: Arc<dyn BlobHandler>,
}

/// How a transport's clients treat their connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Bounds connection set-up only; deadlines are the layers' job.
    pub connect_timeout: Duration,
    /// A connection that carried nothing for this long is closed (`transport.idle_timeout`).
    pub idle_timeout: Duration,
}

impl ClientOptions {
    /// A peer's: connections set up within `ring.rpc_timeout`, closed after
    /// `transport.idle_timeout` unused.
    pub fn from_config(config: &crate::config::Config) -> ClientOptions {
        ClientOptions {
            connect_timeout: config.ring.rpc_timeout,
            idle_timeout: config.transport.idle_timeout,
        }
    }

    /// `connect_timeout`, with the default idle time-out (tests, tools).
    pub fn connect_within(connect_timeout: Duration) -> ClientOptions {
        ClientOptions {
            connect_timeout,
            idle_timeout: crate::config::TransportConfig::default().idle_timeout,
        }
    }
}

/// A transport's clients for both planes.
#[derive(Clone)]
pub struct Clients {
    pub ring: Arc<dyn RingClient>,
    pub blob: Arc<dyn BlobClient>,
}

impl Clients {
    /// One client that serves both planes.
    pub fn both<C: RingClient + BlobClient>(client: Arc<C>) -> Clients {
        Clients {
            ring: client.clone(),
            blob: client,
        }
    }
}

/// Where and how a peer serves the peer protocol.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The socket to listen on (transports without sockets ignore it).
    pub listen: std::net::SocketAddr,
    /// The address other peers reach this one at.
    pub advertise: Address,
    /// The largest object body the server accepts.
    pub max_body: u64,
    /// Whether the peer is ready (the rules of `/readyz`), for transports with a health service
    /// of their own (gRPC's `grpc.health.v1`).
    pub ready: tokio::sync::watch::Receiver<bool>,
}

/// A running peer-protocol server.
pub struct Serving {
    /// What it actually listens on (a socket address, or the advertised name).
    pub local: String,
    /// Completes once the server stopped (after the shutdown signal).
    pub task: tokio::task::JoinHandle<()>,
}

/// Why an address is not one this transport can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address:?} is not a {kind} peer address: {reason}")]
pub struct AddressError {
    pub kind: &'static str,
    pub address: String,
    pub reason: String,
}

/// One transport: everything the rest of the crate needs from it.
pub trait TransportFactory: Send + Sync + 'static {
    /// The config value that selects it (`transport.kind`).
    fn kind(&self) -> TransportKind;
    /// Checks and normalises an address of this transport.
    fn parse_address(&self, text: &str) -> Result<Address, AddressError>;
    /// Whether `address` still names a peer that may exist (a DNS name that resolves): the
    /// founder rule's "this seed is gone" input.
    fn resolves<'a>(&'a self, address: &'a Address) -> BoxFuture<'a, bool>;
    /// Clients for both planes.
    fn clients(&self, options: ClientOptions) -> Result<Clients, TransportError>;
    /// Serves both planes until `shutdown` turns true.
    fn serve(
        &self,
        options: ServeOptions,
        handlers: Handlers,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<Serving, ServeError>>;
    /// This transport with mutual TLS on the peer port (`security.tls`); `None` for transports
    /// that do not speak TLS between peers (NATS, memory).
    fn with_tls(&self, tls: Arc<tls::PeerTls>) -> Option<Arc<dyn TransportFactory>> {
        let _ = tls;
        None
    }
    /// Why the transport cannot carry calls now (a broker connection lost), for `/readyz`;
    /// `None` when it can (transports without a shared connection always can).
    fn not_ready(&self) -> Option<String> {
        None
    }
}

/// Why a transport could not start serving.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the peer protocol on {what}: {source}")]
pub struct ServeError {
    pub what: String,
    pub source: std::io::Error,
}

/// The most entries one `missing` or `referenced` query carries (a peer refuses more; longer
/// lists go in several queries).
pub const MAX_BATCH: usize = 10_000;

/// A peer's answer to "which of these do you lack", as a convenience over [`BlobQuery`]
/// (in batches of at most [`MAX_BATCH`]; an answer names only ids that were asked about).
pub async fn missing(
    blob: &dyn BlobClient,
    to: &Address,
    have: Vec<(Id, Version)>,
) -> Result<Vec<Id>, TransportError> {
    let mut out = Vec::new();
    for batch in have.chunks(MAX_BATCH) {
        let query = BlobQuery::Missing {
            have: batch.to_vec(),
        };
        match blob.query(to, query, TraceCarrier::current()).await? {
            BlobAnswer::Missing { ids } => {
                let asked: std::collections::HashSet<Id> =
                    batch.iter().map(|(id, _)| *id).collect();
                out.extend(
                    ids.into_iter()
                        .filter(|id| asked.contains(id))
                        .take(batch.len()),
                );
            }
            other => return Err(unexpected(to, &other)),
        }
    }
    Ok(out)
}

/// What a peer knows about `id`.
pub async fn info(
    blob: &dyn BlobClient,
    to: &Address,
    id: Id,
) -> Result<ObjectInfo, TransportError> {
    match blob
        .query(to, BlobQuery::Info { id }, TraceCarrier::current())
        .await?
    {
        BlobAnswer::Info(info) => Ok(info),
        other => Err(unexpected(to, &other)),
    }
}

/// A message as JSON, for transports whose frames carry JSON (gRPC's and NATS's clients).
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<bytes::Bytes, TransportError> {
    serde_json::to_vec(value)
        .map(bytes::Bytes::from)
        .map_err(|e| TransportError::Protocol(format!("cannot encode a message: {e}")))
}

/// A peer's JSON answer, or a protocol error naming the peer.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    to: &Address,
    json: &[u8],
) -> Result<T, TransportError> {
    serde_json::from_slice(json)
        .map_err(|e| TransportError::Protocol(format!("{to} answered bad JSON: {e}")))
}

fn unexpected(to: &Address, answer: &BlobAnswer) -> TransportError {
    TransportError::Protocol(format!("{to} gave an unexpected answer: {answer:?}"))
}
