//! The ring routes: this node, its fingers, the ring walk, join, leave and lookups.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Api;
use super::problem::Problem;
use super::views::{self, LookupView, RingWalkView};
use crate::config::{Config, TransportKind, split_host_port, subject};
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
    check_bootstrap(app.ring.config(), &body.bootstrap)
        .map_err(|detail| Problem::new(StatusCode::BAD_REQUEST, detail))?;
    if body.bootstrap == app.ring.config().node.advertise {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "a peer cannot join through itself",
        ));
    }
    app.ring.join(&body.bootstrap).await?;
    Ok(Json(app.node_view()).into_response())
}

/// A bootstrap address this peer's transport can use: `host:port`, or with
/// `transport.kind = "nats"` a peer subject of its ring (`chordnet.<ring>.peer.<node>`).
fn check_bootstrap(config: &Config, bootstrap: &str) -> Result<(), String> {
    if config.transport.kind == TransportKind::Nats {
        return subject::check_peer_subject(&config.nats.ring_name, bootstrap);
    }
    match split_host_port(bootstrap) {
        Some(_) => Ok(()),
        None => Err(format!("bootstrap {bootstrap:?} is not host:port")),
    }
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
    headers: HeaderMap,
) -> Result<Response, Problem> {
    lookup(&app, key, may_reuse(&headers)).await
}

/// Whether a lookup may be answered from what the responsible peer said this period
/// (`ring.reuse_lookup_answers`): not when the client asks for a fresh answer, as HTTP clients
/// do, with `Cache-Control: no-cache` or `no-store` (browsers send it for `fetch` with
/// `cache: "no-store"`, as the ring page does) or `Pragma: no-cache`.
pub(super) fn may_reuse(headers: &HeaderMap) -> bool {
    let says_no = |name, directives: &[&str]| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().unwrap_or("").split(',').any(|d| {
                let d = d.trim();
                directives.iter().any(|no| d.eq_ignore_ascii_case(no))
            })
        })
    };
    !says_no(header::CACHE_CONTROL, &["no-cache", "no-store"])
        && !says_no(header::PRAGMA, &["no-cache"])
}

/// `GET /v1/lookup/{key}` for a decoded key (the route's handler, and [`super::fast`]).
pub(super) async fn lookup(
    app: &super::App,
    key: String,
    may_reuse: bool,
) -> Result<Response, Problem> {
    let r = app
        .ring
        .lookup_for_user(Id::hash(key.as_bytes()), may_reuse)
        .await?;
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
    headers: HeaderMap,
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
    let r = app.ring.lookup_for_user(id, may_reuse(&headers)).await?;
    let r = app.ring.confirm_responsible(r).await;
    Ok(Json(LookupView::new(raw, r)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_asking_for_a_fresh_answer_gets_no_reused_one() {
        let with = |pairs: &[(header::HeaderName, &'static str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.append(name, header::HeaderValue::from_static(value));
            }
            may_reuse(&h)
        };
        assert!(with(&[]));
        assert!(with(&[(header::CACHE_CONTROL, "max-age=60")]));
        assert!(!with(&[(header::CACHE_CONTROL, "no-cache")]));
        assert!(!with(&[(header::CACHE_CONTROL, "max-age=0, No-Store")]));
        assert!(!with(&[
            (header::CACHE_CONTROL, "max-age=0"),
            (header::CACHE_CONTROL, "no-cache"),
        ]));
        assert!(!with(&[(header::PRAGMA, "no-cache")]));
    }

    #[test]
    fn a_bootstrap_is_host_port_or_with_nats_a_peer_subject_of_the_ring() {
        let mut config = Config::default();
        assert!(check_bootstrap(&config, "10.0.0.4:7000").is_ok());
        assert!(check_bootstrap(&config, "peer-0.chordnet:7000").is_ok());
        let refused = check_bootstrap(&config, "chordnet.default.peer.p0").unwrap_err();
        assert!(refused.contains("is not host:port"), "{refused}");
        config.transport.kind = TransportKind::Nats;
        config.nats.ring_name = "r1".into();
        assert!(check_bootstrap(&config, "chordnet.r1.peer.p0").is_ok());
        for bad in [
            "chordnet.r2.peer.p0",
            "10.0.0.4:7000",
            "chordnet.r1.peer.a.b",
        ] {
            let refused = check_bootstrap(&config, bad).unwrap_err();
            assert!(refused.contains("not a peer subject of ring"), "{refused}");
        }
    }
}
