//! The HTTP/JSON transport's client: pooled keep-alive connections (hyper) dialled through the
//! shared peer connector (plain TCP, or mutual TLS with `security.tls`), a connect time-out,
//! and no total time-out (the shared layers give each call class its deadline; a transfer of
//! any size streams for as long as it keeps moving).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::frame;
use super::{OBJECTS_PATH, PROTOCOL_HEADER, QUERY_PATH, RPC_PATH, refusal_from};
use crate::id::Id;
use crate::transport::tls::PeerTls;
use crate::transport::tls::connect::PeerConnector;
use crate::transport::{
    BlobAnswer, BlobClient, BlobQuery, Body, BodyError, BoxFuture, ClientOptions, Object, PutReply,
    RingClient, TraceCarrier, TransportError,
};
use crate::wire::files::FileMeta;
use crate::wire::ring::{RequestEnvelope, ResponseEnvelope};
use crate::wire::{Address, PROTOCOL_VERSION};

/// The idle connections kept per peer. The pool opens a connection whenever a call finds none
/// idle, so at most this many stay open per peer: an idle cap below the calls in flight to one
/// peer closes the surplus as each call ends, and the next burst dials again (8 here made a
/// 32-client lookup load on 8 peers open 82 connections in 3 s, each left in TIME_WAIT; see
/// `peer conns` of `cargo bench --bench lookups`). Idle ones still close after
/// `transport.idle_timeout`.
const MAX_IDLE_PER_PEER: usize = 64;

/// The largest JSON answer a client reads (ring answers and queries are small; the largest is
/// what a peer knows about a file whose manifest lists 65536 blocks, about 4.4 MB).
const MAX_JSON: usize = 8 << 20;

type ReqBody = UnsyncBoxBody<Bytes, BodyError>;
type Response = hyper::Response<Incoming>;

#[derive(Clone)]
pub struct HttpClient {
    client: Client<PeerConnector, ReqBody>,
    /// `https` with TLS, `http` without.
    scheme: &'static str,
    /// This build's peer-protocol version, made once (a copy is a reference count, not a
    /// new allocation per request).
    protocol: HeaderValue,
}

impl HttpClient {
    /// A client; with `tls`, every connection is HTTPS with mutual TLS. A pooled connection
    /// that carried nothing for `options.idle_timeout` is closed.
    pub fn new(options: ClientOptions, tls: Option<Arc<PeerTls>>) -> HttpClient {
        let connector = PeerConnector::new(tls, options.connect_timeout);
        let scheme = if connector.is_tls() { "https" } else { "http" };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(options.idle_timeout)
            .pool_max_idle_per_host(MAX_IDLE_PER_PEER)
            .pool_timer(TokioTimer::new())
            .build(connector);
        HttpClient {
            client,
            scheme,
            protocol: HeaderValue::from(PROTOCOL_VERSION),
        }
    }

    fn request(&self, method: Method, to: &Address, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}://{to}{path}", self.scheme))
    }

    fn empty(req: hyper::http::request::Builder) -> Result<Request<ReqBody>, TransportError> {
        let body = Empty::new().map_err(|never| match never {}).boxed_unsync();
        req.body(body)
            .map_err(|e| TransportError::Protocol(e.to_string()))
    }

    fn json<T: serde::Serialize>(
        req: hyper::http::request::Builder,
        value: &T,
    ) -> Result<Request<ReqBody>, TransportError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| TransportError::Protocol(format!("cannot encode the request: {e}")))?;
        let body = Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed_unsync();
        req.header(CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| TransportError::Protocol(e.to_string()))
    }

    /// Sends `req` with the trace context and protocol version; `Ok(None)` on 404.
    async fn send(
        &self,
        mut req: Request<ReqBody>,
        to: &Address,
        trace: &TraceCarrier,
    ) -> Result<Option<Response>, TransportError> {
        let headers = req.headers_mut();
        headers.insert(PROTOCOL_HEADER, self.protocol.clone());
        for (name, value) in trace.fields() {
            if let (Ok(name), Ok(value)) = (
                hyper::header::HeaderName::try_from(name),
                HeaderValue::try_from(value),
            ) {
                headers.insert(name, value);
            }
        }
        let resp = match self.client.request(req).await {
            Ok(resp) => resp,
            Err(e) => return Err(first_answer_failed(e, to).await),
        };
        tracing::Span::current().record("http.response.status_code", resp.status().as_u16());
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            StatusCode::NOT_FOUND => {
                // Read to the end (empty, or a short message) so the connection goes back to
                // the pool; a body dropped half read closes it.
                let _ = read_limited(resp, 64 * 1024).await;
                Ok(None)
            }
            s => {
                let text = read_limited(resp, 64 * 1024).await.unwrap_or_default();
                Err(refusal_from(s.as_u16(), &text, to))
            }
        }
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        resp: Response,
        to: &Address,
    ) -> Result<T, TransportError> {
        let bytes = read_limited(resp, MAX_JSON).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TransportError::Protocol(format!("{to} answered bad JSON: {e}")))
    }
}

