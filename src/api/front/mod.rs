//! The API port's HTTP/1 front. hyper answers a request head it cannot take (a bad
//! `Content-Length`, a URI or a head too long, a malformed line) itself, with an empty body;
//! here every request head is parsed first, with the parser hyper uses (httparse) and hyper's
//! rules for message framing, so such a request gets an `application/problem+json` answer
//! like every other error. The front follows the request stream's framing (heads, bodies of a
//! known length, chunked bodies) so it knows where each head starts; bodies pass through
//! untouched. A refused head is never handed to hyper: hyper sees the end of the stream after
//! the requests before it, answers those, and closes; the front then writes the problem and
//! closes the connection. HTTP/2 (prior knowledge) connections pass through as they are.

mod gate;
pub(crate) mod head;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub use gate::{Connection, Gate, track};
use head::{check_head, chunk_size, problem_response};

/// The longest request target accepted (hyper's own limit is about 64 KiB).
pub const MAX_URI: usize = 16 * 1024;
/// The largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in one head (as hyper's default).
pub const MAX_HEADERS: usize = 100;
/// The longest line of chunked framing (a size with extensions, a trailer field).
const MAX_CHUNK_LINE: usize = 4 * 1024;
const PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Accepts connections and puts a [`Front`] before each; a request head must arrive whole
/// within `head_timeout` of its first byte (a slow client cannot pin a connection with a head
/// that never ends), a connection with no request in progress is closed after `idle_timeout`,
/// and past `limits.max_connections` open connections a new one is answered `503` and closed
/// (load shedding: the connections already open, and the probes on them, keep working).
pub struct FrontListener {
    pub listener: TcpListener,
    pub head_timeout: Duration,
    pub limits: Limits,
}

/// The API port's connection limits and their metrics.
#[derive(Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub open: prometheus::IntGauge,
    pub shed: prometheus::IntCounter,
    pub timed_out: prometheus::IntCounter,
}

/// The answer to a connection past `api.max_connections`.
fn shed_response() -> Vec<u8> {
    let mut r = problem_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many connections to this peer's API; retry shortly",
    );
    // After the status line: tell the client when to come back.
    if let Some(end) = r.windows(2).position(|w| w == b"\r\n") {
        r.splice(end + 2..end + 2, b"retry-after: 1\r\n".iter().copied());
    }
    r
}

