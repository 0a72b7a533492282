//! The data plane's flow control over NATS: one call is a [`Session`] between two inboxes,
//! and each direction is a stream of numbered messages (a JSON head, then the content), each
//! below the broker's `max_payload`.
//!
//! - The caller subscribes to its inbox and sends message 0 to `<peer>.blob.<op>` with its
//!   inbox as reply subject. The broker answers *no responders* at once when no peer serves
//!   that subject. The serving side subscribes to an inbox of its own and acknowledges
//!   message 0 from it: the caller learns where the rest goes.
//! - A sender has at most [`WINDOW`] messages unacknowledged; the receiver acknowledges a
//!   message when its consumer takes it, so a slow consumer holds the sender back.
//! - A receiver takes the messages in order: a duplicate is dropped, a gap fails the transfer.
//!   No message for the progress time-out fails it too, on both sides.
//! - A side that goes away before the call completed tells the other (an abort message), so
//!   neither waits for the time-out when the other is known to be gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::{Client, HeaderMap, Message, StatusCode, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::{mpsc, watch};

use super::headers::{self, ABORT, ACK, DATA, KIND, SEQ};
use crate::transport::{Body, BodyError};

/// Messages a sender may have unacknowledged.
pub const WINDOW: u64 = 8;
/// Bytes of a message left for headers (kind, number, trace context, status).
const HEADER_ROOM: usize = 4096;
/// The largest content in one message, however large the broker allows: the window's memory
/// stays a few MiB.
const MAX_CHUNK: usize = 1 << 20;

/// The content per message for a broker whose `max_payload` is `max_payload`.
pub fn chunk_size(max_payload: usize) -> usize {
    if max_payload > 2 * HEADER_ROOM {
        (max_payload - HEADER_ROOM).min(MAX_CHUNK)
    } else {
        (max_payload / 2).max(1)
    }
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("no responders on the subject")]
    NoResponders,
    #[error("the broker: {0}")]
    Broker(String),
    #[error("no message for {0:?}")]
    Stalled(Duration),
    #[error("the other side aborted the transfer")]
    Aborted,
    #[error("message {got} arrived where {expected} was due (a gap)")]
    Gap { expected: u64, got: u64 },
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    Body(#[from] BodyError),
}

impl FlowError {
    /// As a body error (failures inside a content stream).
    fn into_body_error(self) -> BodyError {
        match self {
            FlowError::Body(e) => e,
            FlowError::Stalled(d) => BodyError::Stalled(d),
            other => BodyError::Io(other.to_string()),
        }
    }
}

/// What the sending side has heard back.
#[derive(Clone, Debug, Default)]
struct Acked {
    /// The next message number the other side waits for.
    next: u64,
    /// The other side's inbox, once known.
    peer: Option<Subject>,
    /// The other side gave up, or broke the rules.
    aborted: bool,
}

/// Stops the inbox's task when the last handle goes, and tells the other side when the call
/// did not complete.
struct Guard {
    pump: tokio::task::JoinHandle<()>,
    nc: Client,
    acked: watch::Receiver<Acked>,
    armed: AtomicBool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.pump.abort();
        if !self.armed.load(Ordering::Relaxed) {
            return;
        }
        let Some(peer) = self.acked.borrow().peer.clone() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let nc = self.nc.clone();
            rt.spawn(async move {
                let mut h = HeaderMap::new();
                headers::set(&mut h, KIND, ABORT);
                let _ = nc.publish_with_headers(peer, h, Bytes::new()).await;
            });
        }
    }
}

/// Reads a session's incoming direction in order.
struct Reader {
    data: mpsc::Receiver<Message>,
    pending: Option<Message>,
    next: u64,
    nc: Client,
    /// This side's inbox: acknowledgements name it, so the other side learns where to send.
    inbox: Subject,
    acked: watch::Receiver<Acked>,
    idle: Duration,
    guard: Arc<Guard>,
}

