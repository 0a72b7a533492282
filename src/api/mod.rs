//! The REST API v1 for users, the probes and `/metrics` (the contract is in the project's
//! API document). Errors are `application/problem+json` (RFC 9457).
//!
//! `mod.rs` holds the router and the state; `problem.rs` the problem documents and the error
//! mapping; `files.rs`, `ring.rs` and `probes.rs` the handlers; `views.rs` the JSON shapes.

pub mod auth;
mod fast;
mod files;
pub mod front;
pub mod limit;
mod probes;
pub mod problem;
pub(crate) mod range;
mod ring;
pub mod ring_view;
pub mod ui;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use auth::Access;
pub use problem::Problem;

use crate::files::ops::Files;
use crate::runtime::Service;

/// What every handler sees: the ring service and the file layer.
pub struct App {
    ring: Arc<Service>,
    files: Arc<Files>,
    /// The ring page's shared gather (`GET /v1/ring/view`).
    views: Arc<ring_view::Cache>,
}

impl Clone for App {
    fn clone(&self) -> App {
        App {
            ring: Arc::clone(&self.ring),
            files: Arc::clone(&self.files),
            views: Arc::clone(&self.views),
        }
    }
}

impl App {
    /// `GET /v1/node` (also the answer to join and leave): the ring's view plus the key count,
    /// which only the file layer knows.
    fn node_view(&self) -> views::NodeView {
        let api = self.ring.config().api.listen.to_string();
        let transport = self.ring.factory().kind();
        views::NodeView::new(
            &self.ring.status(),
            api,
            transport,
            self.files.stored_keys(),
        )
    }
}

type Api = State<App>;

/// The API routes, behind `access` (bearer tokens, when configured), with the lookup route's
/// fast path ([`fast`]) in front.
pub fn router(service: Arc<Service>, files: Arc<Files>, access: Access) -> Router {
    let app = App {
        ring: service,
        files,
        views: Arc::new(ring_view::Cache::new()),
    };
    let full = routes(app.clone(), access.clone());
    Router::new().fallback_service(fast::Fast { full, app, access })
}

/// Every route, with its layers.
fn routes(app: App, access: Access) -> Router {
    let service = &app.ring;
    let transfers = limit::Transfers::new(service.config().api.max_transfers, service.metrics());
    Router::new()
        .route("/v1/node", get(ring::node))
        .route("/v1/node/fingers", get(ring::fingers))
        .route("/v1/node/files", get(files::node_files))
        .route("/v1/node/view", get(ring_view::node_card))
        .route("/v1/ring", get(ring::ring))
        .route("/v1/ring/view", get(ring_view::ring_view))
        .route("/v1/ring/join", post(ring::join))
        .route("/v1/ring/leave", post(ring::leave))
        .route("/v1/ring/merge", post(ring::merge))
        .route("/v1/lookup", get(ring::lookup_id))
        .route("/v1/lookup/{key}", get(ring::lookup_key))
        .route(
            "/v1/files/{name}",
            get(files::download)
                .put(files::upload)
                .head(files::head)
                .delete(files::delete)
                // Uploads are limited by files.max_file_size, checked while reading.
                .layer(DefaultBodyLimit::disable())
                .layer(axum::middleware::from_fn_with_state(
                    transfers,
                    limit::limit,
                )),
        )
        .route("/v1/files/{name}/locations", get(files::locations))
        .route("/v1/openapi.json", get(openapi))
        // A span per API request; probes and scrapes (every few seconds) are left out.
        .route_layer(axum::middleware::from_fn(
            crate::telemetry::http::trace_requests,
        ))
        .route("/ui", get(ui::redirect))
        .route("/ui/", get(ui::page))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(axum::middleware::from_fn(problem::problems_only))
        // Outermost: a request without the right token learns nothing, not even which routes exist.
        .layer(axum::middleware::from_fn_with_state(access, auth::require))
        .with_state(app)
}

/// The OpenAPI 3.1 description of this API (kept beside the code; a test checks that it
/// covers every route).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the router serves is described, with the right methods.
    #[test]
    fn the_openapi_document_covers_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let source = include_str!("mod.rs");
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

    /// Issue 10, item 19: a PUT without a body stores an empty file, so the document does not
    /// call the body required.
    #[test]
    fn the_openapi_document_allows_an_empty_upload() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        let body = &doc["paths"]["/v1/files/{name}"]["put"]["requestBody"];
        assert!(body.is_object(), "{body}");
        assert_ne!(body["required"], true, "{body}");
    }
}
