//! The HTTP/JSON transport's server: `POST /peer/v1/rpc` for the ring, `/peer/v1/objects/...`,
//! `/peer/v1/providers` and `/peer/v1/shared/...` for the data plane. Object bodies stream in
//! both directions; small requests have small body limits.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body as AxumBody;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::StreamExt;

use super::{OBJECTS_PATH, PROTOCOL_HEADER, QUERY_PATH, RPC_PATH, frame};
use crate::id::Id;
use crate::telemetry::http::{carrier_from_headers, trace_requests};
use crate::transport::{
    BlobAnswer, BlobQuery, BodyError, BoxFuture, Handlers, Refusal, RefusalKind,
};
use crate::wire::files::{ProviderRecord, Version};
use crate::wire::protocol_supported;
use crate::wire::ring::RequestEnvelope;

/// The largest ring request accepted.
const MAX_RPC: usize = 1 << 20;
/// The largest "which of these do you lack" list accepted (a hand-off of many keys).
const MAX_MISSING: usize = 32 << 20;

#[derive(Clone)]
struct Served {
    handlers: Handlers,
    max_body: u64,
}

/// Both planes' routes, answering with `handlers`; object bodies up to `max_body` bytes.
pub fn router(handlers: Handlers, max_body: u64) -> Router {
    let state = Served { handlers, max_body };
    let rpc = Router::new()
        .route(RPC_PATH, post(rpc))
        .layer(DefaultBodyLimit::max(MAX_RPC));
    let small = Router::new()
        .route(&format!("{OBJECTS_PATH}/{{id}}/info"), get(object_info))
        .route("/peer/v1/providers", post(put_provider))
        .layer(DefaultBodyLimit::max(MAX_RPC));
    let missing = Router::new()
        .route(&format!("{OBJECTS_PATH}/missing"), post(missing))
        .route(QUERY_PATH, post(any_query))
        .layer(DefaultBodyLimit::max(MAX_MISSING));
    let objects = Router::new()
        .route(
            &format!("{OBJECTS_PATH}/{{id}}"),
            put(put_object).get(get_object),
        )
        .route("/peer/v1/shared/{name}", get(get_shared))
        .layer(DefaultBodyLimit::disable());
    let data = small
        .merge(missing)
        .merge(objects)
        .route_layer(axum::middleware::from_fn(carried))
        .route_layer(axum::middleware::from_fn(trace_requests));
    rpc.merge(data).with_state(state)
}

/// The peer-protocol server as one service: `POST /peer/v1/rpc`, every ring message, is
/// answered directly (the router's matching, the extensions it inserts and its boxed layers
/// cost more allocations than the message); every other request goes through [`router`].
#[derive(Clone)]
pub struct PeerService {
    served: Served,
    router: Router,
}

/// [`router`] with the ring messages' fast path in front.
pub fn service(handlers: Handlers, max_body: u64) -> PeerService {
    PeerService {
        served: Served {
            handlers: handlers.clone(),
            max_body,
        },
        router: router(handlers, max_body),
    }
}

impl tower_service::Service<axum::extract::Request> for PeerService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        if req.method() == Method::POST && req.uri().path() == RPC_PATH {
            let served = self.served.clone();
            return Box::pin(async move { Ok(rpc(State(served), req).await) });
        }
        let mut router = self.router.clone();
        Box::pin(async move { tower_service::Service::call(&mut router, req).await })
    }
}

/// Hands a data-plane request's carrier (trace context and authenticator) to the shared
/// layers around the handlers.
async fn carried(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let carrier = carrier_from_headers(req.headers());
    crate::transport::auth::received(carrier, next.run(req)).await
}

fn problem(status: StatusCode, kind: RefusalKind, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({ "kind": kind.name(), "detail": detail.into() });
    (status, Json(body)).into_response()
}

