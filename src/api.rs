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
use crate::files::spool::spool_stream;
use crate::files::store::StoreError;
use crate::id::Id;
use crate::ring::LookupResult;
use crate::runtime::{PeerView, Service, ServiceError};
use crate::transport::BodyError;

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
            FilesError::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            FilesError::Store(StoreError::Full { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            FilesError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, e.to_string())
    }
}

/// A problem the client may retry: 503 with `Retry-After`.
fn retryable(p: Problem) -> Response {
    let retry = p.status == StatusCode::SERVICE_UNAVAILABLE.as_u16();
    let mut r = p.into_response();
    if retry {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// The file routes' errors: problems, with `Retry-After` on 503.
struct FileProblem(Problem);

impl From<FilesError> for FileProblem {
    fn from(e: FilesError) -> FileProblem {
        FileProblem(Problem::from(e))
    }
}

impl From<Problem> for FileProblem {
    fn from(p: Problem) -> FileProblem {
        FileProblem(p)
    }
}

impl IntoResponse for FileProblem {
    fn into_response(self) -> Response {
        retryable(self.0)
    }
}

/// What every handler sees: the ring service and the file layer.
pub struct App {
    ring: Arc<Service>,
    files: Arc<Files>,
}

impl Clone for App {
    fn clone(&self) -> App {
        App {
            ring: Arc::clone(&self.ring),
            files: Arc::clone(&self.files),
        }
    }
}

impl App {
    /// `GET /v1/node` (also the answer to join and leave): the ring's view plus the key count,
    /// which only the file layer knows.
    fn node_view(&self) -> crate::runtime::NodeView {
        let mut view = self.ring.view();
        view.keys = self.files.stored_keys();
        view
    }
}

type Api = State<App>;

/// The API routes.
pub fn router(service: Arc<Service>, files: Arc<Files>) -> Router {
    Router::new()
        .route("/v1/node", get(node))
        .route("/v1/node/fingers", get(fingers))
        .route("/v1/node/files", get(node_files))
        .route("/v1/ring", get(ring))
        .route("/v1/ring/join", post(join))
        .route("/v1/ring/leave", post(leave))
        .route("/v1/lookup", get(lookup_id))
        .route("/v1/lookup/{key}", get(lookup_key))
        .route(
            "/v1/files/{name}",
            get(download)
                .put(upload)
                .head(head)
                .delete(delete)
                // Uploads are limited by files.max_file_size, checked while reading.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{name}/locations", get(locations))
        .route("/v1/openapi.json", get(openapi))
        // A span per API request; probes and scrapes (every few seconds) are left out.
        .route_layer(axum::middleware::from_fn(
            crate::telemetry::http::trace_requests,
        ))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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

async fn node(State(app): Api) -> Response {
    Json(app.node_view()).into_response()
}

async fn node_files(State(app): Api) -> Response {
    Json(app.files.node_files()).into_response()
}

async fn upload(
    State(app): Api,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FileProblem> {
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
        return Err(too_large().into());
    }
    // Spooled to disk while hashing (bounded memory), stopping as soon as it passes the limit.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, BodyError>>(4);
    let reader = async move {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BodyError::Io(format!("reading the body: {e}")));
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() {
                break; // the spool stopped (too large): drain what is left
            }
            if failed {
                return stream;
            }
        }
        stream
    };
    let chunks =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
            .boxed();
    let dir = app.files.spool_dir().to_path_buf();
    let (mut stream, spooled) = tokio::join!(reader, spool_stream(&dir, chunks, max));
    let content = match spooled {
        Ok(s) => s,
        Err(StoreError::TooLarge { .. }) => {
            drain(&mut stream, max).await;
            return Err(too_large().into());
        }
        Err(StoreError::Body(e)) => return Err(Problem::new(StatusCode::BAD_REQUEST, e).into()),
        Err(e) => return Err(FilesError::Store(e).into()),
    };
    let up = app.files.upload(&name, content).await?;
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

/// The content as it streams to the user, checked against its SHA-256: a mismatch ends the
/// response with an error (the connection is cut before the last byte, so no client takes a
/// corrupt file for a whole one). The holder verified its copy before sending the first byte.
fn verified(
    expected: String,
    body: crate::transport::Body,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    use sha2::Digest;
    let state = (body.into_stream(), Some(sha2::Sha256::new()), expected);
    futures_util::stream::unfold(state, |(mut inner, hasher, expected)| async move {
        let mut hasher = hasher?;
        match inner.next().await {
            Some(Ok(chunk)) => {
                hasher.update(&chunk);
                Some((Ok(chunk), (inner, Some(hasher), expected)))
            }
            Some(Err(e)) => Some((
                Err(std::io::Error::other(e.to_string())),
                (inner, None, expected),
            )),
            None => {
                let got = crate::files::spool::hex(&hasher.finalize());
                if got == expected {
                    None
                } else {
                    tracing::warn!(%expected, %got, "content failed its sha256 check in transit");
                    let e = std::io::Error::other("content failed its sha256 check");
                    Some((Err(e), (inner, None, expected)))
                }
            }
        }
    })
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

async fn download(State(app): Api, Path(name): Path<String>) -> Result<Response, FileProblem> {
    let object = app.files.download(&name).await?;
    let headers = file_headers(&object.meta);
    let body = Body::from_stream(verified(object.meta.sha256.clone(), object.body));
    Ok((headers, body).into_response())
}

async fn head(State(app): Api, Path(name): Path<String>) -> Result<Response, FileProblem> {
    let meta = app.files.head(&name).await?;
    Ok((file_headers(&meta), ()).into_response())
}

async fn locations(State(app): Api, Path(name): Path<String>) -> Result<Response, FileProblem> {
    Ok(Json(app.files.locations(&name).await?).into_response())
}

async fn delete(State(app): Api, Path(name): Path<String>) -> Result<Response, FileProblem> {
    app.files.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn fingers(State(app): Api) -> Response {
    let fingers: Vec<_> = app
        .ring
        .fingers()
        .into_iter()
        .map(|(index, start, node)| json!({"index": index, "start": start, "node": node}))
        .collect();
    Json(json!({ "fingers": fingers })).into_response()
}

async fn ring(State(app): Api) -> Response {
    Json(app.ring.ring_walk(100_000).await).into_response()
}

#[derive(Deserialize)]
struct JoinBody {
    bootstrap: String,
}

async fn join(
    State(app): Api,
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

async fn leave(State(app): Api) -> Result<Response, Problem> {
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

async fn lookup_key(State(app): Api, Path(key): Path<String>) -> Result<Response, Problem> {
    let r = app.ring.lookup(Id::hash(key.as_bytes())).await?;
    let r = app.ring.confirm_responsible(r).await;
    Ok(Json(answer(key, r)).into_response())
}

#[derive(Deserialize)]
struct IdQuery {
    id: Option<String>,
}

async fn lookup_id(
    State(app): Api,
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

async fn healthz(State(app): Api) -> Response {
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

async fn readyz(State(app): Api) -> Response {
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

async fn metrics(State(app): Api) -> Response {
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
