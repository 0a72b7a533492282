//! An in-suite OTLP trace receiver for tests: decodes real OTLP exports with the official
//! protobuf definitions (`opentelemetry-proto`), over OTLP/HTTP protobuf and OTLP/gRPC
//! (cleartext HTTP/2 with prior knowledge) on one 127.0.0.1 port.
//!
//! Include it with `#[path = "support/otlp.rs"] mod otlp;`. Everything runs as tasks on the
//! caller's tokio runtime; dropping a [`Receiver`] or [`BlackHole`] aborts them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Buf, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The OTLP/HTTP path for traces.
pub const HTTP_TRACES_PATH: &str = "/v1/traces";
/// The gRPC method path of the OTLP trace service.
pub const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Largest request body accepted (OTLP exporters batch, but never this much in a test).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// The connection preface a client speaking HTTP/2 with prior knowledge opens with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a span reached the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OTLP/HTTP protobuf (`POST /v1/traces`).
    Http,
    /// OTLP/gRPC (`TraceService/Export` over h2c).
    Grpc,
}

/// The OTLP span kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    fn from_proto(kind: i32) -> SpanKind {
        match kind {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// Number of export requests decoded, by protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exports {
    pub http: usize,
    pub grpc: usize,
}

impl Exports {
    pub fn total(&self) -> usize {
        self.http + self.grpc
    }
}

/// An event recorded on a span (tracing events become span events).
#[derive(Clone, Debug)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nanos: u64,
    pub attributes: BTreeMap<String, String>,
}

/// One decoded span, flattened together with the resource and scope it was exported under.
#[derive(Clone, Debug)]
pub struct Span {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// `None` when the span is a root (empty parent id).
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    /// Values rendered as strings: ints, bools and doubles via `to_string`, arrays joined
    /// with ",", key-value lists as `k=v` joined with ",", bytes as lowercase hex.
    pub attributes: BTreeMap<String, String>,
    /// The resource attributes of the export the span came in.
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope name.
    pub scope: String,
    pub events: Vec<SpanEvent>,
    /// Status code == ERROR.
    pub status_error: bool,
    pub status_message: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub protocol: Protocol,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    pub fn resource_attr(&self, key: &str) -> Option<&str> {
        self.resource.get(key).map(String::as_str)
    }

    /// `resource["service.name"]`.
    pub fn service_name(&self) -> Option<&str> {
        self.resource_attr("service.name")
    }

    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    exports: Exports,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Received>,
    connections: AtomicUsize,
}

impl Shared {
    fn received(&self) -> MutexGuard<'_, Received> {
        // A panicking test thread must not hide what was received from the others.
        self.received
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn record(&self, request: ExportTraceServiceRequest, protocol: Protocol) {
        let spans = flatten(request, protocol);
        let mut received = self.received();
        match protocol {
            Protocol::Http => received.exports.http += 1,
            Protocol::Grpc => received.exports.grpc += 1,
        }
        received.spans.extend(spans);
    }
}

