//! The REST API v1 for users, the probes and `/metrics` (the contract is in the project's
//! API document). Errors are `application/problem+json` (RFC 9457).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::split_host_port;
use crate::id::Id;
use crate::ring::LookupResult;
use crate::service::{PeerView, Service, ServiceError};
use crate::transport::Transport;

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

type Api<T> = State<Arc<Service<T>>>;

/// The API routes.
pub fn router<T: Transport>(service: Arc<Service<T>>) -> Router {
    Router::new()
        .route("/v1/node", get(node::<T>))
        .route("/v1/node/fingers", get(fingers::<T>))
        .route("/v1/node/files", get(not_yet))
        .route("/v1/ring", get(ring::<T>))
        .route("/v1/ring/join", post(join::<T>))
        .route("/v1/ring/leave", post(leave::<T>))
        .route("/v1/lookup", get(lookup_id::<T>))
        .route("/v1/lookup/{key}", get(lookup_key::<T>))
        .route(
            "/v1/files/{name}",
            get(not_yet).put(not_yet).head(not_yet).delete(not_yet),
        )
        .route("/v1/files/{name}/locations", get(not_yet))
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
        .with_state(service)
}

async fn not_yet() -> Problem {
    Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "file sharing is not available in this version of chordnet yet",
    )
}

async fn node<T: Transport>(State(svc): Api<T>) -> Response {
    Json(svc.view()).into_response()
}

async fn fingers<T: Transport>(State(svc): Api<T>) -> Response {
    let fingers: Vec<_> = svc
        .fingers()
        .into_iter()
        .map(|(index, start, node)| json!({"index": index, "start": start, "node": node}))
        .collect();
    Json(json!({ "fingers": fingers })).into_response()
}

async fn ring<T: Transport>(State(svc): Api<T>) -> Response {
    Json(svc.ring_walk(100_000).await).into_response()
}

#[derive(Deserialize)]
struct JoinBody {
    bootstrap: String,
}

async fn join<T: Transport>(
    State(svc): Api<T>,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if split_host_port(&body.bootstrap).is_none() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("bootstrap {:?} is not host:port", body.bootstrap),
        ));
    }
    if body.bootstrap == svc.config().node.advertise {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "a peer cannot join through itself",
        ));
    }
    svc.join(&body.bootstrap).await?;
    Ok(Json(svc.view()).into_response())
}

async fn leave<T: Transport>(State(svc): Api<T>) -> Result<Response, Problem> {
    svc.leave().await?;
    Ok(Json(svc.view()).into_response())
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

async fn lookup_key<T: Transport>(
    State(svc): Api<T>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let r = svc.lookup(Id::hash(key.as_bytes())).await?;
    Ok(Json(answer(key, r)).into_response())
}

#[derive(Deserialize)]
struct IdQuery {
    id: Option<String>,
}

async fn lookup_id<T: Transport>(
    State(svc): Api<T>,
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
    let r = svc.lookup(id).await?;
    Ok(Json(answer(raw, r)).into_response())
}

async fn healthz<T: Transport>(State(svc): Api<T>) -> Response {
    if svc.is_alive() {
        Json(json!({"alive": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"alive": false, "reasons": ["maintenance loop stalled"]})),
        )
            .into_response()
    }
}

async fn readyz<T: Transport>(State(svc): Api<T>) -> Response {
    let reasons: Vec<String> = svc.readiness().iter().map(|r| r.to_string()).collect();
    if reasons.is_empty() {
        Json(json!({"ready": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "member": svc.is_member(), "reasons": reasons})),
        )
            .into_response()
    }
}

async fn metrics<T: Transport>(State(svc): Api<T>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        svc.render_metrics(),
    )
        .into_response()
}
