//! The HTTP/JSON transport: `POST /peer/v1/rpc` with a JSON [`RequestEnvelope`], answered with
//! a JSON [`ResponseEnvelope`]. Clients keep pooled keep-alive connections and a per-call
//! time-out.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;

use super::{
    FileHandler, FileTransport, ObjectInfo, PutReply, RequestHandler, Transport, TransportError,
    frame_object, unframe_object,
};
use crate::files::{FileMeta, ProviderRecord, Version};
use crate::id::Id;
use crate::ring::{Address, RequestEnvelope, ResponseEnvelope};
use crate::telemetry::http::{carrier_from_headers, trace_requests, with_trace_headers};
use crate::telemetry::peer_call_span;
use tracing::{Instrument, Span};

/// The path peers call.
pub const RPC_PATH: &str = "/peer/v1/rpc";

/// An HTTP client for the peer protocol.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    pub fn new(timeout: Duration) -> Result<HttpTransport, TransportError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        Ok(HttpTransport { client })
    }
}

impl Transport for HttpTransport {
    async fn call(
        &self,
        to: &Address,
        request: RequestEnvelope,
    ) -> Result<ResponseEnvelope, TransportError> {
        let url = format!("http://{to}{RPC_PATH}");
        let response = with_trace_headers(self.client.post(url))
            .json(&request)
            .send()
            .await
            .map_err(classify)?;
        if !response.status().is_success() {
            return Err(TransportError::Protocol(format!(
                "{to} answered HTTP {}",
                response.status()
            )));
        }
        response.json().await.map_err(classify)
    }
}

fn classify(e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() || e.is_request() {
        TransportError::Unreachable(e.to_string())
    } else {
        TransportError::Protocol(e.to_string())
    }
}

/// The peer-protocol server routes, answering with `handler`.
pub fn router<H: RequestHandler>(handler: Arc<H>) -> Router {
    Router::new()
        .route(RPC_PATH, post(rpc::<H>))
        .with_state(handler)
}

async fn rpc<H: RequestHandler>(
    State(handler): State<Arc<H>>,
    headers: HeaderMap,
    body: Result<Json<RequestEnvelope>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(request)) => {
            Json(handler.handle(request, &carrier_from_headers(&headers))).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}

impl HttpTransport {
    /// Sends a data-plane request with the trace context, in `span` (see [`file_rpc_span`]).
    async fn checked(
        &self,
        req: reqwest::RequestBuilder,
        to: &Address,
        span: &Span,
    ) -> Result<Option<reqwest::Response>, TransportError> {
        let sent = span
            .in_scope(|| with_trace_headers(req))
            .send()
            .instrument(span.clone())
            .await;
        let resp = sent.map_err(|e| {
            span.record("otel.status_code", "ERROR");
            classify(e)
        })?;
        span.record("http.response.status_code", resp.status().as_u16());
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s => {
                span.record("otel.status_code", "ERROR");
                let detail = resp.text().await.unwrap_or_default();
                Err(TransportError::Protocol(format!(
                    "{to} answered HTTP {s}: {detail}"
                )))
            }
        }
    }
}

impl FileTransport for HttpTransport {
    async fn put_object(
        &self,
        to: &Address,
        meta: &FileMeta,
        data: Option<Bytes>,
    ) -> Result<PutReply, TransportError> {
        let body = frame_object(meta, data.as_deref().unwrap_or_default());
        let req = self
            .client
            .put(format!("http://{to}/peer/v1/objects/{}", meta.id))
            .body(body);
        match self
            .checked(req, to, &peer_call_span("put_object", to))
            .await?
        {
            Some(resp) => resp.json().await.map_err(classify),
            None => Err(TransportError::Protocol(format!(
                "{to} has no object store"
            ))),
        }
    }

    async fn get_object(
        &self,
        to: &Address,
        id: Id,
    ) -> Result<Option<(FileMeta, Bytes)>, TransportError> {
        let req = self.client.get(format!("http://{to}/peer/v1/objects/{id}"));
        let Some(resp) = self
            .checked(req, to, &peer_call_span("get_object", to))
            .await?
        else {
            return Ok(None);
        };
        let body = resp.bytes().await.map_err(classify)?;
        unframe_object(body)
            .map(Some)
            .map_err(TransportError::Protocol)
    }

