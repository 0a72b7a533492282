//! RFC 9457 problem documents (`application/problem+json`) and how the lower layers' errors
//! map to them.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
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

/// A problem document; a 503 (a transient failure: the ring is changing, too few holders
/// answered) carries `Retry-After`, whatever the route.
impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_default();
        let mut r = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Problem {
        let status = match &e {
            ServiceError::AlreadyMember | ServiceError::NotMember => StatusCode::CONFLICT,
            ServiceError::JoinFailed(_) => StatusCode::BAD_GATEWAY,
            ServiceError::Lookup(crate::ring::LookupError::NotMember) => StatusCode::CONFLICT,
            // No live route right now (a crash moments ago): the ring repairs itself, retry.
            ServiceError::Lookup(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ServiceError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        Problem::new(status, e.to_string())
    }
}

impl From<crate::runtime::MergeError> for Problem {
    fn from(e: crate::runtime::MergeError) -> Problem {
        use crate::runtime::MergeError;
        let status = match e {
            MergeError::Service(inner) => return Problem::from(inner),
            MergeError::BadPeer(_) => StatusCode::BAD_REQUEST,
            MergeError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            MergeError::Refused(_) => StatusCode::CONFLICT,
        };
        Problem::new(status, e.to_string())
    }
}

impl From<FilesError> for Problem {
    fn from(e: FilesError) -> Problem {
        let status = match &e {
            FilesError::Name(_) => StatusCode::BAD_REQUEST,
            FilesError::NotFound(_) | FilesError::SharedOnly { .. } => StatusCode::NOT_FOUND,
            FilesError::Ring(inner) => return Problem::from(inner.clone()),
            FilesError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            FilesError::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            FilesError::Store(StoreError::Full { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            FilesError::Store(StoreError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            FilesError::Store(_) | FilesError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, e.to_string())
    }
}

/// Every error a client can see is a problem document: the responses that axum's extractors
/// and limits build themselves (`text/plain`, or no body: an undecodable path, a rejected
/// JSON body) become one, with their status and headers. JSON answers (the probes' 503) and
/// problems pass untouched.
pub async fn problems_only(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/problem+json") || ct.starts_with("application/json")
        });
    if json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut problem = Problem::new(status, detail).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::LookupError;

    /// Issue 10, item 18: a lookup that fails (a crash moments ago) is a transient failure the
    /// client should retry: 503 with Retry-After, on the ring routes as on the file routes.
    #[test]
    fn a_failed_lookup_is_503_with_retry_after() {
        let failed = ServiceError::Lookup(LookupError::NoRoute {
            hops: 2,
            timeouts: 2,
        });
        let r = Problem::from(failed).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = Problem::from(ServiceError::Lookup(LookupError::NotMember)).into_response();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }
}
