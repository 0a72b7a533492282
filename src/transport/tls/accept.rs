//! The server side: a listener whose connections are TLS streams that passed the handshake
//! (a client certificate of the ring's CA), each with the identity it presented. Handshakes
//! run on their own tasks, at most [`MAX_HANDSHAKES`] at once and each within
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds no accept loop and no slot for long.
//! Serves axum (as an [`axum::serve::Listener`]) and tonic (as a stream of connections).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::PeerTls;

/// Handshakes in progress at most; connections beyond are closed at once.
pub const MAX_HANDSHAKES: usize = 256;
/// How long a client gets to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is at the other end of a connection: its address and the certificate it presented.
#[derive(Clone, Debug)]
pub struct TlsPeer {
    pub remote: SocketAddr,
    pub cert: Option<Arc<CertificateDer<'static>>>,
}

/// A connection that completed the handshake.
pub struct PeerConn {
    stream: TlsStream<TcpStream>,
    peer: TlsPeer,
}

impl PeerConn {
    pub fn peer(&self) -> &TlsPeer {
        &self.peer
    }
}

/// Connections that completed the handshake, in the order they did.
pub struct TlsListener {
    ready: mpsc::Receiver<PeerConn>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` (on a task of its own, which ends when this is dropped).
    pub fn new(listener: TcpListener, tls: Arc<PeerTls>) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, tls, tx));
        Ok(TlsListener { ready, local })
    }

    /// The connections as a stream (for tonic's `serve_with_incoming`).
    pub fn into_stream(self) -> impl Stream<Item = io::Result<PeerConn>> + Send + 'static {
        futures_util::stream::unfold(self.ready, |mut rx| async move {
            rx.recv().await.map(|c| (Ok(c), rx))
        })
    }
}

async fn accept_loop(listener: TcpListener, tls: Arc<PeerTls>, tx: mpsc::Sender<PeerConn>) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (tcp, remote) = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tls.handshake_failed();
            continue; // dropped: too many handshakes at once
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.server());
        let tls = Arc::clone(&tls);
        let tx = tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::new(c.clone().into_owned()));
                    let peer = TlsPeer { remote, cert };
                    let _ = tx.send(PeerConn { stream, peer }).await;
                }
                Ok(Err(e)) => {
                    tls.handshake_failed();
                    debug!(%remote, error = %e, "TLS handshake refused");
                }
                Err(_) => {
                    tls.handshake_failed();
                    debug!(%remote, "TLS handshake timed out");
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = PeerConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (PeerConn, SocketAddr) {
        match self.ready.recv().await {
            Some(c) => {
                let remote = c.peer.remote;
                (c, remote)
            }
            // The accept loop ended (it does only once this listener is gone): nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for TlsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> TlsPeer {
        stream.io().peer.clone()
    }
}

impl tonic::transport::server::Connected for PeerConn {
    type ConnectInfo = TlsPeer;

    fn connect_info(&self) -> TlsPeer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