impl axum::serve::Listener for FrontListener {
    type Io = Front<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((mut stream, addr)) => {
                    if self.limits.open.get() >= self.limits.max_connections as i64 {
                        self.limits.shed.inc();
                        tokio::spawn(async move {
                            use tokio::io::AsyncWriteExt;
                            let answer = async {
                                let _ = stream.write_all(&shed_response()).await;
                                let _ = stream.shutdown().await;
                            };
                            let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
                        });
                        continue;
                    }
                    let mut front = Front::new(stream, self.head_timeout);
                    front.idle_timeout = Some(self.limits.idle_timeout);
                    front.open = Some(Open::new(&self.limits));
                    return (front, addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept an API connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Where the client's byte stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Collecting a request head.
    Head,
    /// Inside a body of a known length: this many bytes (more than 0) to go.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not followed any more (HTTP/2, or chunked framing hyper will refuse itself): bytes pass.
    Through,
    /// A head was refused: hyper gets no more bytes.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// Inside chunk data: this many bytes to go, then CRLF.
    Data(u64),
    /// The CRLF after chunk data: this many bytes of it to go.
    DataEnd(u8),
    /// Reading trailer lines after the last chunk, until an empty one.
    Trailers,
}

/// A connection with its request heads checked before hyper reads them.
pub struct Front<S> {
    inner: S,
    gate: Arc<Gate>,
    framing: Framing,
    /// Bytes read but not classified yet (a partial head or chunk line).
    pending: Vec<u8>,
    /// Bytes checked and not yet handed to hyper.
    checked: Vec<u8>,
    handed: usize,
    /// The problem response to write once hyper is done, and how much of it went out.
    refusal: Option<(Vec<u8>, usize)>,
    eof: bool,
    head_timeout: Duration,
    /// Set while a head is partly there.
    head_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// How long the connection may wait for a request with none in progress (none: for ever).
    idle_timeout: Option<Duration>,
    /// Set while waiting for a head with no byte of it there.
    idle_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Counts the connection as open while it lives.
    open: Option<Open>,
}

/// One open connection in [`Limits::open`], until dropped.
struct Open {
    open: prometheus::IntGauge,
    timed_out: prometheus::IntCounter,
}

impl Open {
    fn new(limits: &Limits) -> Open {
        limits.open.inc();
        Open {
            open: limits.open.clone(),
            timed_out: limits.timed_out.clone(),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl<S> Front<S> {
    /// This connection's gate (requests handed to hyper and not answered yet).
    fn gate(&self) -> Arc<Gate> {
        Arc::clone(&self.gate)
    }

    pub fn new(inner: S, head_timeout: Duration) -> Front<S> {
        Front {
            head_timeout,
            head_deadline: None,
            idle_timeout: None,
            idle_deadline: None,
            open: None,
            inner,
            gate: Arc::default(),
            framing: Framing::Head,
            pending: Vec::new(),
            checked: Vec::new(),
            handed: 0,
            refusal: None,
            eof: false,
        }
    }

    /// Follows the framing over the bytes in `pending`, moving what is checked to `checked`.
    fn advance(&mut self) {
        loop {
            let progressed = match self.framing {
                Framing::Head => self.head(),
                Framing::Body(left) => {
                    let n = (left.min(self.pending.len() as u64)) as usize;
                    self.pass(n);
                    self.framing = if left == n as u64 {
                        Framing::Head
                    } else {
                        Framing::Body(left - n as u64)
                    };
                    n > 0
                }
                Framing::Chunked(c) => self.chunked(c),
                Framing::Through => {
                    let n = self.pending.len();
                    self.pass(n);
                    false
                }
                Framing::Refused => {
                    self.pending.clear();
                    false
                }
            };
            if !progressed {
                return;
            }
        }
    }

    /// Whether the connection sat idle past its idle time-out: waiting for a request head with
    /// no byte of it there and no request in progress. Arms the timer (and registers `cx`
    /// with it) when waiting starts; a request still being answered when it fires re-arms it.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(limit) = self.idle_timeout else {
            return false;
        };
        if self.framing != Framing::Head || !self.pending.is_empty() {
            self.idle_deadline = None;
            return false;
        }
        loop {
            let deadline = self
                .idle_deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
            if deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            if self.gate.is_idle() {
                return true;
            }
            // A response still going out (a long download): not idle; look again later.
            self.idle_deadline = None;
        }
    }

    fn pass(&mut self, n: usize) {
        self.checked.extend(self.pending.drain(..n));
    }

    fn refuse(&mut self, status: StatusCode, detail: String) {
        tracing::debug!(%status, %detail, "refused a request head");
        self.framing = Framing::Refused;
        self.pending.clear();
        self.refusal = Some((problem_response(status, &detail), 0));
    }

    /// A request head, when complete: checked and passed on, or refused.
    fn head(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        if self.pending.starts_with(PREFACE) || PREFACE.starts_with(&self.pending) {
            if self.pending.len() < PREFACE.len() {
                return false;
            }
            self.framing = Framing::Through;
            return true;
        }
        match check_head(&self.pending) {
            Ok(None) => false,
            Ok(Some((len, next))) => {
                self.gate.enter();
                self.pass(len);
                self.framing = next;
                true
            }
            Err((status, detail)) => {
                self.refuse(status, detail);
                false
            }
        }
    }

    fn chunked(&mut self, c: Chunk) -> bool {
        match c {
            Chunk::Size | Chunk::Trailers => {
                let Some(end) = self.pending.iter().position(|&b| b == b'\n') else {
                    if self.pending.len() > MAX_CHUNK_LINE {
                        // hyper refuses this itself, as a failed body: stop following.
                        self.framing = Framing::Through;
                        return true;
                    }
                    return false;
                };
                let line = &self.pending[..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                self.framing = if c == Chunk::Trailers {
                    if line.is_empty() {
                        Framing::Head
                    } else {
                        Framing::Chunked(Chunk::Trailers)
                    }
                } else {
                    match chunk_size(line) {
                        Some(0) => Framing::Chunked(Chunk::Trailers),
                        Some(n) => Framing::Chunked(Chunk::Data(n)),
                        None => Framing::Through,
                    }
                };
                self.pass(end + 1);
                true
            }
            Chunk::Data(left) => {
                let n = (left.min(self.pending.len() as u64)) as usize;
                self.pass(n);
                self.framing = Framing::Chunked(if left == n as u64 {
                    Chunk::DataEnd(2)
                } else {
                    Chunk::Data(left - n as u64)
                });
                n > 0
            }
            Chunk::DataEnd(left) => {
                let n = (left as usize).min(self.pending.len());
                self.pass(n);
                self.framing = Framing::Chunked(if n == left as usize {
                    Chunk::Size
                } else {
                    Chunk::DataEnd(left - n as u8)
                });
                n > 0
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Front<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.handed < this.checked.len() {
                let n = (this.checked.len() - this.handed).min(buf.remaining());
                buf.put_slice(&this.checked[this.handed..this.handed + n]);
                this.handed += n;
                if this.handed == this.checked.len() {
                    this.checked.clear();
                    this.handed = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.framing == Framing::Refused {
                // The end of the stream for hyper once it answered the requests before the
                // refused one (an end of stream mid-answer would make it drop the answer);
                // it then closes, and the refusal goes out.
                return if this.gate.idle(cx) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(result) => result?,
                Poll::Pending => {
                    if this.idle_expired(cx) {
                        // hyper sees the end of the stream and closes the connection quietly.
                        tracing::debug!("closing an idle API connection");
                        if let Some(o) = &this.open {
                            o.timed_out.inc();
                        }
                        this.eof = true;
                        return Poll::Ready(Ok(()));
                    }
                    let late = this
                        .head_deadline
                        .as_mut()
                        .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                    if !late {
                        return Poll::Pending;
                    }
                    if let Some(o) = &this.open {
                        o.timed_out.inc();
                    }
                    let detail = format!(
                        "the request head did not arrive whole within {:?}",
                        this.head_timeout
                    );
                    this.head_deadline = None;
                    this.refuse(StatusCode::REQUEST_TIMEOUT, detail);
                    continue;
                }
            }
            if read.filled().is_empty() {
                // The client closed: whatever is pending goes to hyper as it is.
                this.eof = true;
                let rest = std::mem::take(&mut this.pending);
                this.checked.extend(rest);
                continue;
            }
            this.pending.extend_from_slice(read.filled());
            this.idle_deadline = None;
            this.advance();
            if this.framing != Framing::Head || this.pending.is_empty() {
                this.head_deadline = None;
            } else if this.head_deadline.is_none() {
                this.head_deadline = Some(Box::pin(tokio::time::sleep(this.head_timeout)));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Front<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// hyper is done with the connection: the refusal (if any) goes out first.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some((response, written)) = &mut this.refusal {
            while *written < response.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &response[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