/// An OTLP trace receiver on 127.0.0.1 speaking OTLP/HTTP protobuf and OTLP/gRPC on one port.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Binds 127.0.0.1:0 and serves on the caller's tokio runtime.
    pub async fn start() -> Receiver {
        Receiver::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind the OTLP test receiver on 127.0.0.1:0")
    }

    /// Binds `addr` (e.g. a fixed port a peer was configured with) and serves.
    pub async fn start_on(addr: SocketAddr) -> io::Result<Receiver> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), |tcp, shared| {
            serve_otlp(tcp, shared)
        }));
        Ok(Receiver { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`: the gRPC endpoint, and the HTTP base (append
    /// [`HTTP_TRACES_PATH`] when configuring an exporter's endpoint programmatically).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1/traces`.
    pub fn http_traces_endpoint(&self) -> String {
        format!("{}{HTTP_TRACES_PATH}", self.endpoint())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.shared.received().spans.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Export requests decoded so far, by protocol.
    pub fn exports(&self) -> Exports {
        self.shared.received().exports
    }

    /// Forgets the spans and export counts received so far (not the connection count).
    pub fn clear(&self) {
        *self.shared.received() = Received::default();
    }

    /// Polls every 20 ms until `done(&spans)` holds or `timeout` passes. `Ok` carries the
    /// spans that satisfied it, `Err` everything received by the deadline.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Span]) -> bool,
    ) -> Result<Vec<Span>, Vec<Span>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(spans);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `timeout` for at least `count` spans; panics with what arrived otherwise.
    pub async fn wait_for_spans(&self, count: usize, timeout: Duration) -> Vec<Span> {
        match self.wait_for(timeout, |spans| spans.len() >= count).await {
            Ok(spans) => spans,
            Err(spans) => panic!(
                "expected at least {count} spans within {timeout:?}, got {}: {:#?}",
                spans.len(),
                spans
            ),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts TCP connections on 127.0.0.1 and never answers: reads and discards whatever
/// arrives and keeps every connection open — an OTLP endpoint that hangs.
pub struct BlackHole {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl BlackHole {
    pub async fn start() -> BlackHole {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind the OTLP black hole on 127.0.0.1:0");
        let addr = listener.local_addr().expect("black hole local address");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), |tcp, _| {
            swallow(tcp)
        }));
        BlackHole { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections forever, each served by its own task. The tasks live in a `JoinSet`
/// owned by this future, so aborting the accept task aborts every connection too.
async fn accept_loop<F, Fut>(listener: TcpListener, shared: Arc<Shared>, serve: F)
where
    F: Fn(TcpStream, Arc<Shared>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_nodelay(true);
                connections.spawn(serve(tcp, Arc::clone(&shared)));
            }
            // Out of descriptors or an aborted handshake: nothing to do but try again.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        while connections.try_join_next().is_some() {}
    }
}

async fn swallow(mut tcp: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = tcp.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    // Even once the client stopped sending, never answer and never close.
    let _keep_open = tcp;
    std::future::pending::<()>().await;
}

/// Serves one connection: HTTP/2 when it opens with the h2 preface (gRPC clients use prior
/// knowledge on cleartext), HTTP/1.1 otherwise.
async fn serve_otlp(mut tcp: TcpStream, shared: Arc<Shared>) {
    let mut seen = Vec::with_capacity(H2_PREFACE.len());
    let mut chunk = [0u8; H2_PREFACE.len()];
    let h2 = loop {
        let want = H2_PREFACE.len() - seen.len();
        match tcp.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
        if !H2_PREFACE.starts_with(&seen) {
            break false;
        }
        if seen.len() == H2_PREFACE.len() {
            break true;
        }
    };
    let io = TokioIo::new(Prefixed {
        prefix: Bytes::from(seen),
        io: tcp,
    });
    let service = hyper::service::service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(request, &shared).await) }
    });
    // Errors here are clients going away mid-request; the test sees them on its side.
    let _ = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await
    };
}

async fn handle(request: Request<Incoming>, shared: &Shared) -> Response<Reply> {
    if request.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "OTLP wants POST");
    }
    match request.uri().path() {
        HTTP_TRACES_PATH => handle_http(request, shared).await,
        GRPC_EXPORT_PATH => handle_grpc(request, shared).await,
        _ if is_grpc(request.headers()) => grpc_status(12, "unknown gRPC method"),
        _ => plain(StatusCode::NOT_FOUND, "not an OTLP trace path"),
    }
}

async fn handle_http(request: Request<Incoming>, shared: &Shared) -> Response<Reply> {
    let headers = request.headers();
    if let Some(encoding) = headers.get(CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the test receiver takes uncompressed OTLP only",
        );
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-protobuf") {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the test receiver takes application/x-protobuf only",
        );
    }
    let Some(body) = read_body(request.into_body()).await else {
        return plain(StatusCode::BAD_REQUEST, "unreadable request body");
    };
    match ExportTraceServiceRequest::decode(body) {
        Ok(export) => {
            shared.record(export, Protocol::Http);
            let mut response = Response::new(Reply::data(
                ExportTraceServiceResponse::default().encode_to_vec().into(),
            ));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
            response
        }
        Err(error) => plain(
            StatusCode::BAD_REQUEST,
            &format!("not an ExportTraceServiceRequest: {error}"),
        ),
    }
}

