//! Running a peer: listeners, the service, and the graceful shutdown (leave, then exit).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Config;
use crate::files::ops::Files;
use crate::files::store::StoreError;
use crate::metrics::{Metrics, MetricsError};
use crate::service::{Endpoint, Service};
use crate::transport::TransportError;
use crate::transport::http::{self, HttpTransport};

/// Why a peer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot open the store directory: {0}")]
    Store(#[from] StoreError),
}

/// A started peer: its service and the addresses it actually listens on.
pub struct RunningPeer {
    pub service: Arc<Service<HttpTransport>>,
    pub files: Arc<Files<HttpTransport>>,
    pub peer_addr: SocketAddr,
    pub api_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds the listeners and starts the peer (it founds or joins a ring in the background).
pub async fn start(config: Config) -> Result<RunningPeer, ServeError> {
    let peer_listen = config.peer_listen();
    let api_listen = config.api.listen;
    let peer_listener = bind("peer protocol", peer_listen).await?;
    let api_listener = bind("API", api_listen).await?;
    let peer_addr = peer_listener.local_addr().unwrap_or(peer_listen);
    let api_addr = api_listener.local_addr().unwrap_or(api_listen);

    let transport = HttpTransport::new(config.ring.rpc_timeout)?;
    // Objects travel whole, with a little framing.
    let max_body = usize::try_from(config.files.max_file_size)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let service = Service::new(config, transport, Metrics::new()?);
    let files = Files::open(Arc::clone(&service))?;
    let (stop, _) = tokio::sync::watch::channel(false);

    let mut servers = Vec::new();
    for (listener, app) in [
        (
            peer_listener,
            http::router(Arc::new(Endpoint(Arc::clone(&service))))
                .merge(http::files_router(Arc::clone(&files), max_body)),
        ),
        (
            api_listener,
            crate::api::router(Arc::clone(&service), Arc::clone(&files)),
        ),
    ] {
        let mut stopped = stop.subscribe();
        servers.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                warn!(error = %e, "server stopped with an error");
            }
        }));
    }
    service.start();
    files.start();
    let me = service.me();
    info!(id = %me.id, address = %me.address, %peer_addr, %api_addr, "peer started");
    Ok(RunningPeer {
        service,
        files,
        peer_addr,
        api_addr,
        stop,
        servers,
    })
}

impl RunningPeer {
    /// Leaves the ring gracefully (bounded by `ring.leave_timeout`), then stops the servers.
    pub async fn shutdown(self) {
        match self.files.leave().await {
            Ok(()) => info!("left the ring; shutting down"),
            Err(e) => warn!(error = %e, "graceful leave did not finish; shutting down anyway"),
        }
        self.service.stop();
        let _ = self.stop.send(true);
        for s in self.servers {
            let _ = s.await;
        }
    }
}

/// Runs a peer until `signal` completes, then leaves gracefully and returns.
pub async fn serve(config: Config, signal: impl Future<Output = ()>) -> Result<(), ServeError> {
    let peer = start(config).await?;
    signal.await;
    info!("shutdown requested");
    peer.shutdown().await;
    Ok(())
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { what, addr, source })
}