/// The length a response declares.
fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads at most `limit` bytes of a response body. A body that arrives as one chunk (every
/// ring answer) is handed on as it is, without copying it into a new buffer.
async fn read_limited(resp: Response, limit: usize) -> Result<Bytes, TransportError> {
    let too_large = || TransportError::Protocol(format!("answer larger than {limit} bytes"));
    if content_length(&resp).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(resp.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(TransportError::Protocol(e.to_string())),
    }
}

fn body_stream(resp: Response) -> BoxStream<'static, Result<Bytes, BodyError>> {
    resp.into_body()
        .into_data_stream()
        .map(|c| c.map_err(|e| BodyError::Io(e.to_string())))
        .boxed()
}

/// What the caller makes of a request that got no response: besides time-outs and refused
/// connections, a server that speaks only HTTP/2, which is what a gRPC peer's port does. That
/// shows as HTTP/2 frames where an HTTP/1.1 answer should be, or as a reset connection when the
/// server closed first; either way a connection was made, and a fresh one tells (an
/// HTTP/2-only server greets first).
async fn first_answer_failed(e: hyper_util::client::legacy::Error, to: &Address) -> TransportError {
    let connected = !e.is_connect();
    if connected && crate::transport::tcp::greets_with_http2(to).await {
        return TransportError::Incompatible(format!(
            "{to} answered with HTTP/2 frames, not HTTP/1.1: it looks like a peer with \
             transport.kind = \"grpc\", and this peer has transport.kind = \"http\" (every \
             peer of a ring must use the same transport.kind)"
        ));
    }
    classify(e)
}

fn classify(e: hyper_util::client::legacy::Error) -> TransportError {
    let timed_out = std::iter::successors(std::error::Error::source(&e), |s| s.source())
        .filter_map(|s| s.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::TimedOut);
    // The full chain: hyper's own message is only "client error (Connect)".
    let message = std::iter::successors(Some(&e as &dyn std::error::Error), |s| s.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    if timed_out {
        TransportError::Timeout(Duration::ZERO)
    } else if e.is_connect() {
        TransportError::Unreachable(message)
    } else {
        TransportError::Protocol(message)
    }
}

impl RingClient for HttpClient {
    fn call<'a>(
        &'a self,
        to: &'a Address,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<ResponseEnvelope, TransportError>> {
        Box::pin(async move {
            let req = Self::json(self.request(Method::POST, to, RPC_PATH), &request)?;
            match self.send(req, to, &trace).await? {
                Some(resp) => Self::answer(resp, to).await,
                None => Err(TransportError::Incompatible(format!(
                    "{to} answers HTTP but does not serve chordnet's peer protocol on that \
                     path: it is not a chordnet peer, or not one with transport.kind = \"http\""
                ))),
            }
        })
    }
}