fn refused(r: Refusal) -> Response {
    let status = match r.kind {
        RefusalKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        RefusalKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        RefusalKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    problem(status, r.kind, r.detail)
}

fn bad_request(detail: impl Into<String>) -> Response {
    problem(StatusCode::BAD_REQUEST, RefusalKind::Invalid, detail)
}

/// Refuses data-plane requests of a protocol version this build does not speak.
fn check_protocol(headers: &HeaderMap) -> Result<(), String> {
    let Some(v) = headers.get(PROTOCOL_HEADER) else {
        return Ok(()); // builds before the header: version 1
    };
    match v.to_str().ok().and_then(|s| s.parse::<u16>().ok()) {
        Some(v) if protocol_supported(v) => Ok(()),
        _ => Err(format!(
            "unsupported peer-protocol version {v:?} (this peer speaks {}..={})",
            crate::wire::PROTOCOL_MIN,
            crate::wire::PROTOCOL_VERSION
        )),
    }
}

/// `POST /peer/v1/rpc`: one ring request as JSON, answered with its envelope. The headers are
/// read in place (the `HeaderMap` extractor would copy them for every request).
async fn rpc(State(s): State<Served>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !json {
        return (
            StatusCode::BAD_REQUEST,
            "Expected request with `Content-Type: application/json`",
        )
            .into_response();
    }
    let bytes = match axum::body::to_bytes(body, MAX_RPC).await {
        Ok(bytes) => bytes,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match serde_json::from_slice::<RequestEnvelope>(&bytes) {
        Ok(request) => {
            let trace = carrier_from_headers(&parts.headers);
            Json(s.handlers.ring.handle(request, trace).await).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("Failed to deserialize the JSON body into the target type: {e}"),
        )
            .into_response(),
    }
}

fn parse_id(raw: &str) -> Result<Id, String> {
    raw.parse().map_err(|e| format!("{e}"))
}

async fn put_object(
    State(s): State<Served>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    if let Err(e) = check_protocol(&headers) {
        return bad_request(e);
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    let limit = s.max_body + 4 + frame::MAX_HEADER as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            RefusalKind::Invalid,
            format!("objects are at most {} bytes", s.max_body),
        );
    }
    let stream = body
        .into_data_stream()
        .map(|c| c.map_err(|e| BodyError::Io(e.to_string())))
        .boxed();
    let (meta, content) = match frame::decode(stream).await {
        Ok(x) => x,
        Err(e) => return bad_request(e.to_string()),
    };
    if meta.id != id {
        return bad_request("id does not match the metadata");
    }
    if meta.has_content() && meta.size > s.max_body {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            RefusalKind::Invalid,
            format!("objects are at most {} bytes", s.max_body),
        );
    }
    match s.handlers.blob.put(meta, content).await {
        Ok(reply) => Json(reply).into_response(),
        Err(r) => refused(r),
    }
}

async fn get_object(State(s): State<Served>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    match s.handlers.blob.get(id).await {
        Ok(Some(o)) => {
            let (len, stream) = frame::encode(&o.meta, Some(o.body));
            (
                [(header::CONTENT_LENGTH, len.to_string())],
                AxumBody::from_stream(stream),
            )
                .into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(r) => refused(r),
    }
}

async fn query(s: &Served, q: BlobQuery) -> Result<BlobAnswer, Response> {
    s.handlers.blob.query(q).await.map_err(refused)
}

async fn object_info(State(s): State<Served>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    match query(&s, BlobQuery::Info { id }).await {
        Ok(BlobAnswer::Info(info)) => Json(info).into_response(),
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(r) => r,
    }
}

async fn put_provider(
    State(s): State<Served>,
    body: Result<Json<ProviderRecord>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let record = match body {
        Ok(Json(record)) => record,
        Err(e) => return bad_request(e.body_text()),
    };
    match query(&s, BlobQuery::PutProvider { record }).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

async fn get_shared(State(s): State<Served>, Path(name): Path<String>) -> Response {
    match s.handlers.blob.get_shared(&name).await {
        Ok(Some(body)) => (
            [(header::CONTENT_LENGTH, body.len().to_string())],
            AxumBody::from_stream(body.into_stream()),
        )
            .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(r) => refused(r),
    }
}

/// Any [`BlobQuery`] as JSON, answered with its [`BlobAnswer`] (the queries added after the
/// first HTTP data plane, which gave each query its own route).
async fn any_query(
    State(s): State<Served>,
    body: Result<Json<BlobQuery>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(q)) => match query(&s, q).await {
            Ok(answer) => Json(answer).into_response(),
            Err(r) => r,
        },
        Err(e) => bad_request(e.body_text()),
    }
}

async fn missing(
    State(s): State<Served>,
    body: Result<Json<Vec<(Id, Version)>>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let have = match body {
        Ok(Json(have)) => have,
        Err(e) => return bad_request(e.body_text()),
    };
    match query(&s, BlobQuery::Missing { have }).await {
        Ok(BlobAnswer::Missing { ids }) => Json(ids).into_response(),
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(r) => r,
    }
}
