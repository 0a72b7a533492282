//! The ring routes: this node, its fingers, the ring walk, join, leave and lookups.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Api;
use super::problem::Problem;
use super::views::{self, LookupView, RingWalkView};
use crate::config::split_host_port;
use crate::id::Id;

pub(super) async fn node(State(app): Api) -> Response {
    Json(app.node_view()).into_response()
}

pub(super) async fn fingers(State(app): Api) -> Response {
    let fingers = views::fingers(&app.ring.status());
    Json(json!({ "fingers": fingers })).into_response()
}

pub(super) async fn ring(State(app): Api) -> Response {
    let (nodes, complete) = app.ring.ring_walk(100_000).await;
    Json(RingWalkView::new(&nodes, complete)).into_response()
}

#[derive(Deserialize)]
pub(super) struct JoinBody {
    bootstrap: String,
}

pub(super) async fn join(
    State(app): Api,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body.map_err(|e| rejected(e.status(), e.body_text()))?;
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

/// A request the extractors refused: their status (413 for a body past the limit, 415 for
/// one that is not JSON), except that a body of the wrong shape is a plain 400.
fn rejected(status: StatusCode, text: String) -> Problem {
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    Problem::new(status, text)
}

#[derive(Deserialize)]
pub(super) struct MergeBody {
    peer: String,
}

/// `POST /v1/ring/merge {"peer": ADDRESS}`: brings the ring of that peer into this one
/// (`runtime::merge`). 202 with what started, 200 when the two are one ring already.
pub(super) async fn merge(
    State(app): Api,
    body: Result<Json<MergeBody>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) = body.map_err(|e| rejected(e.status(), e.body_text()))?;
    let report = app.ring.merge(&body.peer).await?;
    let status = if report.outcome == "already_one_ring" {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(report)).into_response())
}

pub(super) async fn leave(State(app): Api) -> Result<Response, Problem> {
    app.files.leave().await?;
    Ok(Json(app.node_view()).into_response())
}

pub(super) async fn lookup_key(
    State(app): Api,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let r = app.ring.lookup(Id::hash(key.as_bytes())).await?;
    let r = app.ring.confirm_responsible(r).await;
    Ok(Json(LookupView::new(key, r)).into_response())
}

#[derive(Deserialize)]
pub(super) struct IdQuery {
    id: Option<String>,
}

pub(super) async fn lookup_id(
    State(app): Api,
    query: Result<Query<IdQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = query.map_err(|e| rejected(e.status(), e.body_text()))?;
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
    Ok(Json(LookupView::new(raw, r)).into_response())
}
