//! Load shedding for transfers: at most `api.max_transfers` uploads and downloads at once on
//! this peer's API (each holds up to a window of blocks in memory). One more is answered `503`
//! with `Retry-After` at once instead of waiting in an unbounded queue; metadata requests
//! (HEAD, DELETE, locations) are not counted.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::Problem;

/// The transfer slots of one peer's API.
#[derive(Clone)]
pub struct Transfers {
    slots: Arc<Semaphore>,
    max: usize,
    in_progress: prometheus::IntGauge,
    shed: prometheus::IntCounter,
}

impl Transfers {
    pub fn new(max: usize, metrics: &crate::metrics::Metrics) -> Transfers {
        Transfers {
            slots: Arc::new(Semaphore::new(max)),
            max,
            in_progress: metrics.api_transfers.clone(),
            shed: metrics.api_transfers_shed.clone(),
        }
    }
}

/// Middleware of the file route: a GET or PUT takes a slot for as long as its request and its
/// response body last, or is answered 503.
pub async fn limit(State(t): State<Transfers>, request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::GET | Method::PUT) {
        return next.run(request).await;
    }
    let Ok(permit) = Arc::clone(&t.slots).try_acquire_owned() else {
        t.shed.inc();
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this peer is moving as many files as it takes at once (api.max_transfers = {}); \
                 retry shortly",
                t.max
            ),
        )
        .into_response();
    };
    let slot = Slot {
        _permit: permit,
        gauge: t.in_progress.clone(),
    };
    slot.gauge.inc();
    let response = next.run(request).await;
    // The slot goes when the response body is done (or dropped): downloads stream after the
    // handler returned. The body keeps its size (a problem answer stays one sized write).
    response.map(|inner| Body::new(Held { inner, _slot: slot }))
}

/// A response body that holds a transfer slot until hyper drops it.
struct Held {
    inner: Body,
    _slot: Slot,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