async fn handle_grpc(request: Request<Incoming>, shared: &Shared) -> Response<Reply> {
    if !is_grpc(request.headers()) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "gRPC wants content-type application/grpc",
        );
    }
    let Some(mut body) = read_body(request.into_body()).await else {
        return grpc_status(13, "unreadable request body");
    };
    // Length-prefixed messages: a compressed flag byte, a big-endian u32 length, the message.
    // A unary call carries exactly one, but accept any number.
    let mut exports = Vec::new();
    while body.has_remaining() {
        if body.remaining() < 5 {
            return grpc_status(13, "truncated gRPC message header");
        }
        let compressed = body.get_u8();
        let len = body.get_u32() as usize;
        if compressed != 0 {
            return grpc_status(12, "the test receiver takes uncompressed messages only");
        }
        if body.remaining() < len {
            return grpc_status(13, "truncated gRPC message");
        }
        match ExportTraceServiceRequest::decode(body.split_to(len)) {
            Ok(export) => exports.push(export),
            Err(_) => return grpc_status(13, "not an ExportTraceServiceRequest"),
        }
    }
    if exports.is_empty() {
        return grpc_status(13, "no request message");
    }
    for export in exports {
        shared.record(export, Protocol::Grpc);
    }
    let message = ExportTraceServiceResponse::default().encode_to_vec();
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = Response::new(Reply {
        data: Some(framed.into()),
        trailers: Some(trailers),
    });
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

async fn read_body(body: Incoming) -> Option<Bytes> {
    Limited::new(body, MAX_BODY)
        .collect()
        .await
        .ok()
        .map(|collected| collected.to_bytes())
}

fn plain(status: StatusCode, message: &str) -> Response<Reply> {
    let mut response = Response::new(Reply::data(Bytes::copy_from_slice(message.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A trailers-only gRPC answer carrying a failure status.
fn grpc_status(code: u32, message: &str) -> Response<Reply> {
    let mut response = Response::new(Reply {
        data: None,
        trailers: None,
    });
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    // grpc-message is percent-encoded; keep it to printable ASCII.
    let message: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect::<String>()
        .replace('%', "%25");
    if let Ok(value) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", value);
    }
    response
}

/// A response body: at most one data frame, then optional trailers (gRPC's `grpc-status`).
struct Reply {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Reply {
    fn data(data: Bytes) -> Reply {
        Reply {
            data: Some(data),
            trailers: None,
        }
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = self.data.as_ref().map_or(0, |data| data.len() as u64);
        if self.trailers.is_none() {
            SizeHint::with_exact(len)
        } else {
            let mut hint = SizeHint::new();
            hint.set_lower(len);
            hint
        }
    }
}

/// A TCP stream that first replays the bytes already read to sniff the protocol.
struct Prefixed {
    prefix: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

fn flatten(request: ExportTraceServiceRequest, protocol: Protocol) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = attributes(
            resource_spans
                .resource
                .map(|resource| resource.attributes)
                .unwrap_or_default(),
        );
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .map(|scope| scope.name)
                .unwrap_or_default();
            for span in scope_spans.spans {
                let (status_error, status_message) = match span.status {
                    Some(status) => (status.code == 2, status.message),
                    None => (false, String::new()),
                };
                spans.push(Span {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    name: span.name,
                    kind: SpanKind::from_proto(span.kind),
                    attributes: attributes(span.attributes),
                    resource: resource.clone(),
                    scope: scope.clone(),
                    events: span
                        .events
                        .into_iter()
                        .map(|event| SpanEvent {
                            name: event.name,
                            time_unix_nanos: event.time_unix_nano,
                            attributes: attributes(event.attributes),
                        })
                        .collect(),
                    status_error,
                    status_message,
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    protocol,
                });
            }
        }
    }
    spans
}

fn attributes(pairs: Vec<KeyValue>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|pair| (pair.key, render(pair.value)))
        .collect()
}

fn render(value: Option<AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|value| value.value) {
        None => String::new(),
        Some(Value::StringValue(s)) => s,
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::ArrayValue(array)) => array
            .values
            .into_iter()
            .map(|value| render(Some(value)))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::KvlistValue(list)) => list
            .values
            .into_iter()
            .map(|pair| format!("{}={}", pair.key, render(pair.value)))
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::BytesValue(bytes)) => hex(&bytes),
        Some(Value::StringValueStrindex(index)) => index.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}