    async fn object_info(&self, to: &Address, id: Id) -> Result<ObjectInfo, TransportError> {
        let req = self
            .client
            .get(format!("http://{to}/peer/v1/objects/{id}/info"));
        match self
            .checked(req, to, &peer_call_span("object_info", to))
            .await?
        {
            Some(resp) => resp.json().await.map_err(classify),
            None => Ok(ObjectInfo::default()),
        }
    }

    async fn put_provider(
        &self,
        to: &Address,
        record: &ProviderRecord,
    ) -> Result<(), TransportError> {
        let req = self
            .client
            .post(format!("http://{to}/peer/v1/providers"))
            .json(record);
        self.checked(req, to, &peer_call_span("put_provider", to))
            .await
            .map(|_| ())
    }

    async fn get_shared(&self, to: &Address, name: &str) -> Result<Option<Bytes>, TransportError> {
        let mut url = reqwest::Url::parse(&format!("http://{to}/peer/v1/shared/"))
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|_| TransportError::Protocol("bad peer address".into()))?
            .pop_if_empty()
            .push(name);
        let span = peer_call_span("get_shared", to);
        let Some(resp) = self.checked(self.client.get(url), to, &span).await? else {
            return Ok(None);
        };
        resp.bytes().await.map(Some).map_err(classify)
    }

    async fn missing(
        &self,
        to: &Address,
        have: &[(Id, Version)],
    ) -> Result<Vec<Id>, TransportError> {
        let req = self
            .client
            .post(format!("http://{to}/peer/v1/objects/missing"))
            .json(have);
        match self
            .checked(req, to, &peer_call_span("missing", to))
            .await?
        {
            Some(resp) => resp.json().await.map_err(classify),
            None => Err(TransportError::Protocol(format!(
                "{to} has no object store"
            ))),
        }
    }
}

/// The file data-plane routes, answering with `handler`. Bodies up to `max_body` bytes.
pub fn files_router<H: FileHandler>(handler: Arc<H>, max_body: usize) -> Router {
    Router::new()
        .route("/peer/v1/objects/missing", post(missing::<H>))
        .route(
            "/peer/v1/objects/{id}",
            put(put_object::<H>).get(get_object::<H>),
        )
        .route("/peer/v1/objects/{id}/info", get(object_info::<H>))
        .route("/peer/v1/providers", post(put_provider::<H>))
        .route("/peer/v1/shared/{name}", get(get_shared::<H>))
        .route_layer(axum::middleware::from_fn(trace_requests))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(handler)
}

fn parse_id(raw: &str) -> Result<Id, (StatusCode, String)> {
    raw.parse()
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}")))
}

async fn put_object<H: FileHandler>(
    State(h): State<Arc<H>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let (meta, data) = match unframe_object(body) {
        Ok(x) => x,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    if meta.id != id {
        return (StatusCode::BAD_REQUEST, "id does not match the metadata").into_response();
    }
    let data = (!meta.deleted).then_some(data);
    match tokio::task::spawn_blocking(move || h.put_object(meta, data)).await {
        Ok(Ok(reply)) => Json(reply).into_response(),
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn get_object<H: FileHandler>(State(h): State<Arc<H>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match tokio::task::spawn_blocking(move || h.get_object(id)).await {
        Ok(Some((meta, data))) => frame_object(&meta, &data).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn object_info<H: FileHandler>(State(h): State<Arc<H>>, Path(id): Path<String>) -> Response {
    match parse_id(&id) {
        Ok(id) => Json(h.object_info(id)).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn put_provider<H: FileHandler>(
    State(h): State<Arc<H>>,
    body: Result<Json<ProviderRecord>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(record)) => {
            h.put_provider(record);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}

async fn get_shared<H: FileHandler>(State(h): State<Arc<H>>, Path(name): Path<String>) -> Response {
    match tokio::task::spawn_blocking(move || h.get_shared(&name)).await {
        Ok(Some(data)) => data.into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn missing<H: FileHandler>(
    State(h): State<Arc<H>>,
    body: Result<Json<Vec<(Id, Version)>>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(have)) => Json(h.missing(have)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}
