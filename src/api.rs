//! The REST API v1 for users, the probes and `/metrics` (the contract is in the project's
//! API document). Errors are `application/problem+json` (RFC 9457).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::split_host_port;
use crate::files::FileMeta;
use crate::files::ops::{Files, FilesError};
use crate::id::Id;
use crate::ring::LookupResult;
use crate::service::{PeerView, Service, ServiceError};
use crate::transport::{FileTransport, Transport};

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Problem {
        let status = match &e {
            ServiceError::AlreadyMember | ServiceError::NotMember => StatusCode::CONFLICT,
            ServiceError::JoinFailed(_) => StatusCode::BAD_GATEWAY,
            ServiceError::Lookup(crate::ring::LookupError::NotMember) => StatusCode::CONFLICT,
            ServiceError::Lookup(_) => StatusCode::BAD_GATEWAY,
            ServiceError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ServiceError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        Problem::new(status, e.to_string())
    }
}

impl From<FilesError> for Problem {
    fn from(e: FilesError) -> Problem {
        let status = match &e {
            FilesError::Name(_) => StatusCode::BAD_REQUEST,
            FilesError::NotFound(_) => StatusCode::NOT_FOUND,
            FilesError::Ring(inner) => return Problem::from(inner.clone()),
            FilesError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            FilesError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, e.to_string())
    }
}

/// What every handler sees: the ring service and the file layer.
pub struct App<T: Transport + FileTransport> {
    ring: Arc<Service<T>>,
    files: Arc<Files<T>>,
}

impl<T: Transport + FileTransport> Clone for App<T> {
    fn clone(&self) -> App<T> {
        App {
            ring: Arc::clone(&self.ring),
            files: Arc::clone(&self.files),
        }
    }
}

impl<T: Transport + FileTransport> App<T> {
    /// `GET /v1/node` (also the answer to join and leave): the ring's view plus the key count,
    /// which only the file layer knows.
    fn node_view(&self) -> crate::service::NodeView {
        let mut view = self.ring.view();
        view.keys = self.files.stored_keys();
        view
    }
}

type Api<T> = State<App<T>>;

/// The API routes.
pub fn router<T: Transport + FileTransport>(
    service: Arc<Service<T>>,
    files: Arc<Files<T>>,
) -> Router {
    Router::new()
        .route("/v1/node", get(node::<T>))
        .route("/v1/node/fingers", get(fingers::<T>))
        .route("/v1/node/files", get(node_files::<T>))
        .route("/v1/ring", get(ring::<T>))
        .route("/v1/ring/join", post(join::<T>))
        .route("/v1/ring/leave", post(leave::<T>))
        .route("/v1/lookup", get(lookup_id::<T>))
        .route("/v1/lookup/{key}", get(lookup_key::<T>))
        .route(
            "/v1/files/{name}",
            get(download::<T>)
                .put(upload::<T>)
                .head(head::<T>)
                .delete(delete::<T>)
                // Uploads are limited by files.max_file_size, checked while reading.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{name}/locations", get(locations::<T>))
        .route("/v1/openapi.json", get(openapi))
        // A span per API request; probes and scrapes (every few seconds) are left out.
        .route_layer(axum::middleware::from_fn(
            crate::telemetry::http::trace_requests,
        ))
        .route("/healthz", get(healthz::<T>))
        .route("/readyz", get(readyz::<T>))
        .route("/metrics", get(metrics::<T>))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .with_state(App {
            ring: service,
            files,
        })
}

/// The OpenAPI 3.1 description of this API (kept beside the code; a test checks that it
/// covers every route).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn node<T: Transport + FileTransport>(State(app): Api<T>) -> Response {
    Json(app.node_view()).into_response()
}

async fn node_files<T: Transport + FileTransport>(State(app): Api<T>) -> Response {
    Json(app.files.node_files()).into_response()
}

async fn upload<T: Transport + FileTransport>(
    State(app): Api<T>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    crate::files::validate_name(&name)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let max = app.ring.config().files.max_file_size;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("files are limited to {max} bytes (files.max_file_size)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > max) {
        drain(&mut stream, max).await;
        return Err(too_large());
    }
    // Read the body chunk by chunk and stop keeping it as soon as it passes the limit.
    let mut data = Vec::with_capacity(declared.unwrap_or(0).min(max) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
        if (data.len() + chunk.len()) as u64 > max {
            drain(&mut stream, max).await;
            return Err(too_large());
        }
        data.extend_from_slice(&chunk);
    }
    let data = bytes::Bytes::from(data);
    let up = app.files.upload(&name, data).await?;
    let status = if up.replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(up)).into_response())
}

/// Reads and discards what is left of a refused upload, up to about `max` more bytes, so that
/// an HTTP/1.1 client that sends its whole body before reading gets the 413 rather than a
/// broken connection. Past that the connection is simply closed.
async fn drain(stream: &mut axum::body::BodyDataStream, max: u64) {
    let mut discarded = 0u64;
    while discarded <= max {
        match stream.next().await {
            Some(Ok(chunk)) => discarded += chunk.len() as u64,
            _ => return,
        }
    }
}

