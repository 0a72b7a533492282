//! The probes (`/healthz`, `/readyz`) and the Prometheus scrape (`/metrics`).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Api;

pub(super) async fn healthz(State(app): Api) -> Response {
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

pub(super) async fn readyz(State(app): Api) -> Response {
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

pub(super) async fn metrics(State(app): Api) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.ring.render_metrics(),
    )
        .into_response()
}
