//! Bodies to and from gRPC streams. Outgoing content is cut into chunks of at most
//! [`MAX_CHUNK`] bytes (zero-copy slices); incoming messages are pulled one at a time as the
//! consumer reads, so HTTP/2 flow control holds the sender back (no buffer grows with the
//! file). Either way the [`Body`] checks the length: a stream that ends early is an error.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::mpsc;
use tonic::Streaming;

use super::MAX_CHUNK;
use crate::transport::{Body, BodyError};

/// `body`'s content in chunks of at most [`MAX_CHUNK`] bytes.
pub fn chunks(body: Body) -> BoxStream<'static, Result<Bytes, BodyError>> {
    stream::unfold(
        (body.into_stream(), Bytes::new()),
        |(mut inner, mut rest)| async move {
            loop {
                if !rest.is_empty() {
                    let piece = rest.split_to(rest.len().min(MAX_CHUNK));
                    return Some((Ok(piece), (inner, rest)));
                }
                match inner.next().await? {
                    Ok(chunk) => rest = chunk,
                    Err(e) => return Some((Err(e), (inner, Bytes::new()))),
                }
            }
        },
    )
    .boxed()
}

/// An outgoing client stream: `head`, then `body`'s content as messages made by `wrap`, through
/// a bounded channel (at most [`WINDOW`] messages wait; the HTTP/2 window holds the rest back).
/// The stream ends early — the receiver sees a short body, never a complete one — when the body
/// fails (the failure is kept in the [`Pump`] for the caller) or when the [`Pump`] is dropped
/// (the caller went away; the HTTP/2 stream may outlive the call's future).
pub fn outgoing<T: Send + 'static>(
    head: T,
    body: Option<Body>,
    wrap: fn(Bytes) -> T,
) -> (Parts<T>, Pump) {
    let (tx, rx) = mpsc::channel(WINDOW);
    let failure = Failure::default();
    // The channel is empty: the head always fits.
    let _ = tx.try_send(head);
    let task = body.map(|body| {
        let slot = failure.clone();
        tokio::spawn(async move {
            let mut content = chunks(body);
            while let Some(chunk) = content.next().await {
                match chunk {
                    Ok(c) => {
                        if tx.send(wrap(c)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        slot.set(e);
                        return;
                    }
                }
            }
        })
    });
    (Parts(rx), Pump { failure, task })
}

/// Messages waiting in an outgoing stream's channel, at most.
const WINDOW: usize = 2;

/// The task that feeds an outgoing stream; dropping it stops the stream.
pub struct Pump {
    failure: Failure,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Pump {
    /// Why the body failed, if it did.
    pub fn failure(&self) -> Option<BodyError> {
        self.failure.take()
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Where an outgoing body's failure is kept.
#[derive(Clone, Default)]
struct Failure(Arc<Mutex<Option<BodyError>>>);

impl Failure {
    fn set(&self, e: BodyError) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    fn take(&self) -> Option<BodyError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Messages received from a bounded channel (a named stream type: tonic's client-streaming
/// future is only provably `Send` with one).
pub struct Parts<T>(mpsc::Receiver<T>);

impl<T> futures_util::Stream for Parts<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// The rest of an incoming stream as content: `chunk` picks a message's content out, or says
/// why the message does not belong there.
pub fn incoming<T: Send + 'static>(
    len: u64,
    messages: Streaming<T>,
    chunk: fn(T) -> Result<Bytes, BodyError>,
) -> Body {
    let content = stream::unfold(messages, move |mut messages| async move {
        match messages.message().await {
            Ok(Some(m)) => Some((chunk(m), messages)),
            Ok(None) => None,
            Err(status) => Some((
                Err(BodyError::Io(format!(
                    "stream failed: {:?}: {}",
                    status.code(),
                    status.message()
                ))),
                messages,
            )),
        }
    });
    Body::new(len, content.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn big_chunks_are_cut_and_small_ones_kept() {
        let data = Bytes::from(vec![7u8; MAX_CHUNK * 2 + 5]);
        let parts: Vec<Result<Bytes, BodyError>> = vec![Ok(Bytes::from_static(b"abc")), Ok(data)];
        let body = Body::new(MAX_CHUNK as u64 * 2 + 8, stream::iter(parts).boxed());
        let sizes: Vec<usize> = chunks(body)
            .map(|c| c.expect("chunk").len())
            .collect()
            .await;
        assert_eq!(sizes, vec![3, MAX_CHUNK, MAX_CHUNK, 5]);
    }

    #[tokio::test]
    async fn an_outgoing_body_stops_on_failure_or_when_the_caller_goes_away() {
        let short = Body::new(10, stream::iter([Ok(Bytes::from_static(b"ab"))]).boxed());
        let (messages, pump) = outgoing(Bytes::from_static(b"head"), Some(short), |b| b);
        let sent: Vec<Bytes> = messages.collect().await;
        assert_eq!(
            sent,
            vec![Bytes::from_static(b"head"), Bytes::from_static(b"ab")]
        );
        assert!(matches!(pump.failure(), Some(BodyError::Length { .. })));

        let endless = Body::new(
            10,
            stream::iter([Ok(Bytes::from_static(b"ab"))])
                .chain(stream::pending())
                .boxed(),
        );
        let (mut messages, pump) = outgoing(Bytes::new(), Some(endless), |b| b);
        assert_eq!(messages.next().await, Some(Bytes::new()));
        assert_eq!(messages.next().await, Some(Bytes::from_static(b"ab")));
        drop(pump);
        assert_eq!(messages.next().await, None);

        let (messages, pump) = outgoing(Bytes::from_static(b"tombstone"), None, |b| b);
        assert_eq!(messages.collect::<Vec<_>>().await.len(), 1);
        assert!(pump.failure().is_none());
    }
}
