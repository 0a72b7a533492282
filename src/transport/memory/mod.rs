//! The in-memory transport: peers in one process reach each other's handlers directly through a
//! shared [`MemoryNetwork`] (no sockets, no serialization). Bodies stream from caller to handler
//! with the caller's own back-pressure. Used by the in-process test harness and by the
//! conformance suite as the reference every other transport must match.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use futures_util::StreamExt;

use super::auth::{self, received};
use super::{
    AddressError, BlobAnswer, BlobClient, BlobQuery, Body, BoxFuture, ClientOptions, Clients,
    Handlers, Object, PutReply, RingClient, ServeError, ServeOptions, Serving, TraceCarrier,
    TransportError, TransportFactory, TransportKind,
};
use crate::id::Id;
use crate::wire::Address;
use crate::wire::files::FileMeta;
use crate::wire::ring::{RequestEnvelope, ResponseEnvelope};

#[derive(Default)]
struct State {
    serving: HashMap<Address, (Handlers, u64)>,
    /// Addresses that were ever served and not forgotten: they "resolve".
    known: HashSet<Address>,
    /// Addresses whose data plane is cut (the ring still reaches them).
    no_data: HashSet<Address>,
    /// Addresses whose data plane never answers (the ring still reaches them).
    stalled: HashSet<Address>,
}

/// Peers of one process, by address.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<State>>,
}

impl MemoryNetwork {
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    /// The network `transport.kind = "memory"` uses when nothing else is given.
    pub fn global() -> MemoryNetwork {
        static GLOBAL: OnceLock<MemoryNetwork> = OnceLock::new();
        GLOBAL.get_or_init(MemoryNetwork::new).clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `address` off the network at once, as a crash would (it still resolves).
    pub fn disconnect(&self, address: &Address) {
        self.lock().serving.remove(address);
    }

    /// Forgets `address` entirely: it no longer resolves (a pod scaled away).
    pub fn forget(&self, address: &Address) {
        let mut s = self.lock();
        s.serving.remove(address);
        s.known.remove(address);
    }

    /// Cuts (or restores) the data plane to `address`: ring calls still arrive, transfers and
    /// queries fail as unreachable (a peer whose disk hangs, a half-broken network).
    pub fn cut_data_plane(&self, address: &Address, cut: bool) {
        let mut s = self.lock();
        if cut {
            s.no_data.insert(address.clone());
        } else {
            s.no_data.remove(address);
        }
    }

    /// Makes the data plane of `address` hang (or answer again): transfers and queries to it
    /// wait for ever, as to a peer whose disk stopped; ring calls still arrive.
    pub fn stall_data_plane(&self, address: &Address, stall: bool) {
        let mut s = self.lock();
        if stall {
            s.stalled.insert(address.clone());
        } else {
            s.stalled.remove(address);
        }
    }

    async fn data_handlers(&self, to: &Address) -> Result<(Handlers, u64), TransportError> {
        let (cut, stalled) = {
            let s = self.lock();
            (s.no_data.contains(to), s.stalled.contains(to))
        };
        if cut {
            return Err(TransportError::Unreachable(format!("{to}: data plane cut")));
        }
        if stalled {
            std::future::pending::<()>().await;
        }
        self.handlers(to)
    }

    fn handlers(&self, to: &Address) -> Result<(Handlers, u64), TransportError> {
        self.lock()
            .serving
            .get(to)
            .cloned()
            .ok_or_else(|| TransportError::Unreachable(format!("{to}: no peer listens there")))
    }
}

/// The factory of the in-memory transport over one [`MemoryNetwork`].
#[derive(Clone, Default)]
pub struct MemoryTransport {
    network: MemoryNetwork,
}

impl MemoryTransport {
    pub fn new(network: MemoryNetwork) -> MemoryTransport {
        MemoryTransport { network }
    }