impl Reader {
    /// The next message of the incoming direction, acknowledged. `wait` bounds the wait
    /// (`None`: the caller's deadline does).
    async fn next(&mut self, wait: Option<Duration>) -> Result<Message, FlowError> {
        loop {
            let m = match self.pending.take() {
                Some(m) => m,
                None => {
                    let got = match wait {
                        Some(w) => tokio::time::timeout(w, self.data.recv())
                            .await
                            .map_err(|_| FlowError::Stalled(w))?,
                        None => self.data.recv().await,
                    };
                    got.ok_or_else(|| FlowError::Protocol("the session ended".into()))?
                }
            };
            if let Some(status) = m.status {
                return Err(if status == StatusCode::NO_RESPONDERS {
                    FlowError::NoResponders
                } else {
                    FlowError::Broker(format!(
                        "status {status}: {}",
                        m.description.as_deref().unwrap_or("")
                    ))
                });
            }
            match headers::get(&m, KIND) {
                Some(DATA) => {}
                Some(ABORT) => return Err(FlowError::Aborted),
                _ => continue,
            }
            let seq = headers::number(&m, SEQ)
                .map_err(FlowError::Protocol)?
                .ok_or_else(|| FlowError::Protocol("a data message without its number".into()))?;
            if seq < self.next {
                continue; // a duplicate
            }
            if seq > self.next {
                return Err(FlowError::Gap {
                    expected: self.next,
                    got: seq,
                });
            }
            self.next += 1;
            let to = m.reply.clone().or_else(|| self.acked.borrow().peer.clone());
            if let Some(to) = to {
                let mut h = HeaderMap::new();
                headers::set(&mut h, KIND, ACK);
                headers::set(&mut h, SEQ, seq);
                let ack =
                    self.nc
                        .publish_with_reply_and_headers(to, self.inbox.clone(), h, Bytes::new());
                match tokio::time::timeout(self.idle, ack).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(FlowError::Broker(e.to_string())),
                    Err(_) => {
                        return Err(FlowError::Broker("could not acknowledge in time".into()));
                    }
                }
            }
            return Ok(m);
        }
    }

    /// The next `len` bytes as a body (the content after the head).
    fn body(self, len: u64) -> Body {
        if len == 0 {
            self.guard.armed.store(false, Ordering::Relaxed);
            return Body::empty();
        }
        let content = stream::unfold((self, len), move |(mut reader, left)| async move {
            if left == 0 {
                reader.guard.armed.store(false, Ordering::Relaxed);
                return None;
            }
            let idle = reader.idle;
            match reader.next(Some(idle)).await {
                Ok(m) => {
                    let n = m.payload.len() as u64;
                    if n == 0 || n > left {
                        let e = BodyError::Length {
                            expected: len,
                            got: len - left + n,
                        };
                        return Some((Err(e), (reader, 0)));
                    }
                    Some((Ok(m.payload), (reader, left - n)))
                }
                Err(e) => Some((Err(e.into_body_error()), (reader, 0))),
            }
        });
        Body::new(len, content.boxed())
    }
}

/// Where a direction's first message goes, and what it says besides its number.
pub struct First {
    pub subject: Subject,
    pub headers: HeaderMap,
}

/// One call, seen from either side.
pub struct Session {
    nc: Client,
    inbox: Subject,
    acked: watch::Receiver<Acked>,
    reader: Option<Reader>,
    guard: Arc<Guard>,
    idle: Duration,
    chunk: usize,
}

