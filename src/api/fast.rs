//! The lookup route without the router: `GET /v1/lookup/{key}` is the API's most frequent
//! request, and the router's work for it (matching, the extensions it inserts, the boxed
//! future of every middleware and of the handler) costs more allocations than the answer.
//! [`Fast`] answers such a request at once when nothing the router's layers do would change
//! the answer: tracing is off (no server span to make), the access check passes (the same
//! [`Access::check`] the `auth::require` layer runs), and the key is one plain path segment
//! (no `%` to decode, no `/`), and no `Cache-Control` or `Pragma` asks for a fresh answer.
//! The handler's errors are problem documents already, so
//! `problems_only` would pass them as they are. Every other request goes to the router.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use super::{Access, App, ring};
use crate::transport::BoxFuture;

/// The API's service: the lookup fast path in front of the full router.
#[derive(Clone)]
pub(super) struct Fast {
    pub(super) full: Router,
    pub(super) app: App,
    pub(super) access: Access,
}

const LOOKUP_PREFIX: &str = "/v1/lookup/";

impl Fast {
    /// The key of a lookup the fast path may answer.
    fn lookup_key(&self, req: &Request) -> Option<String> {
        if req.method() != Method::GET || crate::telemetry::enabled() {
            return None;
        }
        // A client asking for a fresh answer: the router's handler reads what it asks.
        let headers = req.headers();
        if headers.contains_key(header::CACHE_CONTROL) || headers.contains_key(header::PRAGMA) {
            return None;
        }
        let path = req.uri().path();
        let key = path.strip_prefix(LOOKUP_PREFIX)?;
        if key.is_empty() || key.contains(['/', '%']) {
            return None;
        }
        let authorization = req.headers().get(header::AUTHORIZATION);
        self.access.check(req.method(), path, authorization).ok()?;
        Some(key.to_owned())
    }
}

impl tower_service::Service<Request> for Fast {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if let Some(key) = self.lookup_key(&req) {
            let app = self.app.clone();
            return Box::pin(async move {
                Ok(match ring::lookup(&app, key, true).await {
                    Ok(answer) => answer,
                    Err(problem) => problem.into_response(),
                })
            });
        }
        let mut full = self.full.clone();
        Box::pin(async move { tower_service::Service::call(&mut full, req).await })
    }
}
