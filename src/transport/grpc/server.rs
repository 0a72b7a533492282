//! The gRPC transport's server: both services on the peer port. Each call checks what the
//! remote party sent (sizes, metadata, order of the parts) before a handler sees it.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
use tracing::field::Empty;

use super::pb::blob_server::{Blob, BlobServer};
use super::pb::ring_server::{Ring, RingServer};
use super::pb::{self, object_part, put_part};
use super::status::{carrier, check_protocol, internal, invalid, refused, too_large};
use super::stream::{chunks, incoming};
use super::{DRAIN, MAX_CHUNK, MAX_META, MAX_QUERY, MAX_RPC};
use crate::id::Id;
use crate::transport::auth::received;
use crate::transport::tls::PeerTls;
use crate::transport::tls::accept::{TlsListener, TlsPeer};
use crate::transport::tls::identity::scoped;
use crate::transport::{BlobQuery, Body, BodyError, Handlers, ServeError, ServeOptions, Serving};
use crate::wire::files::FileMeta;
use crate::wire::ring::RequestEnvelope;

/// Binds `options.listen` and serves both planes until `shutdown` turns true (calls still in
/// flight then get [`DRAIN`] to finish).
pub async fn serve(
    options: ServeOptions,
    handlers: Handlers,
    shutdown: tokio::sync::watch::Receiver<bool>,
    tls: Option<Arc<PeerTls>>,
) -> Result<Serving, ServeError> {
    let (listener, local) = crate::transport::tcp::bind(options.listen).await?;
    let ring = RingServer::new(RingService {
        handlers: handlers.clone(),
    })
    .max_decoding_message_size(MAX_RPC);
    let blob = BlobServer::new(BlobService {
        handlers,
        max_body: options.max_body,
    })
    .max_decoding_message_size(MAX_QUERY)
    .max_encoding_message_size(MAX_QUERY);
    let (health, health_task) = super::health::service(options.ready.clone()).await;
    let (reflection, reflection_alpha) = super::reflection::services().map_err(|e| ServeError {
        what: "gRPC reflection".into(),
        source: std::io::Error::other(e),
    })?;
    let router = Server::builder()
        .trace_fn(server_span)
        .add_service(ring)
        .add_service(blob)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha);
    let task = match tls {
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            tokio::spawn(run(router, incoming, shutdown, health_task))
        }
        Some(tls) => {
            let incoming = TlsListener::new(listener, tls).map_err(|source| ServeError {
                what: local.clone(),
                source,
            })?;
            tokio::spawn(run(router, incoming.into_stream(), shutdown, health_task))
        }
    };
    Ok(Serving { local, task })
}

/// Serves `router` on the connections of `incoming` until `shutdown` turns true.
async fn run<I, IO, IE>(
    router: tonic::transport::server::Router,
    incoming: I,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    health_task: tokio::task::JoinHandle<()>,
) where
    I: futures_util::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut stopping = shutdown.clone();
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let served = router.serve_with_incoming_shutdown(incoming, stop);
    let drained = async move {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        result = served => {
            if let Err(e) = result {
                tracing::warn!(error = %e, "peer-protocol server stopped with an error");
            }
        }
        () = drained => tracing::warn!("calls still in flight after {DRAIN:?}: dropped"),
    }
    health_task.abort();
}

/// The TLS identity of the connection a call arrived on (`None` on a plain connection).
fn identity<T>(request: &Request<T>) -> Option<TlsPeer> {
    request.extensions().get::<TlsPeer>().cloned()
}

/// A server span for each data-plane call (the ring's handler makes its own), continuing the
/// caller's trace.
fn server_span(req: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let path = req.uri().path();
    if !crate::telemetry::enabled() || !path.starts_with("/chordnet.v1.Blob/") {
        return tracing::Span::none();
    }
    let method = path.rsplit('/').next().unwrap_or(path);
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = "chordnet.v1.Blob",
        rpc.method = %method,
    );
    crate::telemetry::http::carrier_from_headers(req.headers()).adopt(&span);
    span
}