    pub fn network(&self) -> &MemoryNetwork {
        &self.network
    }
}

impl TransportFactory for MemoryTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Memory
    }

    fn parse_address(&self, text: &str) -> Result<Address, AddressError> {
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            return Err(AddressError {
                kind: "memory",
                address: text.to_owned(),
                reason: "must be a non-empty name without spaces".into(),
            });
        }
        Ok(Address::new(text))
    }

    fn resolves<'a>(&'a self, address: &'a Address) -> BoxFuture<'a, bool> {
        let known = self.network.lock().known.contains(address);
        Box::pin(std::future::ready(known))
    }

    fn clients(&self, _options: ClientOptions) -> Result<Clients, TransportError> {
        Ok(Clients::both(Arc::new(MemoryClient {
            network: self.network.clone(),
        })))
    }

    fn serve(
        &self,
        options: ServeOptions,
        handlers: Handlers,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<Serving, ServeError>> {
        Box::pin(async move {
            let address = options.advertise.clone();
            {
                let mut s = self.network.lock();
                if s.serving.contains_key(&address) {
                    return Err(ServeError {
                        what: address.to_string(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::AddrInUse,
                            "another in-memory peer serves this address",
                        ),
                    });
                }
                s.serving
                    .insert(address.clone(), (handlers, options.max_body));
                s.known.insert(address.clone());
            }
            let network = self.network.clone();
            let served = address.clone();
            let task = tokio::spawn(async move {
                let _ = shutdown.wait_for(|s| *s).await;
                network.disconnect(&served);
            });
            Ok(Serving {
                local: address.to_string(),
                task,
            })
        })
    }
}

struct MemoryClient {
    network: MemoryNetwork,
}

impl RingClient for MemoryClient {
    fn call<'a>(
        &'a self,
        to: &'a Address,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<ResponseEnvelope, TransportError>> {
        Box::pin(async move {
            let (handlers, _) = self.network.handlers(to)?;
            Ok(handlers.ring.handle(request, trace).await)
        })
    }
}

impl BlobClient for MemoryClient {
    fn put<'a>(
        &'a self,
        to: &'a Address,
        meta: FileMeta,
        body: Option<Body>,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<PutReply, TransportError>> {
        Box::pin(async move {
            let (handlers, max_body) = self.network.data_handlers(to).await?;
            if let Some(b) = &body
                && b.len() > max_body
            {
                return Err(TransportError::Protocol(format!(
                    "{to} accepts bodies of at most {max_body} bytes"
                )));
            }
            let Some(mut body) = body else {
                return received(trace, handlers.blob.put(meta, None))
                    .await
                    .map_err(TransportError::Refused);
            };
            // The handler runs on its own task and reads the body through a small channel, as
            // a remote server would read a socket: a caller that goes away ends the stream
            // early (the handler sees the cut), and a slow handler slows the caller.
            let (tx, mut rx) = tokio::sync::mpsc::channel(2);
            let content = Body::new(
                body.len(),
                futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed(),
            );
            let served = tokio::spawn(auth::received(trace, async move {
                handlers.blob.put(meta, Some(content)).await
            }));
            while let Some(chunk) = body.next().await {
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
            drop(tx);
            match served.await {
                Ok(answer) => answer.map_err(TransportError::Refused),
                Err(e) => Err(TransportError::Protocol(format!(
                    "{to}: handler failed: {e}"
                ))),
            }
        })
    }

    fn get<'a>(
        &'a self,
        to: &'a Address,
        id: Id,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Object>, TransportError>> {
        Box::pin(async move {
            let (handlers, _) = self.network.data_handlers(to).await?;
            received(trace, handlers.blob.get(id))
                .await
                .map_err(TransportError::Refused)
        })
    }

    fn get_shared<'a>(
        &'a self,
        to: &'a Address,
        name: &'a str,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Body>, TransportError>> {
        Box::pin(async move {
            let (handlers, _) = self.network.data_handlers(to).await?;
            received(trace, handlers.blob.get_shared(name))
                .await
                .map_err(TransportError::Refused)
        })
    }

    fn query<'a>(
        &'a self,
        to: &'a Address,
        query: BlobQuery,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<BlobAnswer, TransportError>> {
        Box::pin(async move {
            let (handlers, _) = self.network.data_handlers(to).await?;
            received(trace, handlers.blob.query(query))
                .await
                .map_err(TransportError::Refused)
        })
    }
}
