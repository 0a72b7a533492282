//! Serving one connection: sniffing HTTP/2 prior knowledge from HTTP/1.1, and answering
//! OTLP/HTTP and OTLP/gRPC export requests.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Buf, Bytes, Incoming};
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::decode::Protocol;
use super::plumbing::{Prefixed, Reply};
use super::receiver::Shared;
use super::{GRPC_EXPORT_PATH, HTTP_TRACES_PATH};

/// Largest request body accepted (OTLP exporters batch, but never this much in a test).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// The connection preface a client speaking HTTP/2 with prior knowledge opens with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one connection: HTTP/2 when it opens with the h2 preface (gRPC clients use prior
/// knowledge on cleartext), HTTP/1.1 otherwise.
pub(super) async fn serve_otlp(mut tcp: TcpStream, shared: Arc<Shared>) {
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