impl Session {
    /// Subscribes to a new inbox and starts its task. `peer`: the other side's inbox, when
    /// known (the serving side knows the caller's from the start).
    pub async fn open(
        nc: &Client,
        peer: Option<Subject>,
        idle: Duration,
        chunk: usize,
    ) -> Result<Session, FlowError> {
        let inbox = Subject::from(nc.new_inbox());
        let mut sub = match tokio::time::timeout(idle, nc.subscribe(inbox.clone())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(FlowError::Broker(e.to_string())),
            Err(_) => return Err(FlowError::Broker("could not subscribe in time".into())),
        };
        let (acks_tx, acked) = watch::channel(Acked {
            peer,
            ..Acked::default()
        });
        // A sender keeps to the window: a few more messages (aborts, statuses) at most.
        let (data_tx, data) = mpsc::channel(WINDOW as usize + 4);
        let pump = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if m.status.is_none() && headers::get(&m, KIND) == Some(ACK) {
                    let Ok(Some(seq)) = headers::number(&m, SEQ) else {
                        continue;
                    };
                    let reply = m.reply.clone();
                    acks_tx.send_modify(|a| {
                        a.next = a.next.max(seq + 1);
                        if a.peer.is_none() {
                            a.peer = reply;
                        }
                    });
                    continue;
                }
                let abort = headers::get(&m, KIND) == Some(ABORT);
                if let Some(reply) = &m.reply
                    && acks_tx.borrow().peer.is_none()
                {
                    let reply = reply.clone();
                    acks_tx.send_modify(|a| a.peer = Some(reply));
                }
                match data_tx.try_send(m) {
                    Ok(()) => {}
                    // Nobody reads that direction any more.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                    // More than the window: the other side breaks the rules.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        acks_tx.send_modify(|a| a.aborted = true);
                        return;
                    }
                }
                if abort {
                    acks_tx.send_modify(|a| a.aborted = true);
                }
            }
        });
        let guard = Arc::new(Guard {
            pump,
            nc: nc.clone(),
            acked: acked.clone(),
            armed: AtomicBool::new(true),
        });
        let reader = Reader {
            data,
            pending: None,
            next: 0,
            nc: nc.clone(),
            inbox: inbox.clone(),
            acked: acked.clone(),
            idle,
            guard: Arc::clone(&guard),
        };
        Ok(Session {
            nc: nc.clone(),
            inbox,
            acked,
            reader: Some(reader),
            guard,
            idle,
            chunk,
        })
    }

    /// Takes `first` (the caller's message 0, received on the serving subject) as the first
    /// message of the incoming direction, and acknowledges it from this session's inbox.
    pub async fn accept(&mut self, first: Message) -> Result<Message, FlowError> {
        let reader = self.reader_mut()?;
        reader.pending = Some(first);
        let m = reader.next(None).await?;
        Ok(m)
    }

    fn reader_mut(&mut self) -> Result<&mut Reader, FlowError> {
        self.reader
            .as_mut()
            .ok_or_else(|| FlowError::Protocol("the incoming direction was handed on".into()))
    }

    /// The first message of the incoming direction (an answer's status, or a request).
    /// `wait`: how long at most (`None`: the caller's deadline bounds it).
    pub async fn first(&mut self, wait: Option<Duration>) -> Result<Message, FlowError> {
        self.reader_mut()?.next(wait).await
    }

    /// Reads the head: `len` bytes, of which `first` (message 0) holds the start. More than
    /// `max` is refused before anything is read.
    pub async fn head(&mut self, first: &Message, len: u64, max: u64) -> Result<Bytes, FlowError> {
        if len > max {
            return Err(FlowError::Protocol(format!(
                "a head of {len} bytes (at most {max})"
            )));
        }
        let len = len as usize;
        if first.payload.len() >= len {
            if first.payload.len() > len {
                return Err(FlowError::Protocol(
                    "the head is longer than announced".into(),
                ));
            }
            return Ok(first.payload.clone());
        }
        let mut head = Vec::with_capacity(len);
        head.extend_from_slice(&first.payload);
        let idle = self.idle;
        while head.len() < len {
            let m = self.reader_mut()?.next(Some(idle)).await?;
            if m.payload.is_empty() || head.len() + m.payload.len() > len {
                return Err(FlowError::Protocol("the head does not add up".into()));
            }
            head.extend_from_slice(&m.payload);
        }
        Ok(Bytes::from(head))
    }

    /// The content after the head (`len` bytes) as a body; the session stays usable for the
    /// answer.
    pub fn body(&mut self, len: u64) -> Result<Body, FlowError> {
        let reader = self
            .reader
            .take()
            .ok_or_else(|| FlowError::Protocol("the content was already taken".into()))?;
        Ok(reader.body(len))
    }

    /// The call completed: going away no longer aborts anything.
    pub fn complete(&self) {
        self.guard.armed.store(false, Ordering::Relaxed);
    }

    /// Sends `head`, then `body`, as this direction's numbered messages (message 0 as `first`
    /// says). Returns `false` when the other side answered before all of it was sent (its
    /// answer is the next [`Session::first`]).
    pub async fn send(
        &mut self,
        first: First,
        head: Bytes,
        body: Option<Body>,
    ) -> Result<bool, FlowError> {
        let mut pieces = Pieces::new(head, body, self.chunk);
        let mut first = Some(first);
        let mut seq = 0u64;
        while let Some(piece) = pieces.next(seq == 0).await {
            let piece = piece?;
            let to = loop {
                if let Some(answer) = self.early_answer() {
                    if let Some(reader) = &mut self.reader {
                        reader.pending = Some(answer);
                    }
                    return Ok(false);
                }
                let acked = self.acked.borrow_and_update().clone();
                if acked.aborted {
                    return Err(FlowError::Aborted);
                }
                if let Some(f) = &first {
                    break f.subject.clone();
                }
                if let Some(peer) = acked.peer
                    && seq < acked.next + WINDOW
                {
                    break peer;
                }
                self.wait_for_acks().await?;
            };
            let mut h = first.take().map(|f| f.headers).unwrap_or_default();
            headers::set(&mut h, KIND, DATA);
            headers::set(&mut h, SEQ, seq);
            let sent = self
                .nc
                .publish_with_reply_and_headers(to, self.inbox.clone(), h, piece);
            match tokio::time::timeout(self.idle, sent).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(FlowError::Broker(e.to_string())),
                Err(_) => return Err(FlowError::Stalled(self.idle)),
            }
            seq += 1;
        }
        Ok(true)
    }

    /// A message of the other direction that arrived while sending (an early answer, no
    /// responders, an abort).
    fn early_answer(&mut self) -> Option<Message> {
        let reader = self.reader.as_mut()?;
        if let Some(m) = reader.pending.take() {
            return Some(m);
        }
        reader.data.try_recv().ok()
    }

    /// Waits for an acknowledgement (or an answer) for at most the progress time-out.
    async fn wait_for_acks(&mut self) -> Result<(), FlowError> {
        enum Woke {
            Acked(bool),
            Answer(Option<Message>),
            Idle,
        }
        let idle = self.idle;
        let Session { acked, reader, .. } = self;
        let woke = {
            let answer = async {
                match reader.as_mut() {
                    Some(r) => r.data.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = acked.changed() => Woke::Acked(changed.is_ok()),
                m = answer => Woke::Answer(m),
                () = tokio::time::sleep(idle) => Woke::Idle,
            }
        };
        match woke {
            Woke::Acked(true) => Ok(()),
            Woke::Answer(Some(m)) => {
                if let Some(r) = reader.as_mut() {
                    r.pending = Some(m);
                }
                Ok(())
            }
            Woke::Acked(false) | Woke::Answer(None) => {
                Err(FlowError::Protocol("the session ended".into()))
            }
            Woke::Idle => Err(FlowError::Stalled(idle)),
        }
    }
}

