//! RFC 9457 problem documents (`application/problem+json`) and how the lower layers' errors
//! map to them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::files::ops::FilesError;
use crate::files::store::StoreError;
use crate::runtime::ServiceError;

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

impl From<FilesError> for Problem {
    fn from(e: FilesError) -> Problem {
        let status = match &e {
            FilesError::Name(_) => StatusCode::BAD_REQUEST,
            FilesError::NotFound(_) => StatusCode::NOT_FOUND,
            FilesError::Ring(inner) => return Problem::from(inner.clone()),
            FilesError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            FilesError::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            FilesError::Store(StoreError::Full { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            FilesError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, e.to_string())
    }
}

/// A problem the client may retry: 503 with `Retry-After`.
fn retryable(p: Problem) -> Response {
    let retry = p.status == StatusCode::SERVICE_UNAVAILABLE.as_u16();
    let mut r = p.into_response();
    if retry {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// The file routes' errors: problems, with `Retry-After` on 503.
pub(super) struct FileProblem(pub(super) Problem);

impl From<FilesError> for FileProblem {
    fn from(e: FilesError) -> FileProblem {
        FileProblem(Problem::from(e))
    }
}

impl From<Problem> for FileProblem {
    fn from(p: Problem) -> FileProblem {
        FileProblem(p)
    }
}

impl IntoResponse for FileProblem {
    fn into_response(self) -> Response {
        retryable(self.0)
    }
}
