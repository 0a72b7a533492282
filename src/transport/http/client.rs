//! The HTTP/JSON transport's client: pooled keep-alive connections, a connect time-out, and no
//! total time-out (the shared layers give each call class its deadline; a transfer of any size
//! streams for as long as it keeps moving).

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::frame;
use super::{OBJECTS_PATH, PROTOCOL_HEADER, QUERY_PATH, RPC_PATH, refusal_from};
use crate::id::Id;
use crate::transport::{
    BlobAnswer, BlobClient, BlobQuery, Body, BodyError, BoxFuture, Object, PutReply, RingClient,
    TraceCarrier, TransportError,
};
use crate::wire::files::FileMeta;
use crate::wire::ring::{RequestEnvelope, ResponseEnvelope};
use crate::wire::{Address, PROTOCOL_VERSION};

/// The largest JSON answer a client reads (ring answers and queries are small; the largest is
/// what a peer knows about a file whose manifest lists 65536 blocks, about 4.4 MB).
const MAX_JSON: usize = 8 << 20;

#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    pub fn new(connect_timeout: Duration) -> Result<HttpClient, TransportError> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        Ok(HttpClient { client })
    }

    /// Sends `req` with the trace context and protocol version; `Ok(None)` on 404.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        to: &Address,
        trace: &TraceCarrier,
    ) -> Result<Option<reqwest::Response>, TransportError> {
        let mut req = req.header(PROTOCOL_HEADER, PROTOCOL_VERSION);
        for (name, value) in trace.fields() {
            req = req.header(name, value);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => return Err(first_answer_failed(e, to).await),
        };
        tracing::Span::current().record("http.response.status_code", resp.status().as_u16());
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s => {
                let text = read_limited(resp, 64 * 1024).await.unwrap_or_default();
                Err(refusal_from(s.as_u16(), &text, to))
            }
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
        to: &Address,
    ) -> Result<T, TransportError> {
        let bytes = read_limited(resp, MAX_JSON).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TransportError::Protocol(format!("{to} answered bad JSON: {e}")))
    }

    fn url(to: &Address, path: &str) -> String {
        format!("http://{to}{path}")
    }
}

/// Reads at most `limit` bytes of a response body.
async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Bytes, TransportError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(TransportError::Protocol(format!(
            "answer larger than {limit} bytes"
        )));
    }
    let mut stream = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(classify)?;
        if out.len() + chunk.len() > limit {
            return Err(TransportError::Protocol(format!(
                "answer larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

fn body_stream(resp: reqwest::Response) -> BoxStream<'static, Result<Bytes, BodyError>> {
    resp.bytes_stream()
        .map(|c| c.map_err(|e| BodyError::Io(e.to_string())))
        .boxed()
}

/// What the caller makes of a request that got no response: besides time-outs and refused
/// connections, a server that speaks only HTTP/2, which is what a gRPC peer's port does. That
/// shows as HTTP/2 frames where an HTTP/1.1 answer should be, or as a reset connection when the
/// server closed first; either way a connection was made, and a fresh one tells (an
/// HTTP/2-only server greets first).
async fn first_answer_failed(e: reqwest::Error, to: &Address) -> TransportError {
    let connected = !e.is_connect() && !e.is_timeout();
    if connected && crate::transport::tcp::greets_with_http2(to).await {
        return TransportError::Incompatible(format!(
            "{to} answered with HTTP/2 frames, not HTTP/1.1: it looks like a peer with \
             transport.kind = \"grpc\", and this peer has transport.kind = \"http\" (every \
             peer of a ring must use the same transport.kind)"
        ));
    }
    classify(e)
}

fn classify(e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout(Duration::ZERO)
    } else if e.is_connect() || e.is_request() {
        TransportError::Unreachable(e.to_string())
    } else {
        TransportError::Protocol(e.to_string())
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
            let req = self.client.post(Self::url(to, RPC_PATH)).json(&request);
            match self.send(req, to, &trace).await? {
                Some(resp) => Self::json(resp, to).await,
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
            let req = self
                .client
                .put(Self::url(to, &format!("{OBJECTS_PATH}/{}", meta.id)))
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap_stream(stream));
            match self.send(req, to, &trace).await? {
                Some(resp) => Self::json(resp, to).await,
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
            let req = self
                .client
                .get(Self::url(to, &format!("{OBJECTS_PATH}/{id}")));
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
            let mut url = reqwest::Url::parse(&Self::url(to, "/peer/v1/shared/"))
                .map_err(|e| TransportError::Protocol(e.to_string()))?;
            url.path_segments_mut()
                .map_err(|_| TransportError::Protocol("bad peer address".into()))?
                .pop_if_empty()
                .push(name);
            let Some(resp) = self.send(self.client.get(url), to, &trace).await? else {
                return Ok(None);
            };
            let Some(len) = resp.content_length() else {
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
                BlobQuery::Info { id } => self
                    .client
                    .get(Self::url(to, &format!("{OBJECTS_PATH}/{id}/info"))),
                BlobQuery::PutProvider { record } => self
                    .client
                    .post(Self::url(to, "/peer/v1/providers"))
                    .json(record),
                BlobQuery::Missing { have } => self
                    .client
                    .post(Self::url(to, &format!("{OBJECTS_PATH}/missing")))
                    .json(have),
                BlobQuery::Referenced { .. } | BlobQuery::SharedManifest { .. } => {
                    self.client.post(Self::url(to, QUERY_PATH)).json(&query)
                }
            };
            let resp = self.send(req, to, &trace).await?;
            match (query, resp) {
                (BlobQuery::Info { .. }, Some(r)) => Ok(BlobAnswer::Info(Self::json(r, to).await?)),
                (BlobQuery::Info { .. }, None) => Ok(BlobAnswer::Info(Default::default())),
                (BlobQuery::PutProvider { .. }, Some(_)) => Ok(BlobAnswer::Done),
                (BlobQuery::Missing { .. }, Some(r)) => Ok(BlobAnswer::Missing {
                    ids: Self::json(r, to).await?,
                }),
                (BlobQuery::Referenced { .. } | BlobQuery::SharedManifest { .. }, Some(r)) => {
                    Self::json(r, to).await
                }
                (_, None) => Err(TransportError::Protocol(format!(
                    "{to} has no object store"
                ))),
            }
        })
    }
}