/// The pieces of a direction: the head cut to size, then the content cut to size.
struct Pieces {
    head: Bytes,
    body: Option<Body>,
    rest: Bytes,
    chunk: usize,
}

impl Pieces {
    fn new(head: Bytes, body: Option<Body>, chunk: usize) -> Pieces {
        Pieces {
            head,
            body,
            rest: Bytes::new(),
            chunk,
        }
    }

    /// The next piece. Message 0 is always part of the head (an empty one when the head is
    /// empty), so the receiver never finds content in it.
    async fn next(&mut self, first: bool) -> Option<Result<Bytes, FlowError>> {
        if first && self.head.is_empty() {
            return Some(Ok(Bytes::new()));
        }
        if !self.head.is_empty() {
            let n = self.head.len().min(self.chunk);
            return Some(Ok(self.head.split_to(n)));
        }
        loop {
            if !self.rest.is_empty() {
                let n = self.rest.len().min(self.chunk);
                return Some(Ok(self.rest.split_to(n)));
            }
            let body = self.body.as_mut()?;
            match body.next().await {
                Some(Ok(c)) => self.rest = c,
                Some(Err(e)) => return Some(Err(FlowError::Body(e))),
                None => {
                    self.body = None;
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_leave_room_for_headers_and_stay_bounded() {
        assert_eq!(chunk_size(1 << 20), (1 << 20) - HEADER_ROOM);
        assert_eq!(chunk_size(64 << 20), MAX_CHUNK);
        assert_eq!(chunk_size(32 << 10), (32 << 10) - HEADER_ROOM);
        assert_eq!(chunk_size(4096), 2048);
    }

    #[tokio::test]
    async fn pieces_cut_the_head_and_the_content() {
        let body = Body::from_bytes(Bytes::from(vec![1u8; 25]));
        let mut p = Pieces::new(Bytes::from(vec![0u8; 12]), Some(body), 10);
        let mut sizes = Vec::new();
        while let Some(piece) = p.next(sizes.is_empty()).await {
            sizes.push(piece.expect("piece").len());
        }
        assert_eq!(sizes, vec![10, 2, 10, 10, 5]);
        let mut empty = Pieces::new(Bytes::new(), None, 10);
        assert_eq!(empty.next(true).await, Some(Ok(Bytes::new())));
        assert_eq!(empty.next(false).await, None);
        let body = Body::from_bytes(Bytes::from_static(b"abc"));
        let mut headless = Pieces::new(Bytes::new(), Some(body), 10);
        assert_eq!(headless.next(true).await, Some(Ok(Bytes::new())));
        assert_eq!(
            headless.next(false).await,
            Some(Ok(Bytes::from_static(b"abc")))
        );
        assert_eq!(headless.next(false).await, None);
    }
}
