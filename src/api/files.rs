//! The file routes: upload, download, head, locations, delete, and this peer's files.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::Api;
use super::problem::Problem;
use super::range::{self, Wanted};
use super::views::{LocationsView, NodeFilesView, UploadedView};
use crate::files::FileMeta;
use crate::files::ops::FilesError;
use crate::files::store::StoreError;
use crate::transport::BodyError;

pub(super) async fn node_files(State(app): Api) -> Response {
    Json(NodeFilesView::from(app.files.node_files())).into_response()
}

pub(super) async fn upload(
    State(app): Api,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    crate::files::validate_name(&name)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let max = app.ring.config().files.max_file_size;
    // A client that stops sending cannot hold the request (and the peer's shutdown) for ever.
    let progress = app.ring.config().transport.progress_timeout;
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
        // A client that waits for `100 Continue` gets the 413 at once, before sending a byte
        // (hyper sends the 100 only when the body is read).
        if !expects_continue(&headers) {
            drain(&mut stream, max, progress).await;
        }
        return Err(too_large());
    }
    // Spooled to disk while hashing (bounded memory), stopping as soon as it passes the limit.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, BodyError>>(4);
    let reader = async move {
        loop {
            let chunk = match tokio::time::timeout(progress, stream.next()).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return (stream, false),
                Err(_) => {
                    let stalled = BodyError::Io("the body stopped arriving".into());
                    let _ = tx.send(Err(stalled)).await;
                    return (stream, true);
                }
            };
            let chunk = chunk.map_err(|e| BodyError::Io(format!("reading the body: {e}")));
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() {
                return (stream, false); // the spool stopped (too large): drain what is left
            }
            if failed {
                return (stream, false);
            }
        }
    };
    let chunks =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
            .boxed();
    // Cut into blocks as it arrives (a file of one block is spooled and stored inline).
    let ((mut stream, stalled), uploaded) =
        tokio::join!(reader, app.files.upload_stream(&name, chunks, max));
    if stalled {
        return Err(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "no byte of the body arrived for {} (transport.progress_timeout)",
                humantime::format_duration(progress)
            ),
        ));
    }
    let up = match uploaded {
        Ok(up) => up,
        Err(FilesError::Store(StoreError::TooLarge { .. })) => {
            drain(&mut stream, max, progress).await;
            return Err(too_large());
        }
        Err(FilesError::Store(StoreError::Body(e))) => {
            return Err(Problem::new(StatusCode::BAD_REQUEST, e));
        }
        Err(e) => return Err(e.into()),
    };
    let status = if up.replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(UploadedView::from(up))).into_response())
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Reads and discards what is left of a refused upload, up to about `max` more bytes, so that
/// an HTTP/1.1 client that sends its whole body before reading gets the 413 rather than a
/// broken connection. Past that, or once no byte came for `progress`, the connection is
/// simply closed.
async fn drain(stream: &mut axum::body::BodyDataStream, max: u64, progress: Duration) {
    let mut discarded = 0u64;
    while discarded <= max {
        match tokio::time::timeout(progress, stream.next()).await {
            Ok(Some(Ok(chunk))) => discarded += chunk.len() as u64,
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
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

pub(super) async fn download(
    State(app): Api,
    Path(name): Path<String>,
    request: HeaderMap,
) -> Result<Response, Problem> {
    let found = app.files.download(&name).await?;
    let size = found.meta.size;
    let mut headers = file_headers(&found.meta);
    let etag = format!("\"{}\"", found.meta.sha256);
    if not_modified(&request, &etag) {
        headers.remove(header::CONTENT_LENGTH);
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    match range::wanted(&request, size, &etag) {
        Wanted::Whole => {
            let body = verified(found.meta.sha256.clone(), found.body(None));
            Ok((headers, Body::from_stream(body)).into_response())
        }
        Wanted::Part { first, last } => {
            let range = format!("bytes {first}-{last}/{size}");
            if let Ok(v) = HeaderValue::from_str(&range) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(last - first + 1));
            let body = found
                .body(Some((first, last)))
                .into_stream()
                .map(|c| c.map_err(|e| std::io::Error::other(e.to_string())));
            Ok((
                StatusCode::PARTIAL_CONTENT,
                headers,
                Body::from_stream(body),
            )
                .into_response())
        }
        Wanted::Unsatisfiable => {
            let mut r = Problem::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the file has {size} bytes: the range asks for none of them"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            Ok(r)
        }
    }
}

pub(super) async fn head(State(app): Api, Path(name): Path<String>) -> Result<Response, Problem> {
    let meta = app.files.head(&name).await?;
    Ok((file_headers(&meta), ()).into_response())
}

/// `?blocks=true` on locations.
#[derive(serde::Deserialize)]
pub(super) struct LocationsQuery {
    #[serde(default)]
    blocks: bool,
}

pub(super) async fn locations(
    State(app): Api,
    Path(name): Path<String>,
    Query(q): Query<LocationsQuery>,
) -> Result<Response, Problem> {
    let found = app.files.locations(&name, q.blocks).await?;
    Ok(Json(LocationsView::from(found)).into_response())
}

pub(super) async fn delete(State(app): Api, Path(name): Path<String>) -> Result<Response, Problem> {
    app.files.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
