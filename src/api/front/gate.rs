//! Which requests of a connection hyper is still answering: the front counts a head when it
//! hands it to hyper, the [`track`] middleware uncounts it when the response body ends, and a
//! refused head waits for 0 before hyper is told the stream ended.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;

use super::FrontListener;

/// How many requests of one connection hyper is still answering: counted when the front hands
/// a head to hyper, uncounted when the response body ends; and who waits for 0.
#[derive(Default)]
pub struct Gate {
    in_flight: AtomicUsize,
    waiter: Mutex<Option<Waker>>,
}

impl Gate {
    pub(super) fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn leave(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(w) = self.waiter.lock().unwrap_or_else(|e| e.into_inner()).take()
        {
            w.wake();
        }
    }

    /// Whether no request is in flight now.
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Whether no request is in flight; otherwise `cx` is woken when none is.
    pub(super) fn idle(&self, cx: &Context<'_>) -> bool {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            return true;
        }
        *self.waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// The connection's [`Gate`], as connect info of each of its requests.
#[derive(Clone)]
pub struct Connection(pub Arc<Gate>);

impl axum::extract::connect_info::Connected<IncomingStream<'_, FrontListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, FrontListener>) -> Connection {
        Connection(stream.io().gate())
    }
}

/// Middleware: an HTTP/1 request (its head counted by the front) leaves the connection's gate
/// when its response body ends (a refused head waits for that before hyper is told the stream
/// ended). HTTP/2 streams do not pass the front's head check and are not counted.
pub async fn track(request: Request, next: Next) -> Response {
    let gate = request
        .extensions()
        .get::<ConnectInfo<Connection>>()
        .map(|c| Arc::clone(&c.0.0));
    let http1 = matches!(
        request.version(),
        axum::http::Version::HTTP_10 | axum::http::Version::HTTP_11
    );
    let (Some(gate), true) = (gate, http1) else {
        return next.run(request).await;
    };
    let guard = Leave(gate);
    let response = next.run(request).await;
    response.map(|body| {
        Body::new(Tracked {
            inner: body,
            _guard: guard,
        })
    })
}

struct Leave(Arc<Gate>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// A response body that leaves the gate when hyper drops it (finished or abandoned).
struct Tracked {
    inner: Body,
    _guard: Leave,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
