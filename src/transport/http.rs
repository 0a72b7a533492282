//! The HTTP/JSON transport: `POST /peer/v1/rpc` with a JSON [`RequestEnvelope`], answered with
//! a JSON [`ResponseEnvelope`]. Clients keep pooled keep-alive connections and a per-call
//! time-out.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::{RequestHandler, Transport, TransportError};
use crate::ring::{Address, RequestEnvelope, ResponseEnvelope};

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
        let response = self
            .client
            .post(url)
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
    body: Result<Json<RequestEnvelope>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(request)) => Json(handler.handle(request)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}
