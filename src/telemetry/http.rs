//! Trace context on HTTP: `traceparent`/`tracestate` headers on requests peers send, and a
//! server span for every request a router answers.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing::{Instrument, info_span};

use super::TraceCarrier;

/// The trace context a request arrived with.
pub fn carrier_from_headers(headers: &HeaderMap) -> TraceCarrier {
    TraceCarrier::from_fields(
        super::context::FIELDS
            .iter()
            .filter_map(|name| Some((*name, headers.get(*name)?.to_str().ok()?))),
    )
}

/// Adds the current trace context to an outgoing request.
pub fn with_trace_headers(mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    for (name, value) in TraceCarrier::current().fields() {
        req = req.header(name, value);
    }
    req
}

/// Middleware (`Router::route_layer`): one server span per request, named after the route,
/// continuing the caller's trace when the request carries one.
pub async fn trace_requests(req: Request, next: Next) -> Response {
    if !super::enabled() {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let span = info_span!(
        "http.server",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
    );
    carrier_from_headers(req.headers()).adopt(&span);
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