fn file_headers(meta: &FileMeta) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", meta.sha256)) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    h
}

async fn download<T: Transport + FileTransport>(
    State(app): Api<T>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let (meta, data) = app.files.download(&name).await?;
    Ok((file_headers(&meta), data).into_response())
}

async fn head<T: Transport + FileTransport>(
    State(app): Api<T>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let meta = app.files.head(&name).await?;
    Ok((file_headers(&meta), ()).into_response())
}

async fn locations<T: Transport + FileTransport>(
    State(app): Api<T>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(app.files.locations(&name).await?).into_response())
}

async fn delete<T: Transport + FileTransport>(
    State(app): Api<T>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    app.files.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn fingers<T: Transport + FileTransport>(State(app): Api<T>) -> Response {
    let fingers: Vec<_> = app
        .ring
        .fingers()
        .into_iter()
        .map(|(index, start, node)| json!({"index": index, "start": start, "node": node}))
        .collect();
    Json(json!({ "fingers": fingers })).into_response()
}

async fn ring<T: Transport + FileTransport>(State(app): Api<T>) -> Response {
    Json(app.ring.ring_walk(100_000).await).into_response()
}

#[derive(Deserialize)]
struct JoinBody {
    bootstrap: String,
}

async fn join<T: Transport + FileTransport>(
    State(app): Api<T>,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if split_host_port(&body.bootstrap).is_none() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("bootstrap {:?} is not host:port", body.bootstrap),
        ));
    }
    if body.bootstrap == app.ring.config().node.advertise {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "a peer cannot join through itself",
        ));
    }
    app.ring.join(&body.bootstrap).await?;
    Ok(Json(app.node_view()).into_response())
}

async fn leave<T: Transport + FileTransport>(State(app): Api<T>) -> Result<Response, Problem> {
    app.files.leave().await?;
    Ok(Json(app.node_view()).into_response())
}

#[derive(Serialize)]
struct LookupAnswer {
    key: String,
    id: Id,
    node: PeerView,
    successors: Vec<PeerView>,
    hops: u32,
    path: Vec<PeerView>,
    timeouts: u32,
}

fn answer(key: String, r: LookupResult) -> LookupAnswer {
    LookupAnswer {
        key,
        id: r.target,
        node: PeerView::from(&r.node),
        successors: r.successors.iter().map(PeerView::from).collect(),
        hops: r.hops,
        path: r.path.iter().map(PeerView::from).collect(),
        timeouts: r.timeouts,
    }
}

async fn lookup_key<T: Transport + FileTransport>(
    State(app): Api<T>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let r = app.ring.lookup(Id::hash(key.as_bytes())).await?;
    let r = app.ring.confirm_responsible(r).await;
    Ok(Json(answer(key, r)).into_response())
}

#[derive(Deserialize)]
struct IdQuery {
    id: Option<String>,
}

async fn lookup_id<T: Transport + FileTransport>(
    State(app): Api<T>,
    query: Result<Query<IdQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let Some(raw) = q.id else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "give a key in the path (/v1/lookup/KEY) or an identifier (?id=40 hex characters)",
        ));
    };
    let id: Id = raw
        .parse()
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("id: {e}")))?;
    let r = app.ring.lookup(id).await?;
    let r = app.ring.confirm_responsible(r).await;
    Ok(Json(answer(raw, r)).into_response())
}

async fn healthz<T: Transport + FileTransport>(State(app): Api<T>) -> Response {
    if app.ring.is_alive() {
        Json(json!({"alive": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"alive": false, "reasons": ["maintenance loop stalled"]})),
        )
            .into_response()
    }
}

async fn readyz<T: Transport + FileTransport>(State(app): Api<T>) -> Response {
    let reasons: Vec<String> = app.ring.readiness().iter().map(|r| r.to_string()).collect();
    if reasons.is_empty() {
        Json(json!({"ready": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "member": app.ring.is_member(), "reasons": reasons})),
        )
            .into_response()
    }
}

async fn metrics<T: Transport + FileTransport>(State(app): Api<T>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.ring.render_metrics(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the router serves is described, with the right methods.
    #[test]
    fn the_openapi_document_covers_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let source = include_str!("api.rs");
        let routes: Vec<&str> = source
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".route(\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert!(routes.len() >= 13, "{routes:?}");
        for route in routes {
            assert!(
                doc["paths"][route].is_object(),
                "{route} is not in openapi.json"
            );
        }
        for (path, methods) in [
            ("/v1/files/{name}", &["get", "put", "head", "delete"][..]),
            ("/v1/ring/join", &["post"][..]),
            ("/v1/ring/leave", &["post"][..]),
        ] {
            for m in methods {
                assert!(doc["paths"][path][m].is_object(), "{m} {path}");
            }
        }
    }
}
