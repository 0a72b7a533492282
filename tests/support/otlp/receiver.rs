//! The receiver handles ([`Receiver`], [`BlackHole`]), what they share with their connection
//! tasks, and the accept loop.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::HTTP_TRACES_PATH;
use super::decode::{Exports, Protocol, Span, flatten};
use super::server::serve_otlp;

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    exports: Exports,
}

#[derive(Default)]
pub(super) struct Shared {
    received: Mutex<Received>,
    connections: AtomicUsize,
}

impl Shared {
    fn received(&self) -> MutexGuard<'_, Received> {
        // A panicking test thread must not hide what was received from the others.
        self.received
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub(super) fn record(&self, request: ExportTraceServiceRequest, protocol: Protocol) {
        let spans = flatten(request, protocol);
        let mut received = self.received();
        match protocol {
            Protocol::Http => received.exports.http += 1,
            Protocol::Grpc => received.exports.grpc += 1,
        }
        received.spans.extend(spans);
    }
}

/// An OTLP trace receiver on 127.0.0.1 speaking OTLP/HTTP protobuf and OTLP/gRPC on one port.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Binds 127.0.0.1:0 and serves on the caller's tokio runtime.
    pub async fn start() -> Receiver {
        Receiver::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind the OTLP test receiver on 127.0.0.1:0")
    }

    /// Binds `addr` (e.g. a fixed port a peer was configured with) and serves.
    pub async fn start_on(addr: SocketAddr) -> io::Result<Receiver> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), |tcp, shared| {
            serve_otlp(tcp, shared)
        }));
        Ok(Receiver { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`: the gRPC endpoint, and the HTTP base (append
    /// [`HTTP_TRACES_PATH`] when configuring an exporter's endpoint programmatically).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1/traces`.
    pub fn http_traces_endpoint(&self) -> String {
        format!("{}{HTTP_TRACES_PATH}", self.endpoint())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.shared.received().spans.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Export requests decoded so far, by protocol.
    pub fn exports(&self) -> Exports {
        self.shared.received().exports
    }

    /// Forgets the spans and export counts received so far (not the connection count).
    pub fn clear(&self) {
        *self.shared.received() = Received::default();
    }

    /// Polls every 20 ms until `done(&spans)` holds or `timeout` passes. `Ok` carries the
    /// spans that satisfied it, `Err` everything received by the deadline.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Span]) -> bool,
    ) -> Result<Vec<Span>, Vec<Span>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(spans);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `timeout` for at least `count` spans; panics with what arrived otherwise.
    pub async fn wait_for_spans(&self, count: usize, timeout: Duration) -> Vec<Span> {
        match self.wait_for(timeout, |spans| spans.len() >= count).await {
            Ok(spans) => spans,
            Err(spans) => panic!(
                "expected at least {count} spans within {timeout:?}, got {}: {:#?}",
                spans.len(),
                spans
            ),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts TCP connections on 127.0.0.1 and never answers: reads and discards whatever
/// arrives and keeps every connection open — an OTLP endpoint that hangs.
pub struct BlackHole {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl BlackHole {
    pub async fn start() -> BlackHole {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind the OTLP black hole on 127.0.0.1:0");
        let addr = listener.local_addr().expect("black hole local address");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), |tcp, _| {
            swallow(tcp)
        }));
        BlackHole { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections forever, each served by its own task. The tasks live in a `JoinSet`
/// owned by this future, so aborting the accept task aborts every connection too.
async fn accept_loop<F, Fut>(listener: TcpListener, shared: Arc<Shared>, serve: F)
where
    F: Fn(TcpStream, Arc<Shared>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_nodelay(true);
                connections.spawn(serve(tcp, Arc::clone(&shared)));
            }
            // Out of descriptors or an aborted handshake: nothing to do but try again.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        while connections.try_join_next().is_some() {}
    }
}

async fn swallow(mut tcp: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = tcp.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    // Even once the client stopped sending, never answer and never close.
    let _keep_open = tcp;
    std::future::pending::<()>().await;
}