impl BlobClient for HttpClient {
    fn put<'a>(
        &'a self,
        to: &'a Address,
        meta: FileMeta,
        body: Option<Body>,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<PutReply, TransportError>> {
        Box::pin(async move {
            let (len, stream) = frame::encode(&meta, body);
            let body = StreamBody::new(stream.map(|c| c.map(Frame::data))).boxed_unsync();
            let req = self
                .request(Method::PUT, to, &format!("{OBJECTS_PATH}/{}", meta.id))
                .header(CONTENT_LENGTH, len)
                .body(body)
                .map_err(|e| TransportError::Protocol(e.to_string()))?;
            match self.send(req, to, &trace).await? {
                Some(resp) => Self::answer(resp, to).await,
                None => Err(TransportError::Protocol(format!(
                    "{to} has no object store"
                ))),
            }
        })
    }

    fn get<'a>(
        &'a self,
        to: &'a Address,
        id: Id,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Object>, TransportError>> {
        Box::pin(async move {
            let req = Self::empty(self.request(Method::GET, to, &format!("{OBJECTS_PATH}/{id}")))?;
            let Some(resp) = self.send(req, to, &trace).await? else {
                return Ok(None);
            };
            match frame::decode(body_stream(resp)).await {
                Ok((meta, Some(body))) if meta.id == id => Ok(Some(Object { meta, body })),
                Ok(_) => Err(TransportError::Protocol(format!(
                    "{to} answered with another object or a tombstone"
                ))),
                Err(e) => Err(TransportError::Protocol(format!("{to}: {e}"))),
            }
        })
    }

    fn get_shared<'a>(
        &'a self,
        to: &'a Address,
        name: &'a str,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Body>, TransportError>> {
        Box::pin(async move {
            let path = format!("/peer/v1/shared/{}", path_segment(name));
            let req = Self::empty(self.request(Method::GET, to, &path))?;
            let Some(resp) = self.send(req, to, &trace).await? else {
                return Ok(None);
            };
            let Some(len) = content_length(&resp) else {
                return Err(TransportError::Protocol(format!(
                    "{to} sent a shared file without its length"
                )));
            };
            Ok(Some(Body::new(len, body_stream(resp))))
        })
    }

    fn query<'a>(
        &'a self,
        to: &'a Address,
        query: BlobQuery,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<BlobAnswer, TransportError>> {
        Box::pin(async move {
            // The routes of the first HTTP data plane, kept so that mixed versions interoperate.
            let req = match &query {
                BlobQuery::Info { id } => Self::empty(self.request(
                    Method::GET,
                    to,
                    &format!("{OBJECTS_PATH}/{id}/info"),
                ))?,
                BlobQuery::PutProvider { record } => {
                    Self::json(self.request(Method::POST, to, "/peer/v1/providers"), record)?
                }
                BlobQuery::Missing { have } => Self::json(
                    self.request(Method::POST, to, &format!("{OBJECTS_PATH}/missing")),
                    have,
                )?,
                BlobQuery::Referenced { .. } | BlobQuery::SharedManifest { .. } => {
                    Self::json(self.request(Method::POST, to, QUERY_PATH), &query)?
                }
            };
            let resp = self.send(req, to, &trace).await?;
            match (query, resp) {
                (BlobQuery::Info { .. }, Some(r)) => {
                    Ok(BlobAnswer::Info(Self::answer(r, to).await?))
                }
                (BlobQuery::Info { .. }, None) => Ok(BlobAnswer::Info(Default::default())),
                (BlobQuery::PutProvider { .. }, Some(_)) => Ok(BlobAnswer::Done),
                (BlobQuery::Missing { .. }, Some(r)) => Ok(BlobAnswer::Missing {
                    ids: Self::answer(r, to).await?,
                }),
                (BlobQuery::Referenced { .. } | BlobQuery::SharedManifest { .. }, Some(r)) => {
                    Self::answer(r, to).await
                }
                (_, None) => Err(TransportError::Protocol(format!(
                    "{to} has no object store"
                ))),
            }
        })
    }
}

/// `name` as one URL path segment: unreserved characters as they are, every other byte
/// percent-encoded (as the URL parser did for the first HTTP data plane).
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
