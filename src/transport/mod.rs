//! How peers reach each other. The ring speaks in [`RequestEnvelope`]s and
//! [`ResponseEnvelope`]s; a [`Transport`] carries one request to a peer and brings back its
//! answer. HTTP/JSON is the first implementation; gRPC or a message broker plug in here, and the
//! simulator's virtual network is the same seam without sockets.

pub mod http;

use std::future::Future;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::files::{FileMeta, ProviderRecord, Version};
use crate::id::Id;
use crate::ring::{Address, RequestEnvelope, ResponseEnvelope};
pub use crate::telemetry::TraceCarrier;

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

/// Carries one request to the peer at `to` and returns its answer. Implementations send the
/// current trace context along ([`TraceCarrier::current`]) in their protocol's metadata.
pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        to: &Address,
        request: RequestEnvelope,
    ) -> impl Future<Output = Result<ResponseEnvelope, TransportError>> + Send;
}

/// The receiving side: answers a peer's request (the ring node behind it). `trace` is the
/// caller's trace context as the transport received it (empty when it sent none).
pub trait RequestHandler: Send + Sync + 'static {
    fn handle(&self, request: RequestEnvelope, trace: &TraceCarrier) -> ResponseEnvelope;
}

/// A peer's answer to storing an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutReply {
    /// The object was stored (it was newer than the peer's copy).
    pub stored: bool,
    /// It replaced a live version.
    pub replaced: bool,
    /// The peer's version after the call.
    pub current: FileMeta,
}

/// What a peer knows about a key: its stored version (or tombstone) and the providers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub meta: Option<FileMeta>,
    pub providers: Vec<ProviderRecord>,
}

/// The file data plane between peers: content, provider records and replica reconciliation.
pub trait FileTransport: Send + Sync + 'static {
    /// Stores `meta` (with `data` unless it is a tombstone) at the peer, if newer.
    fn put_object(
        &self,
        to: &Address,
        meta: &FileMeta,
        data: Option<Bytes>,
    ) -> impl Future<Output = Result<PutReply, TransportError>> + Send;
    /// The peer's live copy of `id`, if it has one.
    fn get_object(
        &self,
        to: &Address,
        id: Id,
    ) -> impl Future<Output = Result<Option<(FileMeta, Bytes)>, TransportError>> + Send;
    fn object_info(
        &self,
        to: &Address,
        id: Id,
    ) -> impl Future<Output = Result<ObjectInfo, TransportError>> + Send;
    fn put_provider(
        &self,
        to: &Address,
        record: &ProviderRecord,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// A file from the peer's shared directory, if it shares it.
    fn get_shared(
        &self,
        to: &Address,
        name: &str,
    ) -> impl Future<Output = Result<Option<Bytes>, TransportError>> + Send;
    /// Which of these versions the peer lacks (or holds older).
    fn missing(
        &self,
        to: &Address,
        have: &[(Id, Version)],
    ) -> impl Future<Output = Result<Vec<Id>, TransportError>> + Send;
}

/// The receiving side of the file data plane.
pub trait FileHandler: Send + Sync + 'static {
    fn put_object(&self, meta: FileMeta, data: Option<Bytes>) -> Result<PutReply, String>;
    fn get_object(&self, id: Id) -> Option<(FileMeta, Bytes)>;
    fn object_info(&self, id: Id) -> ObjectInfo;
    fn put_provider(&self, record: ProviderRecord);
    fn get_shared(&self, name: &str) -> Option<Bytes>;
    fn missing(&self, have: Vec<(Id, Version)>) -> Vec<Id>;
}

/// Objects travel as one body: a 4-byte big-endian length, the JSON metadata, then the bytes
/// (binary-safe for any name, no extra encoding of the content).
pub fn frame_object(meta: &FileMeta, data: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(meta).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + json.len() + data.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

/// The inverse of [`frame_object`].
pub fn unframe_object(body: Bytes) -> Result<(FileMeta, Bytes), String> {
    if body.len() < 4 {
        return Err("object frame too short".into());
    }
    let len = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    if body.len() < 4 + len {
        return Err("object frame truncated".into());
    }
    let meta: FileMeta =
        serde_json::from_slice(&body[4..4 + len]).map_err(|e| format!("object metadata: {e}"))?;
    Ok((meta, body.slice(4 + len..)))
}
