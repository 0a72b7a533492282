//! The NATS transport: every peer-to-peer message goes through a NATS broker, so peers that
//! cannot reach each other (other clusters, NAT, strict network policies) form one ring as
//! long as each reaches the broker. The peer port is never opened.
//!
//! - **Addresses** are subjects: `chordnet.<nats.ring_name>.peer.<node>`. A peer serves
//!   `<address>.rpc` (the ring) and `<address>.blob.<op>` (the data plane).
//! - **Control plane**: core request/reply with the layers' deadline as the request's time-out
//!   (never the client's 10 s default). The broker's *no responders* answer means no peer
//!   serves the subject: [`TransportError::Unreachable`] at once, no time-out wait.
//! - **Data plane**: [`flow`]: messages below the broker's `max_payload` (from its INFO), a
//!   bounded window of unacknowledged messages, in order, gaps and duplicates checked, a
//!   stalled transfer failed after the progress time-out.
//! - **Metadata**: [`headers`]: the protocol version and every field of the
//!   [`TraceCarrier`](super::TraceCarrier) as message headers.
//! - **Broker lost**: the client reconnects with back-off (subscriptions are restored); while
//!   disconnected [`TransportFactory::not_ready`] says so, and `/readyz` with it.

mod client;
mod connection;
pub mod flow;
pub mod headers;
mod server;

use std::sync::Arc;
use std::time::Duration;

pub use client::NatsClient;
pub use connection::{ConnectError, backoff, connect, connect_now};

use super::{
    AddressError, BoxFuture, ClientOptions, Clients, Handlers, ServeError, ServeOptions, Serving,
    TransportError, TransportFactory, TransportKind,
};
use crate::config::{Config, NatsConfig, subject};
use crate::wire::Address;

/// The largest ring envelope accepted (as the other transports).
const MAX_RPC: u64 = 1 << 20;
/// The largest data-plane head (a "which of these do you lack" list of a big hand-off).
const MAX_QUERY: u64 = 32 << 20;
/// The largest object metadata: a manifest of 65536 blocks is about 4.4 MB of JSON.
const MAX_META: u64 = 8 << 20;
/// Data-plane calls a peer serves at once; more are refused as unavailable.
const MAX_SERVING: usize = 4096;

/// The NATS transport's factory. Clones share one broker connection (made on first use).
#[derive(Clone)]
pub struct NatsTransport {
    settings: Arc<Settings>,
    connection: Arc<tokio::sync::OnceCell<async_nats::Client>>,
}

struct Settings {
    nats: NatsConfig,
    /// A transfer with no message for this long fails (both sides).
    progress_timeout: Duration,
}

impl NatsTransport {
    pub fn new(config: &Config) -> NatsTransport {
        NatsTransport {
            settings: Arc::new(Settings {
                nats: config.nats.clone(),
                progress_timeout: config.transport.progress_timeout,
            }),
            connection: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The broker connection (connects on first use; reconnects by itself after).
    pub async fn connection(&self) -> Result<async_nats::Client, TransportError> {
        self.connection
            .get_or_try_init(|| connect(&self.settings.nats, "peer"))
            .await
            .cloned()
            .map_err(|e| TransportError::Unreachable(e.to_string()))
    }

    /// The broker's `max_payload` (from its INFO), waiting at most the progress time-out for
    /// a connection that is being (re)made.
    pub async fn max_payload(&self, nc: &async_nats::Client) -> Result<usize, TransportError> {
        let deadline = tokio::time::Instant::now() + self.settings.progress_timeout;
        loop {
            let connected = nc.connection_state() == async_nats::connection::State::Connected;
            if connected
                && let Some(m) = nc
                    .try_server_info()
                    .map(|i| i.max_payload)
                    .filter(|m| *m > 0)
            {
                return Ok(m);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TransportError::Unreachable(format!(
                    "not connected to the NATS broker at {}",
                    self.settings.nats.url
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    fn ring_name(&self) -> &str {
        &self.settings.nats.ring_name
    }

    fn check(&self, to: &Address) -> Result<(), TransportError> {
        subject::check_peer_subject(self.ring_name(), to.as_str())
            .map_err(TransportError::Unreachable)
    }
}

impl TransportFactory for NatsTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Nats
    }

    fn parse_address(&self, text: &str) -> Result<Address, AddressError> {
        subject::check_peer_subject(self.ring_name(), text)
            .map(|()| Address::new(text))
            .map_err(|reason| AddressError {
                kind: "nats",
                address: text.to_owned(),
                reason,
            })
    }

    fn resolves<'a>(&'a self, address: &'a Address) -> BoxFuture<'a, bool> {
        // A subject always names a peer that may be there: only the broker knows, and it
        // answers "no responders" for one that is not.
        Box::pin(async move { self.parse_address(address.as_str()).is_ok() })
    }

    fn clients(&self, _options: ClientOptions) -> Result<Clients, TransportError> {
        Ok(Clients::both(Arc::new(NatsClient::new(self.clone()))))
    }

    fn serve(
        &self,
        options: ServeOptions,
        handlers: Handlers,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<Serving, ServeError>> {
        Box::pin(server::serve(self.clone(), options, handlers, shutdown))
    }

    fn not_ready(&self) -> Option<String> {
        let url = &self.settings.nats.url;
        match self.connection.get() {
            None => Some(format!("not connected to the NATS broker at {url} yet")),
            Some(c) => match c.connection_state() {
                async_nats::connection::State::Connected => None,
                state => Some(format!(
                    "NATS broker at {url}: {state} (reconnecting with back-off)"
                )),
            },
        }
    }
}