fn from_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(json).map_err(|e| invalid(format!("bad JSON: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Bytes, Status> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| internal(format!("cannot encode the answer: {e}")))
}

pub(super) struct RingService {
    handlers: Handlers,
}

#[tonic::async_trait]
impl Ring for RingService {
    async fn call(&self, request: Request<pb::Envelope>) -> Result<Response<pb::Envelope>, Status> {
        let trace = carrier(request.metadata());
        let peer = identity(&request);
        let envelope: RequestEnvelope = from_json(&request.into_inner().json)?;
        let answer = scoped(peer, self.handlers.ring.handle(envelope, trace)).await;
        Ok(Response::new(pb::Envelope {
            json: to_json(&answer)?,
        }))
    }
}

pub(super) struct BlobService {
    handlers: Handlers,
    max_body: u64,
}

type Parts = BoxStream<'static, Result<pb::ObjectPart, Status>>;

/// A stream that starts with `head` and goes on with `body`'s content in chunks; a failing
/// body fails the stream (the caller sees an error, never a short object).
fn object_stream(head: object_part::Part, body: Body) -> Parts {
    let head = stream::once(std::future::ready(Ok(pb::ObjectPart { part: Some(head) })));
    let content = chunks(body).map(|chunk| match chunk {
        Ok(c) => Ok(pb::ObjectPart {
            part: Some(object_part::Part::Chunk(c)),
        }),
        Err(e) => Err(Status::aborted(format!("the content failed: {e}"))),
    });
    head.chain(content).boxed()
}

fn put_content(part: pb::PutPart) -> Result<Bytes, BodyError> {
    match part.part {
        Some(put_part::Part::Chunk(c)) if c.len() <= MAX_CHUNK => Ok(c),
        Some(put_part::Part::Chunk(c)) => Err(BodyError::Io(format!(
            "a chunk of {} bytes (at most {MAX_CHUNK})",
            c.len()
        ))),
        _ => Err(BodyError::Io(
            "a message other than a chunk inside the content".into(),
        )),
    }
}

#[tonic::async_trait]
impl Blob for BlobService {
    async fn put(
        &self,
        request: Request<Streaming<pb::PutPart>>,
    ) -> Result<Response<pb::Json>, Status> {
        check_protocol(request.metadata())?;
        let trace = carrier(request.metadata());
        let mut parts = request.into_inner();
        let meta = match parts.message().await? {
            Some(pb::PutPart {
                part: Some(put_part::Part::Meta(json)),
            }) if json.len() <= MAX_META => from_json::<FileMeta>(&json)?,
            Some(pb::PutPart {
                part: Some(put_part::Part::Meta(json)),
            }) => {
                return Err(invalid(format!(
                    "metadata of {} bytes (at most {MAX_META})",
                    json.len()
                )));
            }
            _ => return Err(invalid("a put starts with the object's metadata")),
        };
        let body = if !meta.has_content() {
            // A tombstone or a manifest carries nothing: make sure of it.
            if parts.message().await?.is_some() {
                return Err(invalid("a tombstone with content"));
            }
            None
        } else {
            if meta.size > self.max_body {
                return Err(too_large(self.max_body));
            }
            Some(incoming(meta.size, parts, put_content))
        };
        // The handler runs on its own task: a caller that goes away resets the HTTP/2 stream
        // and the server drops this call, but the handler must still see its body fail (and
        // clean up), not vanish mid-write.
        let blob = self.handlers.blob.clone();
        let reply = tokio::spawn(received(trace, async move { blob.put(meta, body).await }))
            .await
            .map_err(|e| internal(format!("the handler failed: {e}")))?
            .map_err(refused)?;
        Ok(Response::new(pb::Json {
            json: to_json(&reply)?,
        }))
    }

    type GetStream = Parts;

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<Parts>, Status> {
        check_protocol(request.metadata())?;
        let trace = carrier(request.metadata());
        let id: Id = request
            .into_inner()
            .id
            .parse()
            .map_err(|e| invalid(format!("{e}")))?;
        let found = received(trace, self.handlers.blob.get(id)).await;
        match found.map_err(refused)? {
            Some(o) => {
                let head = object_part::Part::Meta(to_json(&o.meta)?);
                Ok(Response::new(object_stream(head, o.body)))
            }
            None => Err(Status::not_found("no live copy")),
        }
    }

    type GetSharedStream = Parts;

    async fn get_shared(
        &self,
        request: Request<pb::GetSharedRequest>,
    ) -> Result<Response<Parts>, Status> {
        check_protocol(request.metadata())?;
        let trace = carrier(request.metadata());
        let name = request.into_inner().name;
        let found = received(trace, self.handlers.blob.get_shared(&name)).await;
        match found.map_err(refused)? {
            Some(body) => {
                let head = object_part::Part::Size(body.len());
                Ok(Response::new(object_stream(head, body)))
            }
            None => Err(Status::not_found("not shared here")),
        }
    }

    async fn query(&self, request: Request<pb::Json>) -> Result<Response<pb::Json>, Status> {
        check_protocol(request.metadata())?;
        let trace = carrier(request.metadata());
        let peer = identity(&request);
        let query: BlobQuery = from_json(&request.into_inner().json)?;
        let answer = scoped(peer, received(trace, self.handlers.blob.query(query)))
            .await
            .map_err(refused)?;
        Ok(Response::new(pb::Json {
            json: to_json(&answer)?,
        }))
    }
}
