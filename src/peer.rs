//! Running a peer: the composition root. Config -> transport (from the registry) -> ring
//! service -> files -> API; and the graceful shutdown (leave, then exit).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::files::handler::FilesHandler;
use crate::files::ops::Files;
use crate::files::store::StoreError;
use crate::metrics::{Metrics, MetricsError};
use crate::runtime::{Endpoint, Service};
use crate::transport::auth::{KeyError, RingAuth};
use crate::transport::layers::{Layered, serving_with};
use crate::transport::tls::PeerTls;
use crate::transport::{
    ClientOptions, Handlers, ServeOptions, TransportError, TransportFactory, registry,
};
use crate::wire::Address;

/// How long open requests may take to finish once a peer stops serving.
pub const SERVER_DRAIN: Duration = Duration::from_secs(3);

/// How long a leaving peer waits for its last events to be published.
const EVENTS_FLUSH: Duration = Duration::from_secs(2);

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
    PeerProtocol(#[from] crate::transport::ServeError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Address(#[from] crate::transport::AddressError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot open the store directory: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tokens(#[from] crate::api::auth::TokensError),
    #[error("`security.ring_secret_file`: {0}")]
    Secret(#[from] KeyError),
    #[error("events: {0}")]
    Events(#[from] crate::transport::nats::ConnectError),
    #[error("`security.tls`: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
    #[error("`security.tls`: {0}")]
    TlsConfig(String),
}

/// A started peer: its service and the addresses it actually listens on.
pub struct RunningPeer {
    pub service: Arc<Service>,
    pub files: Arc<Files>,
    /// What the peer protocol listens on (a socket address, or the in-memory name).
    pub peer_addr: String,
    pub api_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds the listeners and starts the peer with the transport `transport.kind` names (it
/// founds or joins a ring in the background).
pub async fn start(config: Config) -> Result<RunningPeer, ServeError> {
    let factory = registry::configured(&config);
    start_with(config, factory).await
}

/// [`start`] with a given transport (the in-process harness passes its own network).
pub async fn start_with(
    config: Config,
    factory: Arc<dyn TransportFactory>,
) -> Result<RunningPeer, ServeError> {
    let api_listen = config.api.listen;
    let api_listener = bind("API", api_listen).await?;
    let api_addr = api_listener.local_addr().unwrap_or(api_listen);
    let me = factory.parse_address(&config.node.advertise)?;

    let metrics = Metrics::new()?;
    let auth = match &config.security.ring_secret_file {
        Some(file) => Some(RingAuth::load(
            file,
            config.security.message_window,
            config.node_id(),
            metrics.clone(),
        )?),
        None => None,
    };
    let factory = match config.security.tls.files().map_err(ServeError::TlsConfig)? {
        None => factory,
        Some(files) => {
            let host = crate::config::split_host_port(&config.node.advertise)
                .map_or(config.node.advertise.as_str(), |(h, _)| h);
            let every = config.security.tls.reload_interval;
            let tls = PeerTls::load(files, host, every, Some(metrics.clone()))?;
            factory.with_tls(tls).ok_or_else(|| {
                ServeError::TlsConfig(format!(
                    "the {:?} transport does not speak TLS between peers",
                    factory.kind()
                ))
            })?
        }
    };
    let clients = factory.clients(ClientOptions::from_config(&config))?;
    let layered = Layered::new(clients, me.clone(), &config, metrics.clone());
    if let Some(auth) = &auth {
        layered.set_auth(Arc::clone(auth));
    }
    let max_body = config.files.max_file_size;
    let listen = config.peer_listen();
    let events = crate::events::publisher::start(
        &config,
        &crate::ring::Peer::new(
            config.node_id(),
            crate::ring::Address::new(&config.node.advertise),
        ),
        &metrics,
    )
    .await?;
    let service = Service::new(
        config.clone(),
        Arc::clone(&factory),
        layered.clone(),
        metrics.clone(),
        events,
    );
    let files = Files::open(Arc::clone(&service), layered.clone())?;
    let handlers = Handlers {
        ring: Arc::new(Endpoint(Arc::clone(&service))),
        blob: Arc::new(FilesHandler(Arc::clone(&files))),
    };
    layered.set_local(handlers.clone());
    let (stop, _) = tokio::sync::watch::channel(false);
    if let Some(auth) = &auth {
        let ring = Arc::downgrade(&service);
        auth.set_ring_source(move || ring.upgrade().and_then(|s| s.status().ring_id));
        Arc::clone(auth).watch(stop.subscribe());
    }
    let handlers = serving_with(handlers, service.me(), &config, metrics, auth);
    let options = ServeOptions {
        listen,
        advertise: Address::clone(&me),
        max_body,
        ready: service.ready(),
    };
    let serving = factory.serve(options, handlers, stop.subscribe()).await?;
    let peer_addr = serving.local.clone();
    let mut servers = vec![serving.task];
    let access = crate::api::Access::from_config(
        config.api.tokens_file.as_deref(),
        config.api.protect_metrics,
        Some(service.metrics().api_auth_failures.clone()),
    )?;
    access.watch(stop.subscribe());
    let app = crate::api::router(Arc::clone(&service), Arc::clone(&files), access);
    // A request head gets as long as a stalled body does.
    let head_timeout = config.transport.progress_timeout;
    let limits = {
        let m = service.metrics();
        crate::api::front::Limits {
            max_connections: config.api.max_connections,
            idle_timeout: config.api.idle_timeout,
            open: m.api_connections.clone(),
            shed: m.api_connections_shed.clone(),
            timed_out: m.api_connections_timed_out.clone(),
        }
    };
    let mut stopped = stop.subscribe();
    servers.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        use crate::api::front::{Connection, FrontListener, track};
        let app = app
            .layer(axum::middleware::from_fn(track))
            .into_make_service_with_connect_info::<Connection>();
        let listener = FrontListener {
            listener: api_listener,
            head_timeout,
            limits,
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!(error = %e, "API server stopped with an error");
        }
    }));
    service.start();
    files.start();
    let me = service.me();
    info!(id = %me.id, address = %me.address, %peer_addr, %api_addr, transport = ?factory.kind(), "peer started");
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
        // The last events (`left`, the hand-off) get out before the process ends.
        self.service.events().flush(EVENTS_FLUSH).await;
        self.stop_now().await;
    }

    /// Stops at once without leaving, as a crash would look to the other peers. Requests in
    /// flight get [`SERVER_DRAIN`] to finish; connections still open then are closed, so no
    /// client (a body held open, a download read slowly) can hold the peer up.
    pub async fn stop_now(self) {
        self.service.stop();
        let _ = self.stop.send(true);
        let mut servers = self.servers;
        let finished = futures_util::future::join_all(servers.iter_mut());
        if tokio::time::timeout(SERVER_DRAIN, finished).await.is_err() {
            warn!(after = ?SERVER_DRAIN, "connections still open at shutdown; closing them");
            for s in &servers {
                s.abort();
            }
        }
    }
}

/// Runs a peer until `signal` completes, then leaves gracefully and returns.
///
/// The peer owns the process here, so it also gives the process's memory back when start-up is
/// over and while quiet (`memory.release_code_interval`, [`crate::memory`]); peers that share
/// a process ([`start`]: `chordnet dev`, the tests' harness) leave that to their host.
pub async fn serve(config: Config, signal: impl Future<Output = ()>) -> Result<(), ServeError> {
    let release_every = config.memory.release_code_every();
    let peer = start(config).await?;
    if let Some(every) = release_every {
        // Start-up ran its deepest calls on this thread (the main thread under `chordnet
        // serve`), which from here on only waits for `signal`.
        #[cfg(target_os = "linux")]
        match crate::memory::stack::trim_this_stack() {
            Ok(bytes) => debug!(bytes, "gave back the start-up stack below this frame"),
            Err(e) => debug!(error = %e, "cannot give back the start-up stack"),
        }
        tokio::spawn(crate::memory::keep_releasing(
            peer.service.ready(),
            every,
            peer.service.metrics().code_released_bytes.clone(),
            peer.stop.subscribe(),
        ));
    }
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
